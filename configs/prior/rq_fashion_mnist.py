"""Class-conditional RQ-Transformer (Lee et al. 2022) over the stacked codes of a residual tokenizer on Fashion-MNIST.

  python -m vqgen.main --config=configs/tokenizer/rvq_fashion_mnist.py --workdir=runs/rvq
  python -m vqgen.main --config=configs/prior/rq_fashion_mnist.py:tokenizer=runs/rvq --workdir=runs/rq
  ...rq_fashion_mnist.py:tokenizer=runs/rvq,depth=3,depth_layers=2          spatial / depth layers
A spatial transformer over the 7x7 positions (network.depth layers) and a depth transformer over each position's D
codes (network.depth_layers); sampling caches both transformers' keys and values inside jit. Over codes with one
code per position (FSQ, VQ) it is the autoregressive prior with a one-slot depth transformer.
experiments/rq_vs_flat.py compares it with the autoregressive prior over the flattened codes at equal compute.
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.prior_config()
  variants = config_lib.use_prior_family(c, "rq_transformer")
  config_lib.parse_variant(arg, c, variants)
  c.lock()
  return c
