"""VQGAN-LC (vqgen/stages/feature_codebook.py, quantizers/vq.py feature_dim): the projected frozen codebook, k-means
centres against blobs and the Lloyd fixed point, the perceptual network's patch features, the file's errors, and a
tokenizer run that reads the file once, keeps the codebook frozen and restores without it."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import tiny_config
from vqgen import config as config_lib
from vqgen.data import FashionMNIST
from vqgen.stages.classifier import perceptual_network
from vqgen.stages.feature_codebook import (cluster_centres, patch_features, read_feature_codebook,
                                           write_feature_codebook)
from vqgen.stages.tokenizer import TokenizerStage
from vqgen.train.trainer import restore_model, train_and_evaluate
from vqgen.quantizers.vq import VQ


def test_codes_are_the_projected_frozen_features():
  vq = VQ(6, 32, codebook_dim=4, feature_dim=10, rngs=nnx.Rngs(0))
  features = np.random.default_rng(0).normal(size=(32, 10)).astype(np.float32)
  features = 3.0 + 40.0 * features  # perceptual features are large and positive
  vq.set_feature_codebook(features)
  kernel, bias = np.asarray(vq.codebook_map.kernel[...]), np.asarray(vq.codebook_map.bias[...])
  centred = features - features.mean(0)
  stored = centred / np.sqrt((centred**2).sum(1).mean())  # centred, root-mean-square norm 1
  np.testing.assert_allclose(vq.frozen_codebook[...], stored, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(vq.codes(), stored @ kernel + bias, rtol=1e-5, atol=1e-6)
  assert 0.5 < np.linalg.norm(np.asarray(vq.codes()), axis=1).mean() < 2.0  # the latents' scale, not ~40
  assert abs(kernel.std() - 4**-0.5) < 0.15  # the source's projector init, N(0, 1 / embed_dim)
  params = nnx.state(vq, nnx.Param).to_pure_dict()
  assert "frozen_codebook" not in params and "codebook_map" in params  # C is frozen, P is trained
  with pytest.raises(ValueError, match=r"needs \(32, 10\)"):
    vq.set_feature_codebook(features[:16])
  with pytest.raises(ValueError, match="NaN"):
    vq.set_feature_codebook(np.full((32, 10), np.nan, np.float32))


def test_centres_find_blobs_and_are_the_means_of_their_clusters():
  rng = np.random.default_rng(0)
  means = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
  x = np.concatenate([m + rng.normal(size=(200, 2)) for m in means]).astype(np.float32)
  centres, counts = cluster_centres(x, 3, iters=10, seed=1, seeding="kmeans++")
  order = np.argsort(centres[:, 0] + 2 * centres[:, 1])
  np.testing.assert_allclose(centres[order], means, atol=0.2)
  assign = ((x[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
  np.testing.assert_allclose(centres, [x[assign == k].mean(0) for k in range(3)], atol=1e-4)  # Lloyd fixed point
  assert counts.sum() == 600
  with pytest.raises(ValueError, match="at least as many features"):
    cluster_centres(x[:2], 3)


def test_patch_features_are_the_last_tap_of_the_perceptual_network(perceptual_workdir):
  net = perceptual_network(perceptual_workdir)
  images = FashionMNIST("train").images[:12]
  features = patch_features(net, images, batch_size=5)
  expected = np.asarray(net.features(jnp.asarray(images, jnp.float32) / 255.0)[-1]).reshape(-1, 64)
  assert features.shape == (12 * 7 * 7, 64)
  np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)


def test_unusable_files_are_named_with_the_fix(tmp_path):
  with pytest.raises(FileNotFoundError, match="vqgen.cli.feature_codebook"):
    read_feature_codebook(str(tmp_path / "missing.npy"))
  (tmp_path / "corrupt.npy").write_bytes(b"not an array")
  with pytest.raises(ValueError, match="not a readable .npy"):
    read_feature_codebook(str(tmp_path / "corrupt.npy"))
  np.save(tmp_path / "ints.npy", np.zeros((4, 2, 2), np.int32))
  with pytest.raises(ValueError, match=r"\[codebook_size, feature_dim\]"):
    read_feature_codebook(str(tmp_path / "ints.npy"))


def test_a_run_reads_the_file_once_keeps_the_codebook_frozen_and_restores_without_it(tmp_path, perceptual_workdir):
  net = perceptual_network(perceptual_workdir)
  features = patch_features(net, FashionMNIST("train").images[:64])
  centres, _ = cluster_centres(features, 32, iters=3)
  path = str(tmp_path / "codebook.npy")
  write_feature_codebook(path, centres)

  def config(**overrides):
    return tiny_config(**{"quantizer": config_lib.quantizer_config("vq", dim=8, codebook_size=32, codebook_dim=4,
                                                                   feature_dim=64),
                          "model.feature_codebook": path, "train.steps": 2, **overrides})

  c = config()
  workdir = str(tmp_path / "run")
  train_and_evaluate(c, workdir, TokenizerStage(c))
  os.remove(path)
  restored = restore_model(c, workdir, TokenizerStage(c))
  centred = centres - centres.mean(0)  # stored standardised (VQ.set_feature_codebook), frozen through training
  np.testing.assert_allclose(restored.quantizer.frozen_codebook[...], centred / np.sqrt((centred**2).sum(1).mean()),
                             rtol=1e-5, atol=1e-6)
  write_feature_codebook(path, centres[:16])
  with pytest.raises(ValueError, match=r"needs \(32, 64\)"):
    train_and_evaluate(c, str(tmp_path / "wrong"), TokenizerStage(c))
  with pytest.raises(ValueError, match="model.feature_codebook"):
    config_lib.validate(config(**{"model.feature_codebook": ""}))
