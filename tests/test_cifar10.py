"""CIFAR-10 recipes without CIFAR-10, over the 8x8 codes of a tiny tokenizer of synthetic 32x32x3 images (the
tokenizer config itself: tests/test_configs_smoke.py, `:data=synthetic`): the autoregressive prior of
configs/prior/ar_cifar10.py smoke-trains on the 8 simulated devices with a 4-way fsdp axis, restores on meshes of
other shapes and its bits per dimension are checked against a hand-computed likelihood; every other family's file
builds its prior over those codes (1000 classes) and computes a finite loss on them, the part a file of its own can
break (the training loop, sampling and restore of each family run in tests/test_prior_stage.py and
tests/test_imagenet_priors.py); `data.name = 'cifar10'` without the prepared dataset fails naming it and how to
prepare it."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import FSDP_FLAGS, SMALL_SPLITS, assert_restores_on_other_meshes, tiny_config
from test_config import CONFIG_FILES, ROOT, load
from test_prior_stage import PRIOR_TINY
from vqgen import config as config_lib
from vqgen.stages import PriorStage, TokenizerStage, load_run, run

CIFAR10_PRIORS = [p for p in CONFIG_FILES if "/prior/" in p and p.endswith("_cifar10.py")]
AR = os.path.join(ROOT, "configs/prior/ar_cifar10.py")
PIXELS = 32 * 32 * 3
# Synthetic labels cycle through 1000 classes (data/synthetic.py): the priors are told so.
TINY = [*PRIOR_TINY, "--config.prior.num_classes=1000", *FSDP_FLAGS]


@pytest.fixture(scope="module")
def rgb_tokenizer_dir(tmp_path_factory):
  """A tokenizer of synthetic 32x32x3 images trained 2 steps: 4x4 patches -> 8x8 codes, as the CIFAR-10 one's."""
  workdir = str(tmp_path_factory.mktemp("rgb_tokenizer"))
  run(tiny_config(**{"data.name": "synthetic", "data.image_size": 32, "data.channels": 3, "train.steps": 2,
                     "data.random_flip": True, **SMALL_SPLITS}), workdir)
  return workdir


def test_every_prior_family_has_a_cifar10_config():
  assert sorted(config_lib.load_config(p).prior.name for p in CIFAR10_PRIORS) == sorted(config_lib.PRIOR_CONFIGS)
  for p in CIFAR10_PRIORS:
    c = config_lib.load_config(p)
    assert (c.prior.num_classes, c.network.width, c.train.steps, c.evaluation.metrics) == (10, 512, 100_000, False)


@pytest.fixture(scope="module")
def ar_run(rgb_tokenizer_dir, tmp_path_factory):
  """(workdir, results) of the autoregressive prior's smoke run, shared by its smoke and bits/dim tests."""
  workdir = tmp_path_factory.mktemp("ar_cifar10")
  return workdir, run(load(f"{AR}:tokenizer={rgb_tokenizer_dir}", *TINY), str(workdir))


def test_cifar10_ar_prior_smoke(ar_run):
  tmp_path, results = ar_run
  assert results["step"] == 2 and np.isfinite(results["val_loss"]) and results["num_samples"] == 20
  with np.load(tmp_path / "samples.npz") as f:
    assert f["images"].shape == (20, 32, 32, 3) and f["tokens"].shape == (20, 8, 8)
  assert json.loads((tmp_path / "metrics.json").read_text())["likelihood"] == results["likelihood"] == "exact"
  assert results["val_bits_per_dim"] == pytest.approx(results["val_bits_per_token"] * 64 / PIXELS, rel=1e-12)
  assert np.isfinite(results["val_bits_per_dim"]) and results["val_bits_per_dim"] > 0
  assert_restores_on_other_meshes(tmp_path, PriorStage)


@pytest.mark.parametrize("path", [p for p in CIFAR10_PRIORS if p != AR], ids=os.path.basename)
def test_cifar10_prior_config_builds_and_scores_the_codes(path, rgb_tokenizer_dir):
  from flax import nnx
  from test_codes_to_priors import loss_and_step

  stage = PriorStage(load(f"{path}:tokenizer={rgb_tokenizer_dir}", *TINY))
  assert tuple(stage.code_shape) == (8, 8) and stage.config.prior.num_classes == 1000
  codes = stage.train_codes
  batch = {"codes": jnp.asarray(codes["codes"][:16].reshape(16, -1)), "label": jnp.asarray(codes["labels"][:16])}
  loss, metrics, _, _, _ = loss_and_step(stage, stage.build_model(nnx.Rngs(0)), batch, jax.random.key(0), False)
  assert np.isfinite(float(loss)) and float(loss) > 0 and all(np.isfinite(float(v)) for v in metrics.values())


def test_reported_bits_per_dim_is_the_total_code_nll_over_the_pixels(ar_run):
  """Autoregressive (exact likelihood): the run's val_bits_per_dim (8 devices in a 2 x 4 mesh, batches of 32) == the sum of
  -log p(code_i | c, code_<i) over the 64 codes of each of the 64 validation images, averaged over the images, /
  (ln 2 x 32 x 32 x 3), with the trained (EMA) model's log-probabilities taken by hand on one device."""
  workdir, results = ar_run
  config, model, stage = load_run(str(workdir), PriorStage)
  n = config.data.eval_limit
  test = stage.codes("test")
  codes, labels = test["codes"][:n].reshape(n, -1), test["labels"][:n]
  net = model.network
  logits = net(net.sequence(jnp.asarray(labels), jnp.asarray(codes[:, :-1])), causal=True)  # [n, 64, 1, K]
  log_p = np.asarray(jax.nn.log_softmax(logits[:, :, 0].astype(jnp.float32), -1), np.float64)
  nats_per_image = -np.take_along_axis(log_p, codes[..., None], -1).sum() / n
  assert codes.shape == (64, 64) and nats_per_image > 0
  np.testing.assert_allclose(results["val_bits_per_dim"], nats_per_image / (np.log(2) * PIXELS), rtol=1e-5)
  np.testing.assert_allclose(results["val_nll"], nats_per_image / 64, rtol=1e-5)
  metrics = json.loads((workdir / "metrics.json").read_text())
  assert metrics["val_bits_per_dim"] == results["val_bits_per_dim"]


def test_cifar10_without_the_prepared_dataset_fails_naming_it_and_the_command(tmp_path, lpips_npz):
  pytest.importorskip("tensorflow_datasets")
  path = os.path.join(ROOT, "configs/tokenizer/vqgan_cifar10.py")
  config = load(path, f"--config.data.data_dir={tmp_path}", f"--config.loss.perceptual_weights={lpips_npz}")
  config_lib.validate(config)
  assert (config.data.name, config.data.image_size, config.data.channels) == ("cifar10", 32, 3)
  with pytest.raises(FileNotFoundError) as e:
    TokenizerStage(config).check_data()  # stages/image_data.py:data_source, before any training
  message = str(e.value)
  assert "'cifar10'" in message and f"data_dir={tmp_path}" in message
  assert f"tfds build cifar10 --file_format=array_record --data_dir={tmp_path}" in message
  assert "never downloads" in message
  with pytest.raises(ValueError, match="data='imagenet2012'.*cifar10"):
    config_lib.load_config(path + ":data=imagenet2012")


def test_cifar10_tokenizer_needs_its_lpips_weights_unless_the_perceptual_term_is_off():
  path = os.path.join(ROOT, "configs/tokenizer/vqgan_cifar10.py")
  with pytest.raises(ValueError, match="loss.perceptual_weights.*never downloads"):
    config_lib.validate(load(path))
  c = load(path + ":data=synthetic,perceptual=0")
  config_lib.validate(c)
  assert (c.data.name, c.data.random_flip, c.model.patch_size, tuple(c.model.channel_multipliers)) == (
      "synthetic", True, 1, (1, 2, 2))  # f4: 32 px -> 8x8 codes
