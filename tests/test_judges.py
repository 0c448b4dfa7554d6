"""The sample metrics' judges: SimCLR's NT-Xent against a brute-force loop and its closed form, the views an
augmentation makes, the standardised features a judge compares, and the classifier's features."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vqgen.evaluation import contrastive
from vqgen.evaluation.classifier import FEATURE_DIM, PENULTIMATE, Classifier
from vqgen.evaluation.contrastive import ContrastiveEncoder, augment, nt_xent
from vqgen.evaluation.samples import Judge, judge_key


def test_nt_xent_is_the_brute_force_mean_over_both_views():
  rng = np.random.default_rng(0)
  z1, z2, t = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), 0.3
  z = np.concatenate([z1, z2])
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  total = 0.0
  for i in range(10):
    j = (i + 5) % 10
    others = [np.exp(z[i] @ z[k] / t) for k in range(10) if k != i]
    total += -np.log(np.exp(z[i] @ z[j] / t) / sum(others))
  np.testing.assert_allclose(float(nt_xent(jnp.asarray(z1), jnp.asarray(z2), t)), total / 10, rtol=1e-5)


def test_nt_xent_closed_form_for_identical_orthogonal_views():
  """Views equal, images orthogonal: each anchor has one candidate at similarity 1 and 2n - 2 at 0, so the loss
  is log(e^(1/t) + 2n - 2) - 1/t."""
  n, t = 4, 0.2
  z = jnp.eye(n)
  np.testing.assert_allclose(float(nt_xent(z, z, t)), np.log(np.exp(1 / t) + 2 * n - 2) - 1 / t, rtol=1e-5)


def test_a_view_moves_flips_dims_or_cuts_a_pixel_but_never_spreads_it():
  """A single bright pixel stays a single pixel (no blur, no noise), within SHIFT of where it was or of its mirror
  image, dimmed into DIM_RANGE; or it is gone (cut out)."""
  image = np.zeros((64, 28, 28, 1), np.float32)
  image[:, 12, 9] = 1.0
  views = np.asarray(augment(jax.random.key(0), jnp.asarray(image)))
  assert views.shape == image.shape and views.dtype == np.float32
  kept = 0
  for v in views[..., 0]:
    lit = np.argwhere(v > 0)
    assert len(lit) <= 1
    if len(lit):
      kept += 1
      (y, x), = lit
      assert abs(y - 12) <= contrastive.SHIFT and min(abs(x - 9), abs(x - 18)) <= contrastive.SHIFT
      assert contrastive.DIM_RANGE[0] <= v[y, x] <= contrastive.DIM_RANGE[1]
  assert 16 < kept < 64  # cut out about a quarter of the time (where the square falls on it)


def test_the_judge_standardises_features_over_the_reference():
  class Net(nnx.Module):
    def features(self, x):
      flat = x.reshape(len(x), -1)
      return jnp.stack([3 * flat[:, 0], flat[:, 1] + 5, jnp.zeros(len(x))], -1)  # the last: constant

  reference = np.random.default_rng(0).uniform(size=(500, 2, 1, 1)).astype(np.float32)
  judge = Judge(Net(), reference)
  np.testing.assert_allclose(judge.reference[:, :2].std(0), 1.0, rtol=1e-6)
  assert judge.scale[2] == 0 and np.all(judge.reference[:, 2] == 0)
  reference[:, 1] *= 1e-3  # a feature 3000x narrower than the other: weighted as one at a third of the median
  judge = Judge(Net(), reference)
  median = np.median([3 * reference[:, 0].std(), reference[:, 1].std()])
  np.testing.assert_allclose(judge.scale[1], 1 / (median / 3), rtol=1e-5)
  np.testing.assert_allclose(judge(reference[:3]), judge.reference[:3])
  assert judge_key("sample_fd", "classifier") == "sample_fd"
  assert judge_key("sample_fd", "contrastive") == "sample_fd_contrastive"


def test_the_classifier_judges_its_penultimate_layer_and_texture_statistics():
  model = Classifier(rngs=nnx.Rngs(0))
  images = jnp.asarray(np.random.default_rng(0).uniform(size=(3, 28, 28, 1)), jnp.float32)
  features = model.features(images)
  assert features.shape == (3, FEATURE_DIM)
  h, maps = model.penultimate(images)
  np.testing.assert_allclose(features[:, :PENULTIMATE], h)
  np.testing.assert_allclose(features[:, PENULTIMATE:PENULTIMATE + 16], maps[0].mean((1, 2)), rtol=1e-6)
  np.testing.assert_allclose(model(images), model.out(h), rtol=1e-6)  # logits read the same penultimate layer
  encoder = ContrastiveEncoder(rngs=nnx.Rngs(0))
  assert encoder.features(images).shape == (3, 64) and encoder(images).shape == (3, 64)
