"""Test set-up: 8 forced host CPU devices (sharding tests) and small shared configs."""

import os

# Must happen before JAX initialises its backends.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from vqgen import config as config_lib  # noqa: E402


def tiny_config(**overrides):
  """A tokenizer config small enough to train a few steps in seconds on a CPU."""
  c = config_lib.tokenizer_config()
  c.model.channels = 8
  c.model.patch_size = 4
  c.model.channel_multipliers = (1,)
  c.model.num_res_blocks = 1
  c.model.norm_groups = 4
  c.data.batch_size = 16
  c.data.eval_batch_size = 32
  c.data.eval_limit = 64
  c.train.steps = 4
  c.train.log_every = 2
  c.train.checkpoint_every = 2
  c.train.num_grid_images = 4
  c.optimizer.warmup_steps = 1
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  c.lock()
  return c


# The same tiny settings as command-line overrides (for runs through vqgen.main).
TINY_FLAGS = ["--config.model.channels=8", "--config.model.num_res_blocks=1", "--config.model.norm_groups=4",
              "--config.data.batch_size=16", "--config.data.eval_batch_size=32", "--config.data.eval_limit=64",
              "--config.train.log_every=1", "--config.optimizer.warmup_steps=1"]


@pytest.fixture
def tiny():
  return tiny_config
