"""Test set-up: 8 forced host CPU devices (sharding tests) and small shared configs."""

import atexit
import os
import shutil
import tempfile

# Must happen before JAX initialises its backends.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One compilation cache for the session (and the commands its tests start): the many tests that train the same
# tiny configs compile each program once. It is removed at the end, so every session starts cold.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="vqgen-tests-jax-cache-")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import pytest  # noqa: E402

from vqgen import config as config_lib  # noqa: E402
from vqgen.stages.classifier import perceptual_network  # noqa: E402


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


def gan_overrides(perceptual_workdir: str, discriminator: str = "patchgan") -> dict:
  """tiny_config overrides of a GAN tokenizer: perceptual + adversarial terms, LeCam, R1, start at step 1."""
  return {"loss.perceptual_weight": 0.1, "loss.perceptual_weights": perceptual_workdir,
          "loss.adversarial_weight": 0.1, "loss.discriminator_start": 1, "loss.lecam_weight": 0.001,
          "loss.r1_gamma": 1.0, "discriminator.name": discriminator, "discriminator.channels": 8,
          "discriminator.num_layers": 2, "discriminator.stylegan_channels": (8, 16, 16, 16),
          "optimizer.ema_decay": 0.9}


@pytest.fixture(scope="session")
def perceptual_workdir(tmp_path_factory):
  """A perceptual network (FashionPerceptual) trained 3 steps in a session folder (never the user's cache)."""
  workdir = str(tmp_path_factory.mktemp("perceptual") / "run")
  perceptual_network(workdir, steps=3)
  return workdir
