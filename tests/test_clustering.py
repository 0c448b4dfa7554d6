"""Codebooks placed by clustering (vqgen/quantizers/clustering.py): CVQ's usage average, anchor weights and
anchors against their closed forms and brute force, its update through a training step as the source writes it
(in place, then the optimizer's step), and k-means initialisation surviving that step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vqgen.quantizers.clustering import anchor_weights, anchors, usage_update
from vqgen.quantizers.vq import VQ


def sgd_step(vq: VQ, x: jax.Array, lr: float):
  """One training step the way train/step.py takes it: the loss of the model merged from (params, rest); the
  forward pass's state comes back in `rest`, the parameters only through the optimizer (plain SGD here).
  Returns (model after the step, gradient of the codebook parameter, None where the codebook is state)."""
  graphdef, params, rest = nnx.split(vq, nnx.Param, ...)
  params, rest = params.to_pure_dict(), rest.to_pure_dict()

  def objective(params):
    model = nnx.merge(graphdef, params, rest)
    out = model(x, train=True)
    loss = jnp.sum(jnp.square(out.quantized - 1.0)) + sum(out.losses.values())
    return loss, nnx.split(model, nnx.Param, ...)[2].to_pure_dict()

  (_, rest), grads = jax.value_and_grad(objective, has_aux=True)(params)
  params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
  return nnx.merge(graphdef, params, rest), grads.get("codebook")


def test_usage_is_the_running_fraction_of_the_batch():
  usage = jnp.array([0.5, 0.25, 0.25, 0.0])
  indices = jnp.array([[0, 0, 3], [3, 3, 1]])
  expected = 0.9 * np.array([0.5, 0.25, 0.25, 0.0]) + 0.1 * np.array([2, 1, 0, 3]) / 6
  np.testing.assert_allclose(usage_update(usage, indices, 0.9), expected, rtol=1e-6)


def test_anchor_weight_is_the_sources_decay():
  """alpha = exp(-p K 10 / (1 - 0.99) - 1e-3): 1 - 1e-3 for an unused code, e^-1000 (0) at the average rate."""
  k = 8
  usage = jnp.array([0.0, 1e-5, 1e-4, 1 / k, 0.5, 0.0, 0.0, 0.0])
  expected = np.exp(-np.asarray(usage, np.float64) * k * 10 / 0.01 - 1e-3)
  np.testing.assert_allclose(anchor_weights(usage, 0.99), expected, rtol=1e-5)
  assert float(anchor_weights(usage, 0.99)[3]) == 0.0


@pytest.mark.parametrize("cosine", [False, True])
def test_closest_anchor_is_each_codes_nearest_feature(cosine):
  rng = np.random.default_rng(int(cosine))
  x, c = rng.normal(size=(50, 4)).astype(np.float32), rng.normal(size=(13, 4)).astype(np.float32)
  got = np.asarray(anchors(jnp.asarray(x), jnp.asarray(c), "closest", None, cosine=cosine, chunk_size=8))
  if cosine:
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)
    best = (unit(c) @ unit(x).T).argmax(1)
  else:
    best = ((c[:, None] - x[None]) ** 2).sum(-1).argmin(1)
  np.testing.assert_array_equal(got, x[best])


def test_probrandom_anchors_follow_the_softmax_over_features():
  """20000 draws for one code over 4 features: frequencies within 4 sigma of softmax_n(-||x_n - c||^2)."""
  x = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.5, 0.5]])
  c = jnp.zeros((20000, 2))  # one code, repeated: each row is an independent draw
  drawn = np.asarray(anchors(x, c, "probrandom", jax.random.key(0)))
  picks = (drawn[:, None, :] == np.asarray(x)[None]).all(-1).argmax(1)
  law = np.exp(-np.array([0.0, 1.0, 4.0, 0.5]))
  law /= law.sum()
  freq = np.bincount(picks, minlength=4) / len(picks)
  np.testing.assert_array_less(np.abs(freq - law), 4 * np.sqrt(law * (1 - law) / len(picks)) + 1e-9)


def test_random_anchors_are_batch_features():
  x = jax.random.normal(jax.random.key(0), (30, 3))
  drawn = np.asarray(anchors(x, jnp.zeros((64, 3)), "random", jax.random.key(1)))
  assert all((np.abs(np.asarray(x) - d).sum(-1) < 1e-7).any() for d in drawn)
  assert len({tuple(d) for d in drawn}) > 10


def test_cvq_step_is_the_sources_in_place_update_then_the_optimizer():
  """Through a training step: codes after = (1 - alpha) e + alpha a - lr g, e the codes before, a each code's
  nearest feature, alpha from the updated usage, g the loss gradient at e. A code far from the data (dead) lands
  on its nearest feature; a code the batch uses stays where the gradient puts it."""
  vq = VQ(2, 4, cvq_anchor="closest", rngs=nnx.Rngs(0))
  codebook = jnp.array([[0.0, 0.0], [3.0, 3.0], [-1.0, 0.0], [50.0, 50.0]])
  vq.codebook[...] = codebook
  x = jnp.array([[0.1, 0.0], [0.0, 0.2], [2.9, 3.0], [3.1, 3.2], [-1.1, 0.0], [4.0, 4.0]])
  lr = 0.01
  after, grad = sgd_step(vq, x, lr)
  usage = 0.01 * np.array([2, 3, 1, 0]) / 6  # decay 0.99 from zero usage
  alpha = np.exp(-usage * 4 * 10 / 0.01 - 1e-3)[:, None]
  nearest = np.asarray(x)[((np.asarray(codebook)[:, None] - np.asarray(x)[None]) ** 2).sum(-1).argmin(1)]
  expected = (1 - alpha) * np.asarray(codebook) + alpha * nearest - lr * np.asarray(grad)
  np.testing.assert_allclose(after.raw_codes(), expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(after.usage[...], usage, rtol=1e-6)
  np.testing.assert_allclose(after.raw_codes()[3], [4.0, 4.0], atol=0.05)  # dead: (1 - e^-1e-3) of the way short
  assert np.abs(np.asarray(after.raw_codes()[:3]) - (np.asarray(codebook[:3]) - lr * np.asarray(grad[:3]))).max() \
      < 1e-3  # used codes: alpha <= e^-33


def test_cvq_revives_a_collapsed_codebook():
  """Codes initialised far from the data: nearest-code assignment uses one code forever; with CVQ's random
  anchors nearly every code is in use after a few steps. ('closest' sends every dead code of such a codebook to the same
  extreme feature, as the source does: it suits codes initialised among the features.)"""
  x = jax.random.normal(jax.random.key(0), (256, 2))
  usage = {}
  for anchor in (None, "random"):
    vq = VQ(2, 16, cvq_anchor=anchor, rngs=nnx.Rngs(0))
    vq.codebook[...] = 20.0 + jax.random.normal(jax.random.key(1), (16, 2))
    for _ in range(5):
      vq, _ = sgd_step(vq, x, 0.01)
    usage[anchor] = float(vq(x).metrics["usage"])
  assert usage[None] <= 2 / 16 and usage["random"] >= 12 / 16  # codes on random features: a few shadowed


@pytest.mark.parametrize("kwargs", [{}, {"affine_lr": 10.0}, {"learning": "alternating", "alternating_lr": 1e-3}])
def test_kmeans_init_survives_the_training_step(kwargs):
  """The k-means centroids of the first batch are the codes after the first (small) step, for a codebook learned
  by gradient (the rewrite lives in state, not in the parameter the step overwrites), through the affine map, and
  for the alternating codebook; a second step does not re-initialise."""
  centres = jnp.eye(4) * 5.0
  x = jnp.concatenate([c + 0.05 * jax.random.normal(jax.random.key(i), (64, 4)) for i, c in enumerate(centres)])
  vq = VQ(4, 4, kmeans_init=True, rngs=nnx.Rngs(0), **kwargs)
  after, _ = sgd_step(vq, x, 1e-3)
  assert bool(after.initialized[...])
  codes = np.asarray(after.raw_codes())
  assert max(np.abs(codes - np.asarray(c)).sum(-1).min() for c in centres) < 0.1
  np.testing.assert_allclose(sgd_step(after, x, 0.0)[0].raw_codes(), codes, atol=1e-3)  # once only


@pytest.mark.parametrize("kwargs, message", [
    ({"cvq_anchor": "nearest"}, "cvq_anchor must be"),
    ({"cvq_anchor": "closest", "learning": "ema"}, "learned by gradient"),
    ({"cvq_anchor": "closest", "simvq": True}, "learned by gradient"),
])
def test_impossible_cvq_settings_fail_at_construction(kwargs, message):
  with pytest.raises(ValueError, match=message):
    VQ(2, 4, rngs=nnx.Rngs(0), **kwargs)
