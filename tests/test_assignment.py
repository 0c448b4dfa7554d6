"""VQ assignments in training (vqgen/quantizers/assignment.py). OptVQ's optimal transport: the Sinkhorn plan
against the source's linear-space iteration and its marginals, its limit against the optimal assignment found by
brute force, every code used from a codebook the nearest-code rule leaves collapsed. Stochastic code sampling: the
draws against the Boltzmann law. Both take the nearest code at inference. The chunked nearest code: brute force,
ties, a K no block divides, and a compiled footprint that no [N, K] matrix fits in."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vqgen.quantizers.assignment import (nearest_indices, optimal_transport_indices, sampled_indices, sinkhorn_log_plan,
                                         standardized_cost)
from vqgen.quantizers.vq import VQ


def source_plan(cost, iters, epsilon):
  """The OptVQ source's Sinkhorn in linear space, written from its description: Q = exp(-cost * epsilon)^T
  normalised to sum 1; `iters` times: each code's row / its sum / K, each vector's column / its sum / N."""
  q = np.exp(-cost.astype(np.float64) * epsilon).T
  k, n = q.shape
  q /= q.sum()
  for _ in range(iters):
    q /= q.sum(1, keepdims=True) * k
    q /= q.sum(0, keepdims=True) * n
  return q.T


def squared_distances(x, c):
  return ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)


def test_cost_is_the_standardised_euclidean_distance():
  rng = np.random.default_rng(0)
  x, c = rng.normal(size=(12, 3)), rng.normal(size=(5, 3))
  d = np.sqrt(squared_distances(x, c))
  expected = (d - d.mean()) / (d.std() + 1e-6)
  np.testing.assert_allclose(standardized_cost(jnp.asarray(squared_distances(x, c), jnp.float32)),
                             expected - expected.min(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("iters", [1, 5, 300])
def test_plan_equals_the_sources_iteration_and_has_its_marginals(iters):
  rng = np.random.default_rng(iters)
  cost = np.asarray(standardized_cost(jnp.asarray(rng.uniform(0, 4, size=(40, 8)), jnp.float32)))
  plan = np.exp(np.asarray(sinkhorn_log_plan(jnp.asarray(cost), iters, temperature=0.1), np.float64))
  np.testing.assert_allclose(plan, source_plan(cost, iters, epsilon=10.0), rtol=2e-4, atol=1e-9)
  np.testing.assert_allclose(plan.sum(1), 1 / 40, rtol=1e-5)  # rows (vectors) are rescaled last: exact
  if iters == 300:
    np.testing.assert_allclose(plan.sum(0), 1 / 8, rtol=1e-3)  # columns (codes) converge to 1/K


def test_cold_plan_is_the_optimal_assignment_by_brute_force():
  """N = K: the transport polytope's vertices are the permutations (Birkhoff), so as the temperature goes to 0
  the plan's row argmax is the permutation of least total Euclidean distance, found here over all 7! of them."""
  rng = np.random.default_rng(5)
  x, c = rng.normal(size=(7, 2)), rng.normal(size=(7, 2))
  d = np.sqrt(squared_distances(x, c))
  costs = {p: d[np.arange(7), p].sum() for p in itertools.permutations(range(7))}
  best = min(costs, key=costs.get)
  assert sorted(costs.values())[1] - costs[best] > 0.1  # a clear optimum
  indices = optimal_transport_indices(jnp.asarray(squared_distances(x, c), jnp.float32), iters=3000,
                                      temperature=0.005)
  np.testing.assert_array_equal(np.asarray(indices), best)
  assert tuple(np.argmin(d, 1)) != best  # the greedy nearest codes are not the optimum here


def vq(assignment, **kwargs):
  return VQ(4, 8, assignment=assignment, rngs=nnx.Rngs(0), **kwargs)


def test_every_code_is_used_in_training_from_a_collapsed_codebook_and_the_nearest_at_inference():
  """64 vectors ~ N(0, I) in 4-D, one code at the origin and seven at radius 5: the nearest-code rule sends 62 of
  them to the origin. The transport plan shares the batch among all eight codes already at the source's settings
  (5 iterations, temperature 0.1), and nearly evenly (8 each) once converged; at inference (train = False) the
  same quantizer takes the nearest code."""
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.normal(size=(64, 4)), jnp.float32)
  far = rng.normal(size=(7, 4))
  codebook = np.concatenate([np.zeros((1, 4)), 5 * far / np.linalg.norm(far, axis=1, keepdims=True)])
  nearest = np.argmin(squared_distances(np.asarray(z, np.float64), codebook), 1)
  assert np.bincount(nearest, minlength=8).tolist() == [62, 1, 1, 0, 0, 0, 0, 0]
  outputs = {}
  for name, kwargs in (("source", {}), ("converged", {"sinkhorn_iters": 200, "sinkhorn_temperature": 0.01})):
    q = vq("optimal_transport", **kwargs)
    q.codebook[...] = jnp.asarray(codebook, jnp.float32)
    outputs[name] = q(z, train=True)
    np.testing.assert_array_equal(q(z, train=False).indices, nearest)
  assert (np.bincount(np.asarray(outputs["source"].indices), minlength=8) > 0).all()
  counts = np.bincount(np.asarray(outputs["converged"].indices), minlength=8)
  assert counts.min() >= 7 and counts.max() <= 9, counts
  # The losses and the straight-through output use the assigned codes.
  out = outputs["source"]
  assigned = codebook[np.asarray(out.indices)]
  np.testing.assert_allclose(out.losses["commitment"], 0.25 * np.mean((np.asarray(z) - assigned) ** 2), rtol=1e-5)
  np.testing.assert_allclose(out.quantized, assigned, rtol=1e-5, atol=1e-5)


def test_the_assignment_is_checked():
  with pytest.raises(ValueError, match="assignment must be one of"):
    vq("sinkhorn")
  with pytest.raises(ValueError, match="gumbel"):
    vq("optimal_transport", gradient="gumbel")
  with pytest.raises(ValueError, match="sinkhorn_iters >= 1"):
    vq("optimal_transport", sinkhorn_iters=0)


def test_gradient_reaches_the_encoder_and_the_codebook_through_the_assigned_codes():
  z = jnp.asarray(np.random.default_rng(1).normal(size=(32, 4)), jnp.float32)
  q = vq("optimal_transport")
  graphdef, params, rest = nnx.split(q, nnx.Param, ...)

  def loss(params, z):
    out = nnx.merge(graphdef, params, rest)(z, train=True)
    return jnp.sum(out.quantized ** 2) + sum(out.losses.values())

  grads_p, grads_z = jax.grad(loss, argnums=(0, 1))(params, z)
  assert float(jnp.abs(grads_z).sum()) > 0 and float(jnp.abs(grads_p["codebook"][...]).sum()) > 0


def test_sampled_codes_follow_the_boltzmann_law_and_tend_to_the_nearest():
  """Stochastic code sampling: 20000 draws per vector against p(k | x) = softmax(-||x - c_k||^2 / T) computed in
  float64 (within 4 standard errors); at a tiny temperature the draw is the nearest code."""
  rng = np.random.default_rng(7)
  x, c = rng.normal(size=(3, 2)), rng.normal(size=(5, 2))
  d = squared_distances(x, c)
  logits = -d / 0.5
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  draws = jax.vmap(lambda key: sampled_indices(jnp.asarray(d, jnp.float32), 0.5, key))(
      jax.random.split(jax.random.key(0), 20000))
  for n in range(3):
    freq = np.bincount(np.asarray(draws[:, n]), minlength=5) / 20000
    np.testing.assert_array_less(np.abs(freq - p[n]), 4 * np.sqrt(p[n] * (1 - p[n]) / 20000) + 1e-4)
  cold = sampled_indices(jnp.asarray(d, jnp.float32), 1e-4, jax.random.key(1))
  np.testing.assert_array_equal(cold, np.argmin(d, 1))


def test_vq_samples_codes_in_training_and_takes_the_nearest_at_inference():
  rng = np.random.default_rng(8)
  z = jnp.asarray(rng.normal(size=(256, 4)), jnp.float32)
  q = vq("sample", sample_temperature=2.0)
  nearest = np.argmin(squared_distances(np.asarray(z, np.float64), np.asarray(q.codes(), np.float64)), 1)
  np.testing.assert_array_equal(q(z, train=False).indices, nearest)
  drawn = np.asarray(q(z, train=True).indices)
  assert 0.05 < np.mean(drawn != nearest) < 0.95  # a warm law moves some vectors off their nearest code
  out = q(z, train=True)
  np.testing.assert_allclose(out.quantized, np.asarray(q.codes())[np.asarray(out.indices)], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk_size", [0, 1, 7, 16, 64, 200])
def test_chunked_nearest_code_is_the_brute_force_argmin(chunk_size):
  """K = 61 (no block size divides it; 200 > K is one product): every vector's pick is the lowest index among
  the codes at the brute-force minimum distance, including exact ties planted by duplicating codes."""
  rng = np.random.default_rng(chunk_size)
  c = rng.normal(size=(61, 5)).astype(np.float32)
  c[40], c[59] = c[3], c[17]  # duplicates: the lower index must win, even across blocks
  x = np.concatenate([rng.normal(size=(90, 5)), c[[3, 17, 40, 59]]]).astype(np.float32)
  got = np.asarray(nearest_indices(jnp.asarray(x), jnp.asarray(c), chunk_size))
  d = squared_distances(x.astype(np.float64), c.astype(np.float64))
  assert got.dtype == np.int32
  np.testing.assert_array_equal(got, d.argmin(1))
  np.testing.assert_array_equal(got[-4:], [3, 17, 3, 17])


def test_chunked_vq_has_the_dense_values_and_gradients():
  """VQ(chunk_size=16) and VQ(chunk_size=0): same indices, output, losses, and gradients to z and the codebook
  (straight-through and rotation), K = 100 over 7 blocks."""
  z = jax.random.normal(jax.random.key(1), (4, 30, 8))

  def run(chunk_size, gradient):
    vq = VQ(8, 100, chunk_size=chunk_size, gradient=gradient, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(vq, nnx.Param, ...)

    def loss(z, params):
      out = nnx.merge(graphdef, params, rest)(z, train=True)
      return jnp.sum(out.quantized * jnp.cos(out.quantized)) + sum(out.losses.values()), out.indices

    (value, indices), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(z, params)
    return value, indices, grads

  for gradient in ("ste", "rotation"):
    value, indices, (gz, gs) = run(16, gradient)
    value0, indices0, (gz0, gs0) = run(0, gradient)
    np.testing.assert_array_equal(indices, indices0)
    np.testing.assert_allclose(value, value0, rtol=1e-6)
    np.testing.assert_allclose(gz, gz0, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gs["codebook"][...], gs0["codebook"][...], rtol=1e-5, atol=1e-7)


def test_chunked_vq_step_never_holds_the_distance_matrix():
  """K = 2^16 codes on 8192 vectors: one [N, K] float32 matrix is 2 GiB. The compiled training step (forward,
  backward, EMA update) needs under 1/8 of that in temporaries with 256-code blocks; the one-product form needs
  more than one matrix. Compiled only (memory_analysis), never run."""
  n, k = 8192, 2**16
  matrix = n * k * 4

  def temp_bytes(chunk_size):
    vq = VQ(8, k, learning="ema", gradient="rotation", chunk_size=chunk_size, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(vq)
    state = state.to_pure_dict()  # merged into fresh Variables inside the trace (the EMA update mutates them)

    def loss(z, state):
      out = nnx.merge(graphdef, state)(z, train=True)
      return jnp.sum(out.quantized ** 2) + sum(out.losses.values())

    z = jax.ShapeDtypeStruct((n, 8), jnp.float32)
    return jax.jit(jax.grad(loss)).lower(z, state).compile().memory_analysis().temp_size_in_bytes

  assert temp_bytes(256) < matrix / 8
  assert temp_bytes(0) >= matrix
