"""Policy heads. Import order fills the registry explicitly (one line per method)."""

from robolearn.policies.base import POLICY_REGISTRY, Policy, PolicyConfig, load_policy, make_policy, register_policy
from robolearn.policies import act, bc, diffusion, mdt  # noqa: F401,E402  (register "act", "bc", "diffusion", "mdt")
from robolearn.policies import gravmad  # noqa: F401,E402  (register "gravmad")

__all__ = ["POLICY_REGISTRY", "Policy", "PolicyConfig", "load_policy", "make_policy", "register_policy"]
