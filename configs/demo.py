"""The embedded default run by `make demo`: an FSQ (8, 5, 5, 5) tokenizer on Fashion-MNIST, 7x7 codes.

Sized for a 2-core CPU: 4x4 patches are folded into channels (space-to-depth) so every convolution runs on the
7x7 grid, where a CPU is most efficient, and the run finishes in minutes. See README for the measured result.
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.tokenizer_config()
  c.model.patch_size = 4
  c.model.channels = 64
  c.model.channel_multipliers = (1,)
  c.model.num_res_blocks = 2
  c.model.norm_groups = 8
  c.train.steps = 1500
  c.train.log_every = 100
  c.train.checkpoint_every = 500
  config_lib.parse_variant(arg, c, {"steps": ("train.steps", int)})
  c.lock()
  return c
