"""Class-conditional autoregressive prior (raster order, class token first) over Fashion-MNIST codes.

  python -m vqgen.main --config=configs/prior/ar_fashion_mnist.py:tokenizer=runs/fsq --workdir=runs/ar
  ...ar_fashion_mnist.py:tokenizer=runs/fsq,guidance=1.5,top_k=100       guided top-k sampling
Sampling decodes with a static key/value cache inside jit, one forward of one token per code.
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.prior_config()
  variants = config_lib.use_prior_family(c, "autoregressive")
  config_lib.parse_variant(arg, c, variants)
  c.lock()
  return c
