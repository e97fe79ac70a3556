"""robolearn: robot imitation learning and in-domain policy pretraining."""

__version__ = "0.1.0"
