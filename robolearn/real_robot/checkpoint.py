"""What the daemon and the policy server need from a checkpoint: the policy, checked, and its goal config.

Both `robolearn serve` (cli.py) and the policy server process (remote.py) load through here, so
neither imports the other. Loading itself is `robolearn.policies.load_policy`.
"""

from __future__ import annotations

import os

from robolearn.errors import UserError
from robolearn.goal import GoalConfig

SPEC_FIELDS = ("obs_keys", "obs_horizon", "horizon", "n_action_steps", "action_dim")


def load_checkpoint(path: str, device: str, flag: str = "--checkpoint"):
    """The policy in `path` on `device`, or UserError for anything missing, malformed or unknown."""
    if not os.path.isdir(path):
        raise UserError(f"{flag} {path}: not a directory")
    from robolearn.policies import load_policy

    try:
        policy = load_policy(path, device=device)
    except UserError:
        raise
    except Exception as exc:  # a checkpoint that crashes the loader is malformed
        raise UserError(f"{flag} {path}: cannot load ({type(exc).__name__}: {exc})") from None
    for attr in SPEC_FIELDS:
        if not hasattr(policy.config, attr):
            raise UserError(f"{flag} {path}: config has no {attr!r}")
    return policy


def goal_config(policy) -> GoalConfig:
    """The goal modalities `policy` was trained with (a checkpoint from before goals: none)."""
    return getattr(policy.config, "goal", None) or GoalConfig()
