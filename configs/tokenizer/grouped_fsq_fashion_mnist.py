"""Grouped FSQ tokenizer on Fashion-MNIST: 2 groups of FSQ (8, 5, 5, 5), i.e. two 1000-code indices per position.

  python -m vqgen.main --config=configs/tokenizer/grouped_fsq_fashion_mnist.py --workdir=runs/gfsq
  ...grouped_fsq_fashion_mnist.py:groups=4
"""

from vqgen import config as config_lib

LEVELS = (8, 5, 5, 5)


def get_config(arg: str | None = None):
  c = config_lib.tokenizer_config()
  c.quantizer = config_lib.quantizer_config("grouped", quantizer="fsq", groups=2, levels=LEVELS)
  config_lib.parse_variant(arg, c, {"groups": ("quantizer.groups", int), "steps": ("train.steps", int)})
  c.lock()
  return c
