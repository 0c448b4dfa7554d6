"""Reconstruction metrics over a split equal their closed forms (PSNR over all pixels, usage per level)."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vqgen.data import eval_batches
from vqgen.evaluation.reconstruction import psnr_from_mse
from vqgen.stages.tokenizer import evaluate_tokenizer
from vqgen.quantizers import QuantizerOutput
from vqgen.train import sharding as sharding_lib


class FakeTokenizer(nnx.Module):
  """recon = images * 0.5; level-l index = (label + l) mod 4 broadcast over a 2x2 grid."""

  def __init__(self, levels):
    self.levels = levels

  def __call__(self, images, train=False):
    base = jnp.floor(images[:, :2, :2, 0] * 3.99).astype(jnp.int32)
    indices = jnp.stack([(base + l) % 4 for l in range(self.levels)], -1) if self.levels > 1 else base
    return images * 0.5, QuantizerOutput(images, indices, {}, {})


class Source:
  def __init__(self, images):
    self.images = images

  def __len__(self):
    return len(self.images)

  def __getitem__(self, i):
    return {"image": self.images[i], "label": np.int32(0)}


def test_psnr_and_usage_closed_form():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (50, 4, 4, 1)).astype(np.uint8)
  x = images.astype(np.float32) / 255
  mesh = sharding_lib.make_mesh(devices=jax.devices()[:1])
  for levels in (1, 3):
    batches = eval_batches(Source(images), batch_size=16, image_size=4)  # 4 batches, the last one padded
    results, (first_images, first_recon) = evaluate_tokenizer(FakeTokenizer(levels), batches, mesh, 4)
    mse = np.mean((x - 0.5 * x) ** 2)
    np.testing.assert_allclose(results["test_psnr"], 10 * np.log10(1 / mse), rtol=1e-5)
    np.testing.assert_allclose(results["test_psnr"], psnr_from_mse(results["test_mse"]), rtol=1e-6)
    assert results["num_eval_images"] == 50
    base = np.floor(x[:, :2, :2, 0] * 3.99).astype(int)
    usages, perplexities = [], []
    for level in range(levels):
      counts = np.bincount(((base + level) % 4).ravel(), minlength=4)
      p = counts / counts.sum()
      usages.append(np.mean(counts > 0))
      perplexities.append(np.exp(-(p[p > 0] * np.log(p[p > 0])).sum()))
    np.testing.assert_allclose(results["codebook_usage"], np.mean(usages))
    np.testing.assert_allclose(results["codebook_perplexity"], np.mean(perplexities), rtol=1e-5)
    np.testing.assert_allclose(first_recon, 0.5 * first_images)
