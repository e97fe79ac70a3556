"""Contract tests, parametrised over every registered policy (state and image variants)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from policy_helpers import METHODS, STORE_STATS, synthetic_batch, tiny_policy

from robolearn.errors import UserError
from robolearn.policies import POLICY_REGISTRY, load_policy, make_policy

VARIANTS = [(m, img) for m in METHODS for img in (False, True)]


@pytest.mark.parametrize("method", METHODS)
def test_builds_from_defaults(method):
    cfg = POLICY_REGISTRY[method].config_class()
    cfg.obs_shapes, cfg.action_dim = {"state": [5]}, 3
    policy = make_policy(cfg, STORE_STATS)
    out = policy.compute_loss(synthetic_batch(policy, b=2))
    assert torch.isfinite(out["loss"])
    assert policy.config.method == method


@pytest.mark.parametrize("method,image", VARIANTS)
def test_loss_is_finite_and_chunk_has_the_right_shape(method, image):
    policy = tiny_policy(method, image)
    batch = synthetic_batch(policy)
    out = policy.compute_loss(batch)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())
    policy.eval()
    obs = {k: v[:1] for k, v in batch["obs"].items()}
    chunk = policy.predict_action_chunk(obs)
    assert chunk.shape == (1, policy.config.horizon, policy.config.action_dim)
    assert torch.isfinite(chunk).all()
    first = {k: v[:1, -1:] for k, v in batch["obs"].items()}  # one frame: padded to obs_horizon
    assert policy.predict_action_chunk(first).shape == chunk.shape
    policy.reset()


@pytest.mark.parametrize("method,image", VARIANTS)
def test_save_load_round_trip_is_bitwise(method, image, tmp_path):
    policy = tiny_policy(method, image).eval()
    policy.save(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors", "stats.json"]
    loaded = load_policy(tmp_path / "ckpt")
    sd, sd2 = policy.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
    obs = synthetic_batch(policy)["obs"]
    torch.manual_seed(3)
    a = policy.predict_action_chunk(obs)
    torch.manual_seed(3)
    b = loaded.predict_action_chunk(obs)
    assert torch.equal(a, b)
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["method"] == method


def test_weights_and_padding_enter_the_loss():
    policy = tiny_policy("bc")
    batch = synthetic_batch(policy)
    full = policy.compute_loss(batch)["loss"]
    batch["weight"] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    one = policy.compute_loss(batch)["loss"]
    only_first = policy.compute_loss({**synthetic_batch(policy), "weight": torch.tensor([4.0, 0, 0, 0])})["loss"]
    assert torch.allclose(one * 4, only_first) and not torch.allclose(one, full)
    batch = synthetic_batch(policy)
    batch["action_is_pad"][:, 4:] = True
    masked = policy.compute_loss(batch)["loss"]
    batch["action"][:, 4:] += 100.0  # padded steps do not count
    assert torch.allclose(masked, policy.compute_loss(batch)["loss"])


def test_checkpoint_has_no_pickle_and_loads_in_a_fresh_process(tmp_path):
    torch.manual_seed(0)
    policies = {m: tiny_policy(m, image=(m == "diffusion")).eval() for m in METHODS}
    expected = {}
    for m, policy in policies.items():
        policy.save(tmp_path / m)
        for f in (tmp_path / m).iterdir():
            head = f.read_bytes()[:2]
            assert head != b"\x80\x04" and head[:1] != b"\x80", f"{f} looks like a pickle"
            assert b"torch._utils" not in f.read_bytes()
        batch = synthetic_batch(policy, b=2, seed=7)
        torch.manual_seed(11)
        expected[m] = policy.predict_action_chunk(batch["obs"]).tolist()
    script = f"""
import json, sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {str(tmp_path.parent)!r})
sys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r})
from policy_helpers import synthetic_batch
from robolearn.policies import load_policy
out = {{}}
for m in {METHODS!r}:
    p = load_policy({str(tmp_path)!r} + "/" + m)
    obs = synthetic_batch(p, b=2, seed=7)["obs"]
    torch.manual_seed(11)
    out[m] = p.predict_action_chunk(obs).tolist()
print(json.dumps(out))
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1]) == expected


def test_bad_checkpoints_fail_with_one_clear_error(tmp_path):
    policy = tiny_policy("diffusion")
    policy.save(tmp_path / "ok")
    import shutil

    shutil.copytree(tmp_path / "ok", tmp_path / "missing")
    (tmp_path / "missing" / "stats.json").unlink()
    with pytest.raises(UserError, match="missing stats.json"):
        load_policy(tmp_path / "missing")
    shutil.copytree(tmp_path / "ok", tmp_path / "tampered")
    cfg = json.loads((tmp_path / "tampered" / "config.json").read_text())
    cfg["horizon"] = 16
    (tmp_path / "tampered" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="config.json"):
        load_policy(tmp_path / "tampered")
    with pytest.raises(UserError, match="not a checkpoint directory"):
        load_policy(tmp_path / "nowhere")
    obs = synthetic_batch(policy)["obs"]
    with pytest.raises(UserError, match="missing key 'state'"):
        policy.predict_action_chunk({"proprio": obs["state"]})


def test_saving_again_replaces_the_checkpoint_atomically(tmp_path):
    a, b = tiny_policy("bc"), tiny_policy("bc")
    a.save(tmp_path / "ckpt")
    b.save(tmp_path / "ckpt")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temp dirs left behind
    loaded = load_policy(tmp_path / "ckpt").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in b.state_dict().items())


def test_pretrained_image_encoder_loads_and_stays_frozen(tmp_path):
    from safetensors.torch import save_file

    from robolearn.nn.vision import ResNetImageEncoder

    exported = ResNetImageEncoder(width=8, out_dim=8, num_kp=4, crop_size=20)
    save_file(exported.state_dict(), str(tmp_path / "encoder.safetensors"))
    policy = tiny_policy("diffusion", image=True)
    policy.config.encoder.pretrained = str(tmp_path / "encoder.safetensors")
    policy.config.encoder.freeze_pretrained = True
    policy = make_policy(policy.config, STORE_STATS)
    enc = policy.encoder.image_encoders["cam_image"]
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), exported.state_dict().values()))
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-2)
    policy.compute_loss(synthetic_batch(policy))["loss"].backward()
    opt.step()
    assert all(not p.requires_grad for p in enc.parameters())
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), exported.state_dict().values()))
    policy.config.encoder.pretrained = str(tmp_path / "missing.safetensors")
    with pytest.raises(UserError, match="policy.encoder.pretrained"):
        make_policy(policy.config, STORE_STATS)
