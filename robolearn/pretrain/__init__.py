"""Self-supervised pretraining methods, one module per method.

The method modules import torch, so this file does not import them (importing the package stays
cheap): ``pretrainer_class`` imports every module listed here on first use, which fills the
registry. One line per method. This package holds the methods only; running one (recipes, the
trainer, torchrun, `robolearn pretrain`) is train/pretrain_run.py's job, a layer above.
"""

METHOD_MODULES = [
    "robolearn.pretrain.dynamo",
    "robolearn.pretrain.inverse_dynamics",
    "robolearn.pretrain.act_jepa",
    "robolearn.pretrain.infocon",
    "robolearn.pretrain.eil",
    "robolearn.pretrain.oodil",
]
