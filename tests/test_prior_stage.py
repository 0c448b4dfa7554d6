"""Stage 2 end to end: code cache, every prior config smoke-trains and samples, the sampling CLI, sharded prior
step == one device, and sample scores with a (briefly trained) classifier."""

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import tiny_config
from test_config import CONFIG_FILES, ROOT, load
from vqgen.errors import Refusal
from vqgen.evaluation.samples import format_scores
from vqgen.stages import PriorStage, TokenizerStage, build, codes as codes_lib, load_run, run
from vqgen.stages.classifier import contrastive_judge, feature_classifier, sample_scorer
from vqgen.stages.generate import Generator, balanced_labels
from vqgen.train import sharding as sharding_lib
from vqgen.train.step import build_training

# The Fashion-MNIST priors (over this module's 28x28 tokenizer); the CIFAR-10 ones: tests/test_cifar10.py.
PRIOR_CONFIGS = [p for p in CONFIG_FILES if "/prior/" in p and p.endswith("_fashion_mnist.py")]
PRIOR_TINY = ["--config.network.width=32", "--config.network.depth=1", "--config.network.heads=2",
              "--config.data.batch_size=16", "--config.data.eval_batch_size=32", "--config.data.eval_limit=64",
              "--config.train.steps=2", "--config.train.log_every=1", "--config.train.checkpoint_every=2",
              "--config.optimizer.warmup_steps=1", "--config.sampling.num_samples=20",
              "--config.sampling.batch_size=10", "--config.sampling.steps=2", "--config.evaluation.metrics=False"]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("tokenizer"))
  run(tiny_config(), workdir)
  return workdir


def prior_config(path, tokenizer_dir, *overrides):
  return load(f"{path}:tokenizer={tokenizer_dir}", *PRIOR_TINY, *overrides)


@pytest.fixture(scope="module")
def smoke_runs(tokenizer_dir, tmp_path_factory):
  """path -> (workdir, results) of each prior config's smoke run, trained once (the sampling CLI test reuses one)."""
  runs = {}

  def get(path):
    if path not in runs:
      workdir = tmp_path_factory.mktemp(os.path.basename(path)[:-3])
      runs[path] = workdir, run(prior_config(path, tokenizer_dir), str(workdir))
    return runs[path]

  return get


@pytest.mark.parametrize("path", PRIOR_CONFIGS, ids=os.path.basename)
def test_prior_config_smoke(path, smoke_runs):
  tmp_path, results = smoke_runs(path)
  assert results["step"] == 2 and np.isfinite(results["val_loss"]) and results["num_samples"] == 20
  with np.load(tmp_path / "samples.npz") as f:
    images, tokens, labels = f["images"], f["tokens"], f["labels"]
  assert images.shape == (20, 28, 28, 1) and images.dtype == np.float32
  assert 0.0 <= images.min() and images.max() <= 1.0
  assert tokens.shape == (20, 7, 7) and tokens.min() >= 0 and tokens.max() < 1000
  np.testing.assert_array_equal(np.bincount(labels, minlength=10), [2] * 10)
  assert (tmp_path / "samples.png").exists() and (tmp_path / "metrics.json").exists()
  # AR: a pass per code; RQ-Transformer: a spatial and a depth pass per position (one code each here); else steps.
  assert results["sample_forward_passes"] == {"ar_": 49, "rq_": 98}.get(os.path.basename(path)[:3], 2)


def test_code_cache_is_reused_keyed_by_weights_and_survives_corruption(tokenizer_dir):
  config, tokenizer, _ = load_run(tokenizer_dir, TokenizerStage)
  first = codes_lib.cached_codes("test", tokenizer, config)
  assert first["codes"].shape == (10000, 7, 7) and first["labels"].shape == (10000,)
  mtime = os.path.getmtime(first["path"])
  again = codes_lib.cached_codes("test", tokenizer, config)
  assert again["path"] == first["path"] and os.path.getmtime(first["path"]) == mtime
  direct, labels = codes_lib.extract_codes(tokenizer, config, "test")
  np.testing.assert_array_equal(direct, first["codes"])
  # Other weights, other key.
  kernel = tokenizer.encoder.conv_out.kernel
  kernel[...] = kernel[...] * 1.5
  assert codes_lib.cached_codes("test", tokenizer, config)["path"] != first["path"]
  kernel[...] = kernel[...] / 1.5
  with open(first["path"], "wb") as f:
    f.write(b"truncated")
  repaired = codes_lib.cached_codes("test", tokenizer, config)
  np.testing.assert_array_equal(repaired["codes"], direct)


def test_prior_needs_a_trained_tokenizer(tmp_path):
  config = prior_config(PRIOR_CONFIGS[0], str(tmp_path / "missing"))
  with pytest.raises(Refusal, match="missing does not exist"):
    run(config, str(tmp_path / "prior"))
  assert not os.path.exists(tmp_path / "prior" / "checkpoints")


def test_sample_cli_writes_samples_and_reports_nfe(smoke_runs, tmp_path):
  prior_dir, _ = smoke_runs([p for p in PRIOR_CONFIGS if "maskgit" in p][0])
  result = subprocess.run(
      [sys.executable, "-m", "vqgen.sample", f"--workdir={prior_dir}", "--num_samples=6", "--labels=3",
       "--steps=3", "--guidance_scale=2", f"--output={tmp_path}/out"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "3 sequential forward passes" in result.stdout
  assert not re.search(r"^I\d{4} ", result.stdout + result.stderr, re.M)  # no absl INFO records on the console
  with open(tmp_path / "out" / "log.txt") as f:
    assert "checkpoint" in f.read().lower()  # Orbax's restore records went to the log file
  with np.load(tmp_path / "out" / "samples.npz") as f:
    assert f["images"].shape == (6, 28, 28, 1) and set(f["labels"].tolist()) == {3}
  bad = subprocess.run([sys.executable, "-m", "vqgen.sample", f"--workdir={prior_dir}", "--labels=12",
                        f"--output={tmp_path}/bad"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert bad.returncode != 0 and "--labels must lie in [0, 10)" in bad.stderr


def test_sharded_prior_step_equals_single_device(tokenizer_dir):
  config = prior_config([p for p in PRIOR_CONFIGS if "maskgit" in p][0], tokenizer_dir,
                        "--config.network.dropout=0.0", "--config.optimizer.ema_decay=0.9")
  stage = PriorStage(config)
  batch = {"codes": stage.train_codes["codes"][:16].reshape(16, -1),
           "label": stage.train_codes["labels"][:16]}

  def one_step(mesh):
    t = build_training(config, stage, mesh, donate=False)
    return t.step(t.state, sharding_lib.global_batch(batch, mesh), jax.random.key(1))

  single, m1 = one_step(sharding_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1]))
  sharded, m8 = one_step(sharding_lib.make_mesh(data=2, fsdp=4, model=1))
  kernel = sharded.params["network"]["transformer"]["blocks"][0]["fc1"]["kernel"]
  assert kernel.sharding.spec == jax.sharding.PartitionSpec("fsdp", None)  # the embed axis is split
  np.testing.assert_allclose(float(m1["loss"]), float(m8["loss"]), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(sharded.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=1e-5)


def test_prior_evaluation_on_eight_devices_equals_one_device(tokenizer_dir):
  """Validation loss and samples feed each process's rows into global batches: same numbers on any mesh."""
  config = prior_config([p for p in PRIOR_CONFIGS if "maskgit" in p][0], tokenizer_dir)
  stage = PriorStage(config)

  def evaluate(mesh):
    t = build_training(config, stage, mesh, donate=False)
    model = t.spec.merge(t.state.params, t.state.rest)
    generator = Generator(model, stage.tokenizer, stage.code_shape, build.sampler_kwargs(config))
    samples = generator(balanced_labels(20, 10), jax.random.key(3), batch_size=8)
    return stage.validation_loss(model, mesh), samples

  loss_1, samples_1 = evaluate(sharding_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1]))
  loss_8, samples_8 = evaluate(sharding_lib.make_mesh(data=2, fsdp=4, model=1))
  assert loss_1.keys() == loss_8.keys() and "val_masked_nll" in loss_1
  for k in loss_1:
    np.testing.assert_allclose(loss_1[k], loss_8[k], rtol=1e-5, err_msg=k)
  assert samples_8["tokens"].shape == samples_1["tokens"].shape == (20, 7, 7)
  np.testing.assert_array_equal(samples_8["labels"], samples_1["labels"])
  assert np.mean(samples_8["tokens"] == samples_1["tokens"]) > 0.95  # float reduction order may flip a rare draw


def test_sample_scores_sit_beside_their_floors(tokenizer_dir, tmp_path):
  _, accuracy = feature_classifier(str(tmp_path / "clf"), steps=40)
  assert 0.5 < accuracy < 1  # 40 steps at batch 128 already separate most classes
  _, nn_accuracy = contrastive_judge(str(tmp_path / "simclr"), steps=3)
  assert 0.3 < nn_accuracy < 1  # even near-random convolutional features put neighbours in one class
  config, tokenizer, _ = load_run(tokenizer_dir, TokenizerStage)
  scorer = sample_scorer(tokenizer, config, classifier_workdir=str(tmp_path / "clf"),
                         contrastive_workdir=str(tmp_path / "simclr"))
  # The finished runs are restored, not retrained.
  assert (scorer.classifier_accuracy, scorer.contrastive_accuracy) == (accuracy, nn_accuracy)
  real = scorer.train_images[1000:1200]
  labels = np.zeros(200, np.int32)
  good = scorer.score(real, labels)
  noisy = scorer.score(np.clip(real + np.random.default_rng(0).normal(0, 0.5, real.shape), 0, 1), labels)
  for suffix in ("", "_contrastive"):  # both judges
    assert noisy[f"sample_fd{suffix}"] > good[f"sample_fd{suffix}"] < 3 * good[f"real_fd_floor{suffix}"]
    assert {f"{k}{suffix}" for k in ("recon_fd", "real_precision_floor", "real_recall_floor", "precision")} <= set(good)
  assert {"class_accuracy", "recon_psnr", "recon_lpips", "contrastive_nn_accuracy"} <= set(good)
  text = format_scores(good)
  assert "200 samples vs the test split (10000 images)" in text and "[contrastive]" in text
  json.dumps(good)  # every score is a plain JSON value


def test_inception_metrics_of_the_samples_from_the_config(tokenizer_dir, tmp_path, monkeypatch):
  """evaluation.inception_weights: the stage scores samples on the FID Inception against the tokenizer's training
  split (here its first 10 images, random weights): the training images themselves score FID 0 and precision /
  recall 1; a missing weights file fails validation naming the key and the fix."""
  from vqgen import config as config_lib
  from vqgen.data import FashionMNIST
  from vqgen.evaluation.inception_layout import random_fid_inception_state

  monkeypatch.setenv("VQGEN_CACHE_DIR", str(tmp_path / "cache"))
  weights = str(tmp_path / "fid_inception.npz")
  np.savez(weights, **random_fid_inception_state(0))
  config = prior_config(PRIOR_CONFIGS[0], tokenizer_dir, f"--config.evaluation.inception_weights={weights}",
                        "--config.evaluation.num_reference=10")
  scores = PriorStage(config).inception_scores(FashionMNIST("train").images[:10].astype(np.float32) / 255.0)
  assert abs(scores["fid"]) < 1e-6 and scores["precision"] == scores["recall"] == 1.0
  assert scores["num_reference"] == 10 and scores["reference"].startswith("fashion_mnist:train, the first 10")
  config_lib.validate(config)
  for flag, message in ((f"inception_weights={tmp_path / 'no.pth'}", r"evaluation.inception_weights.*--config.eval"),
                        ("inception_reference=imagenet2012", "evaluation.inception_reference.*DATASET:SPLIT")):
    with pytest.raises(config_lib.ConfigError, match=message):
      config_lib.validate(prior_config(PRIOR_CONFIGS[0], tokenizer_dir, f"--config.evaluation.{flag}"))
