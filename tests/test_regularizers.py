"""VQ codebook regularisers (vqgen/quantizers/regularizers.py): TIQ's orthogonal loss against its closed forms and
a double loop, its active-codes and sampled forms against the same loss over the chosen rows, the diversity loss
against the entropy of the batch's code marginal, and the VQ options that add them."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vqgen.quantizers.regularizers import diversity_loss, orthogonal_loss, sampled_orthogonal_loss
from vqgen.quantizers.vq import VQ


def brute_orthogonal(c):
  """(1 / n^2) sum_{i != j} cos(c_i, c_j)^2, one pair at a time."""
  n = len(c)
  cos = lambda a, b: a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
  return sum(cos(c[i], c[j]) ** 2 for i, j in itertools.permutations(range(n), 2)) / n ** 2


def test_orthogonal_loss_closed_forms_and_pairs():
  q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(6, 6)))
  assert float(orthogonal_loss(jnp.asarray(3.0 * q[:4], jnp.float32))) == pytest.approx(0.0, abs=1e-6)
  same = np.tile([[1.0, 2.0, -1.0]], (5, 1))
  assert float(orthogonal_loss(jnp.asarray(same, jnp.float32))) == pytest.approx(1 - 1 / 5, rel=1e-5)
  c = np.random.default_rng(1).normal(size=(9, 4))
  assert float(orthogonal_loss(jnp.asarray(c, jnp.float32))) == pytest.approx(brute_orthogonal(c), rel=1e-5)


def test_active_and_sampled_forms_are_the_loss_over_their_rows():
  c = jnp.asarray(np.random.default_rng(2).normal(size=(12, 5)), jnp.float32)
  indices = jnp.asarray([[3, 3, 7], [0, 7, 11]])
  used = [0, 3, 7, 11]
  np.testing.assert_allclose(sampled_orthogonal_loss(c, indices, active_only=True, max_codes=0, key=None),
                             brute_orthogonal(np.asarray(c)[used]), rtol=1e-5)
  key = jax.random.key(4)
  pick = np.asarray(jax.random.permutation(key, 12)[:5])
  np.testing.assert_allclose(sampled_orthogonal_loss(c, indices, active_only=False, max_codes=5, key=key),
                             brute_orthogonal(np.asarray(c)[pick]), rtol=1e-5)
  both = sampled_orthogonal_loss(c, indices, active_only=True, max_codes=5, key=key)
  chosen = [i for i in pick if i in used]  # the drawn codes the batch uses
  np.testing.assert_allclose(both, brute_orthogonal(np.asarray(c)[chosen]), rtol=1e-5, atol=1e-7)


def test_diversity_loss_is_minus_the_entropy_of_the_mean_assignment():
  logits = np.random.default_rng(3).normal(size=(20, 6)) * 3
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  mean = p.mean(0)
  np.testing.assert_allclose(diversity_loss(jnp.asarray(logits, jnp.float32)), np.sum(mean * np.log(mean)), rtol=1e-5)
  # Evenly spread hard assignments reach the minimum -log K; a collapsed batch 0.
  even = jnp.asarray(np.tile(np.eye(4) * 100.0, (3, 1)), jnp.float32)
  assert float(diversity_loss(even)) == pytest.approx(-math.log(4), rel=1e-5)
  assert float(diversity_loss(jnp.tile(jnp.asarray([[100.0, 0, 0, 0]]), (8, 1)))) == pytest.approx(0.0, abs=1e-5)


def test_vq_adds_the_weighted_regularisers_in_training_only():
  z = jnp.asarray(np.random.default_rng(5).normal(size=(2, 16, 4)), jnp.float32)
  q = VQ(4, 16, orthogonal_weight=10.0, diversity_weight=0.5, diversity_temperature=0.1, rngs=nnx.Rngs(0))
  out = q(z, train=True)
  codes = q.codes()
  np.testing.assert_allclose(out.losses["orthogonal"], 10.0 * brute_orthogonal(np.asarray(codes)), rtol=1e-5)
  x = np.asarray(z).reshape(-1, 4)
  d = ((x[:, None] - np.asarray(codes)[None]) ** 2).sum(-1)
  np.testing.assert_allclose(out.losses["diversity"], 0.5 * float(diversity_loss(jnp.asarray(-d / 0.1))), rtol=1e-4)
  assert not {"orthogonal", "diversity"} & set(q(z, train=False).losses)
  sampled = VQ(4, 16, orthogonal_weight=1.0, orthogonal_max_codes=6, rngs=nnx.Rngs(0))
  assert np.isfinite(float(sampled(z, train=True).losses["orthogonal"]))


def test_gradient_steps_make_the_codebook_more_orthogonal():
  q = VQ(8, 6, orthogonal_weight=1.0, commitment_weight=0.0, codebook_weight=0.0, rngs=nnx.Rngs(1))
  z = jnp.zeros((1, 8))
  graphdef, params, rest = nnx.split(q, nnx.Param, ...)
  loss = lambda p: nnx.merge(graphdef, p, rest)(z, train=True).losses["orthogonal"]
  step = jax.jit(lambda p: jax.tree.map(lambda w, g: w - 0.5 * g, p, jax.grad(loss)(p)))
  before = float(loss(params))
  for _ in range(200):
    params = step(params)
  assert before > 0.05 and float(loss(params)) < 0.01 * before


def test_the_options_are_checked():
  with pytest.raises(ValueError, match="learning='gradient'"):
    VQ(4, 8, orthogonal_weight=1.0, learning="ema", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="diversity_temperature > 0"):
    VQ(4, 8, diversity_weight=1.0, diversity_temperature=0.0, rngs=nnx.Rngs(0))
