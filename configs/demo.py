"""The embedded default run by `make demo`: an FSQ (8, 5, 5, 5) tokenizer on Fashion-MNIST, 7x7 codes.

Sized for a 2-core CPU (about 7 minutes of training): the default network folds 4x4 patches into channels and
runs every convolution on the 7x7 grid. Measured: test PSNR 22.9 dB, 100% of the 1000 codes used
(docs/results.md).
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.tokenizer_config()
  c.train.steps = 1500
  c.train.log_every = 100
  c.train.checkpoint_every = 500
  config_lib.parse_variant(arg, c, {"steps": ("train.steps", int)})
  c.lock()
  return c
