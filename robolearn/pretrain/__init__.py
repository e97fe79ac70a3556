"""Self-supervised pretraining methods, one module per method.

The method modules import torch, so this file does not import them (`robolearn.pretrain.cli` lives
in this package and `robolearn --help` must stay fast): ``pretrainer_class`` imports every module
listed here on first use, which fills the registry. One line per method.
"""

METHOD_MODULES = [
    "robolearn.pretrain.dynamo",
    "robolearn.pretrain.inverse_dynamics",
    "robolearn.pretrain.act_jepa",
    "robolearn.pretrain.infocon",
]
