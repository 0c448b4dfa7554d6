"""Test set-up: 8 forced host CPU devices (sharding tests) and small shared configs."""

import atexit
import os
import shutil
import tempfile

# Must happen before JAX initialises its backends. The suite is bound by XLA compile time (tiny models, a few
# steps each), so the tests (and the commands they start) compile without LLVM's optimisation passes: 2-4x faster
# compiles (a parameter init: 9 s -> 2 s), the same programs and results to float rounding.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
                           " --xla_backend_optimization_level=0").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One compilation cache for the session (and the commands its tests start): the many tests that train the same
# tiny configs compile each program once. It is removed at the end, so every session starts cold.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="vqgen-tests-jax-cache-")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vqgen import config as config_lib  # noqa: E402
from vqgen.stages.classifier import perceptual_network  # noqa: E402
from vqgen.tokenizers.perceptual_networks import VGG16_CONVS, VGG16_TAPS, VGG16_WIDTHS  # noqa: E402


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


def write_lpips_npz(path, rng, slices: bool):
  """Random weights in the PyTorch layout (torchvision `features.<i>` or LPIPS `net.slice<s>.<i>` names)."""
  arrays, cin = {}, 3
  for i, (index, width) in enumerate(zip(VGG16_CONVS, VGG16_WIDTHS)):
    s = sum(index >= start for start in (0, 4, 9, 16, 23))
    name = f"net.slice{s}.{index}" if slices else f"features.{index}"
    arrays[f"{name}.weight"] = rng.normal(0, np.sqrt(2 / (9 * cin)), (width, cin, 3, 3)).astype(np.float32)
    arrays[f"{name}.bias"] = rng.normal(0, 0.1, (width,)).astype(np.float32)
    cin = width
  for l, tap in enumerate(VGG16_TAPS):
    arrays[f"lin{l}.model.1.weight"] = rng.uniform(0, 1, (1, VGG16_WIDTHS[VGG16_CONVS.index(tap)], 1, 1))
  np.savez(path, **arrays)
  return arrays


@pytest.fixture(scope="session")
def lpips_npz(tmp_path_factory):
  """A VGG16 + LPIPS v0.1 weights file (random values) in the public layout, for configs with lpips_vgg16."""
  path = tmp_path_factory.mktemp("lpips") / "vgg16_lpips.npz"
  write_lpips_npz(path, np.random.default_rng(0), slices=False)
  return str(path)


# Tokenizers of synthetic images whose codes feed prior tests: a few hundred images (the whole train split is 10k;
# extracting its codes would dominate the test).
SMALL_SPLITS = {"data.train_split": "train[:256]", "data.eval_split": "test[:64]"}

# Recipes train on a mesh with a 4-way fsdp axis, then must restore on meshes of other shapes.
FSDP_FLAGS = ["--config.mesh.data=2", "--config.mesh.fsdp=4"]


def assert_restores_on_other_meshes(workdir, stage_class) -> None:
  """The newest checkpoint of `workdir` (trained on FSDP_FLAGS' 2 x 4 mesh) restores on a 4 x 2 mesh and on one
  device to the same arrays."""
  import jax
  from flax import nnx

  from vqgen.train import sharding as sharding_lib
  from vqgen.train.trainer import restore_model

  config = config_lib.load_workdir_config(str(workdir))
  assert (config.mesh.data, config.mesh.fsdp) == (2, 4)
  stage = stage_class(config)
  states = [nnx.state(restore_model(config, str(workdir), stage, mesh)).to_pure_dict()
            for mesh in (sharding_lib.make_mesh(data=4, fsdp=2, model=1),
                         sharding_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1]))]
  leaves = [jax.tree.leaves(s) for s in states]
  assert len(leaves[0]) == len(leaves[1]) > 0
  for a, b in zip(*leaves):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# The heaviest files first (about 200 s down to 60 s each, run alone on a 2-core CPU). `make test`'s workers take
# whole files in collection order: the long ones start at once and the short ones fill the end, so no worker idles
# while the other finishes a long file.
HEAVY_FIRST = ["test_configs_smoke.py", "test_vqgan.py", "test_faults.py", "test_prior_stage.py", "test_notebooks.py",
               "test_cifar10.py", "test_imagenet_priors.py", "test_codes_to_priors.py", "test_priors.py"]


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's own order is kept
