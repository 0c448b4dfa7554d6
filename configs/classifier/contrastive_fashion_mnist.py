"""The self-supervised judge of the sample metrics (vqgen/evaluation/contrastive.py): SimCLR on Fashion-MNIST.

  python -m vqgen.main --config=configs/classifier/contrastive_fashion_mnist.py --workdir=runs/contrastive
Sample metrics train it on first use into ~/.cache/vqgen/contrastive/fashion_mnist with these settings
(`python -m vqgen.cli.train_classifier` trains both judges on demand).
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.contrastive_config()
  config_lib.parse_variant(arg, c, {"steps": ("train.steps", int)})
  c.lock()
  return c
