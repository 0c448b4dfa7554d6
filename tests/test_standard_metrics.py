"""The standard metrics (evaluation/standard_metrics.py, stages/inception_reference.py, `vqgen.evaluate
--features=inception`): the Inception Score against brute force and its closed forms, the reference cache keyed by
the weights file's bytes, rFID, and the command end to end on random FID Inception weights (tests/test_inception.py
holds the network itself to pytorch-fid). The network runs on the first N_IMAGES Fashion-MNIST test images only
and compiles once per session (the commands share the test session's compilation cache)."""

import hashlib
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from vqgen.data import FashionMNIST
from vqgen.evaluation.inception import load_fid_inception
from vqgen.evaluation.inception_layout import FEATURE_DIM, WEIGHTS_URL, random_fid_inception_state
from vqgen.evaluation.standard_metrics import InceptionScorer, inception_score, weights_sha256
from vqgen.stages import inception_reference
from vqgen.stages.inception_reference import (dataset_reference, file_reference, reconstruction_features,
                                              reference_statistics)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_IMAGES = 10   # = the Inception Score's 10 splits, one image each


def brute_force_inception_score(logits, splits):
  """exp(H(p(y)) - mean_x H(p(y|x))) per consecutive part (the KL form's identity), element by element."""
  scores = []
  n = len(logits)
  for i in range(splits):
    rows = []
    for row in logits[i * n // splits:(i + 1) * n // splits]:
      z = sum(math.exp(v) for v in row)
      rows.append([math.exp(v) / z for v in row])
    p_y = [sum(r[c] for r in rows) / len(rows) for c in range(len(rows[0]))]
    h_y = -sum(p * math.log(p) for p in p_y if p > 0)
    h_yx = -sum(p * math.log(p) for r in rows for p in r if p > 0) / len(rows)
    scores.append(math.exp(h_y - h_yx))
  return np.mean(scores), np.std(scores)


def test_inception_score_matches_brute_force():
  logits = np.random.default_rng(0).normal(0, 3, (23, 1008))
  got = inception_score(logits, splits=4)   # parts of 5, 6, 6, 6 images
  want = brute_force_inception_score(logits.tolist(), 4)
  np.testing.assert_allclose(got, want, rtol=1e-9)


def test_inception_score_closed_forms():
  rows = np.random.default_rng(1).normal(0, 3, (1, 1008))
  assert inception_score(np.repeat(rows, 40, 0), splits=10) == pytest.approx((1.0, 0.0), abs=1e-12)  # p(y|x) = p(y)
  classes = np.arange(100) % 10                # every part of 10 images uses each of 10 classes once
  one_hot = 60.0 * np.eye(1008)[classes]       # the other 1007 classes have p ~ 1e-23
  mean, std = inception_score(one_hot, splits=10)
  assert mean == pytest.approx(10.0, rel=1e-9) and std < 1e-9
  # The parts are consecutive in the given order: sorted by class, each part holds one class.
  assert inception_score(one_hot[np.argsort(classes, kind="stable")], splits=10) == pytest.approx((1.0, 0.0))
  with pytest.raises(ValueError, match=r"N >= splits"):
    inception_score(one_hot[:9], splits=10)


def test_reference_statistics_are_cached_per_weights_file(tmp_path, monkeypatch):
  """A second call reads the cache; other weights bytes (another file, or the same file rewritten), another image
  count compute again; the statistics are those of the split's first images, of which the first
  MAX_STORED_FEATURES (5 here) keep their features."""
  calls = []

  def fake_features(net, images, batch_size):   # pixels, tiled to 2048 features
    calls.append(len(images))
    flat = images.reshape(len(images), -1).astype(np.float64)
    return np.tile(flat, (1, 3))[:, :FEATURE_DIM], np.zeros((len(images), 1008))

  monkeypatch.setattr(inception_reference, "inception_features", fake_features)
  monkeypatch.setattr(inception_reference, "load_fid_inception", lambda path: "net")
  monkeypatch.setattr(inception_reference, "MAX_STORED_FEATURES", 5)
  a, b, cache = tmp_path / "a.pth", tmp_path / "b.pth", str(tmp_path / "cache")
  a.write_bytes(b"weights a")
  b.write_bytes(b"weights b")

  mu, sigma, n = reference_statistics("fashion_mnist", "test", 12, str(a), cache, image_size=28, batch_size=2)
  assert calls == [8, 4] and n == 12   # chunks of CHUNK_BATCHES = 4 batches
  want = fake_features(None, FashionMNIST("test").images[:12].astype(np.float32) / 255.0, 0)[0]
  calls.clear()
  np.testing.assert_allclose(mu, want.mean(0), rtol=1e-12)
  np.testing.assert_allclose(sigma, np.cov(want, rowvar=False), rtol=1e-9, atol=1e-15)

  again = dataset_reference("fashion_mnist", "test", 12, str(a), cache, image_size=28)
  assert calls == [] and again.num_images == 12
  assert again.description == "fashion_mnist:test, the first 12 images at 28x28 px"
  np.testing.assert_array_equal(again.mu, mu)
  np.testing.assert_array_equal(again.sigma, sigma)
  np.testing.assert_array_equal(again.features, want[:5].astype(np.float32))

  reference_statistics("fashion_mnist", "test", 12, str(b), cache, image_size=28)
  assert calls == [12]
  reference_statistics("fashion_mnist", "test", 11, str(a), cache, image_size=28)
  assert calls == [12, 11]
  a.write_bytes(b"weights a, retrained")
  reference_statistics("fashion_mnist", "test", 12, str(a), cache, image_size=28)
  assert calls == [12, 11, 12]
  names = sorted(os.listdir(cache))
  assert len(names) == 4 and all(name.startswith("fashion_mnist-test-n1") for name in names)
  fingerprint = hashlib.sha256(b"weights b").hexdigest()
  assert f"fashion_mnist-test-n12-28x28px-{fingerprint[:16]}.npz" in names


def test_statistics_files(tmp_path):
  """pytorch-fid's layout (mu, sigma) is read without features; a missing array or another weights file is named."""
  rng = np.random.default_rng(2)
  mu, sigma = rng.normal(size=FEATURE_DIM), np.eye(FEATURE_DIM)
  path = str(tmp_path / "fid_stats.npz")
  np.savez(path, mu=mu, sigma=sigma)
  ref = file_reference(path)
  np.testing.assert_array_equal(ref.mu, mu)
  assert ref.features is None and ref.num_images is None and ref.description == f"statistics file {path}"
  np.savez(path, mu=mu)
  with pytest.raises(ValueError, match=rf"{path} has no array 'sigma'"):
    file_reference(path)
  np.savez(path, mu=mu, sigma=sigma, weights_sha256="ab" * 32)
  with pytest.raises(ValueError, match="another Inception weights file"):
    file_reference(path, fingerprint="cd" * 32)


# The network on random weights, end to end.


def run_evaluate(*args, cache):
  env = {**os.environ, "VQGEN_CACHE_DIR": str(cache)}
  return subprocess.run([sys.executable, "-m", "vqgen.evaluate", "--features=inception", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
  """Random FID Inception weights (PyTorch names, .npz), the first N_IMAGES test images as samples, and the
  command's scores of them against fashion_mnist:test with --num_reference=N_IMAGES (their own statistics)."""
  root = tmp_path_factory.mktemp("standard")
  weights = str(root / "fid_inception.npz")
  np.savez(weights, **random_fid_inception_state(0))
  images = FashionMNIST("test").images[:N_IMAGES].astype(np.float32) / 255.0
  (root / "real").mkdir()
  np.savez(root / "real" / "samples.npz", images=images)
  result = run_evaluate(f"--samples={root / 'real' / 'samples.npz'}", f"--inception_weights={weights}",
                        "--reference=fashion_mnist:test", f"--num_reference={N_IMAGES}", cache=root / "cache")
  assert result.returncode == 0, result.stderr[-3000:]
  with open(root / "real" / "inception_metrics.json") as f:
    scores = json.load(f)
  return {"root": root, "weights": weights, "images": images, "scores": scores, "stdout": result.stdout,
          "cache": root / "cache" / "inception_stats"}


def test_fid_of_the_reference_images_is_zero(setting):
  s = setting["scores"]
  assert abs(s["fid"]) < 1e-6, s["fid"]
  assert s["precision"] == 1.0 and s["recall"] == 1.0 and s["num_precision_recall_reference"] == N_IMAGES
  assert s["inception_score"] == pytest.approx(1.0, abs=1e-9)   # one image per split: exp(KL(p || p)) = 1
  assert s["inception_score_splits"] == 10 and s["num_samples"] == N_IMAGES and s["num_reference"] == N_IMAGES
  assert s["reference"] == f"fashion_mnist:test, the first {N_IMAGES} images at 28x28 px"
  assert s["weights"] == setting["weights"] and s["weights_sha256"] == weights_sha256(setting["weights"])
  assert f"FID                {s['fid']:.4f}   ({N_IMAGES} samples)" in setting["stdout"]
  assert len(os.listdir(setting["cache"])) == 1


def test_blurred_copy_scores_higher_against_the_statistics_file(setting):
  """The cached statistics, given as a file: the same reference, and a 3x3 box blur of the images moves FID."""
  x = np.pad(setting["images"], ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  blurred = sum(x[:, i:i + 28, j:j + 28] for i in range(3) for j in range(3)) / 9
  folder = setting["root"] / "blurred"
  folder.mkdir()
  np.savez(folder / "samples.npz", images=blurred.astype(np.float32))
  stats = str(setting["cache"] / os.listdir(setting["cache"])[0])
  result = run_evaluate(f"--samples={folder / 'samples.npz'}", f"--inception_weights={setting['weights']}",
                        f"--reference={stats}", cache=setting["root"] / "cache")
  assert result.returncode == 0, result.stderr[-3000:]
  with open(folder / "inception_metrics.json") as f:
    s = json.load(f)
  assert s["fid"] > 1.0 and s["fid"] > 1e6 * abs(setting["scores"]["fid"]), s["fid"]
  assert s["reference"].startswith(f"statistics file {stats} (fashion_mnist:test, the first {N_IMAGES} images")
  assert s["num_reference"] == N_IMAGES and "precision" in s


class Scaled(nnx.Module):
  """A stand-in tokenizer: reconstruction = scale * image."""

  def __init__(self, scale: float):
    self.scale = scale

  def __call__(self, images, train=False):
    return images * self.scale, None


def test_rfid_of_a_perfect_tokenizer_is_zero(setting):
  net = load_fid_inception(setting["weights"])
  args = ("fashion_mnist", "test", N_IMAGES)
  ref = dataset_reference(*args, setting["weights"], str(setting["cache"]), image_size=28, channels=1)  # cached
  scorer = InceptionScorer(net, ref, setting["weights"], weights_sha256(setting["weights"]))
  rfid = [scorer.reconstruction_fid(reconstruction_features(Scaled(scale), net, *args, image_size=28, channels=1))
          for scale in (1.0, 0.5)]
  assert abs(rfid[0]["rfid"]) < 1e-6 and rfid[1]["rfid"] > 1.0, rfid
  assert rfid[0]["rfid_num_images"] == N_IMAGES and rfid[0]["reference"] == ref.description


def test_missing_weights_and_misplaced_flags_fail_in_one_line(tmp_path):
  path = str(tmp_path / "samples.npz")
  np.savez(path, images=np.zeros((N_IMAGES, 28, 28, 1), np.float32))
  missing = str(tmp_path / "nowhere" / "pt_inception.pth")
  result = run_evaluate(f"--samples={path}", f"--inception_weights={missing}", cache=tmp_path / "cache")
  assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
  error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
  assert len(error) == 1 and "never downloads" in error[0] and WEIGHTS_URL in error[0] and missing in error[0]
  assert "--inception_weights=PATH" in error[0] and os.listdir(tmp_path) == ["samples.npz"]
  result = subprocess.run([sys.executable, "-m", "vqgen.evaluate", f"--samples={path}", "--num_reference=5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2 and "--num_reference: used only with --features=inception" in result.stderr
  result = subprocess.run([sys.executable, "-m", "vqgen.evaluate", "--features=inception"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode != 0 and "--samples is required (without it, --features=inception" in result.stderr
