"""Behaviour: a diffusion policy keeps both modes of a bimodal 2-D target; an MSE MLP averages them."""

from __future__ import annotations

import torch
from policy_helpers import synthetic_batch, tiny_policy


def bimodal_batch(policy, b: int, g: torch.Generator) -> dict:
    batch = synthetic_batch(policy, b=b)
    batch["obs"]["state"] = torch.zeros_like(batch["obs"]["state"])  # the same observation every time
    sign = torch.randint(0, 2, (b, 1, 1), generator=g).float() * 2 - 1  # mode: +1 or -1
    ramp = torch.linspace(0.2, 1.5, policy.config.horizon)[None, :, None]
    ramp = ramp.expand(b, -1, -1)
    action = torch.cat([sign * ramp, ramp, torch.zeros_like(ramp)], dim=-1)  # (B, T, 3)
    batch["action"] = action + 0.02 * torch.randn(action.shape, generator=g)
    return batch


def fit(policy, steps: int, lr: float = 2e-3) -> list[float]:
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr)
    losses = []
    policy.train()
    for _ in range(steps):
        loss = policy.compute_loss(bimodal_batch(policy, 64, g))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def final_x(policy, n: int = 64) -> torch.Tensor:
    policy.eval()
    obs = {"state": torch.zeros(n, policy.config.obs_horizon, 5)}
    torch.manual_seed(0)
    return policy.predict_action_chunk(obs)[:, -1, 0]  # (n,) x of the last action


def test_diffusion_keeps_both_modes_and_mlp_averages_them():
    torch.manual_seed(0)
    diff = tiny_policy("diffusion", down_dims=[32, 64], step_embed_dim=32, num_train_timesteps=50, num_inference_steps=10)
    losses = fit(diff, 300)
    assert sum(losses[-30:]) < 0.6 * sum(losses[:30])
    x = final_x(diff)
    near_pos = ((x - 1.5).abs() < 0.9).float().mean().item()  # modes at +-1.5, their mean at 0
    near_neg = ((x + 1.5).abs() < 0.9).float().mean().item()
    assert near_pos > 0.2 and near_neg > 0.2, (near_pos, near_neg)
    assert near_pos + near_neg > 0.9, x  # few samples in between

    torch.manual_seed(0)
    bc = tiny_policy("bc", hidden=[64, 64])
    fit(bc, 150)
    xb = final_x(bc)
    assert (xb.abs() < 0.5).all(), xb  # the MSE solution is the mean of the modes


def test_diffusion_inpaints_a_committed_prefix_and_continues_its_mode():
    """Real-time chunking: the first actions are fixed to the committed ones and the rest follows them."""
    torch.manual_seed(0)
    diff = tiny_policy("diffusion", down_dims=[32, 64], step_embed_dim=32, num_train_timesteps=50, num_inference_steps=10)
    fit(diff, 300)
    diff.eval()
    n, p = 32, 4
    obs = {"state": torch.zeros(n, diff.config.obs_horizon, 5)}
    ramp = torch.linspace(0.2, 1.5, diff.config.horizon)[:p]
    for sign in (1.0, -1.0):
        prefix = torch.stack([sign * ramp, ramp, torch.zeros(p)], -1).expand(n, -1, -1)  # (n, P, 3)
        torch.manual_seed(1)
        with torch.inference_mode():  # as the control daemon calls it
            chunk = diff.predict_action_chunk(obs, prefix=prefix, prefix_len=p)
        assert torch.allclose(chunk[:, :p], prefix, atol=1e-5)  # the committed actions, exactly
        followed = (torch.sign(chunk[:, -1, 0]) == sign).float().mean().item()
        assert followed > 0.8, (sign, chunk[:, -1, 0])  # the continuation stays in the prefix's mode
