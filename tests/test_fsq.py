"""FSQ against the paper's reference notebook formula, exhaustively over the codebook, in bf16 and under grad."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vqgen.quantizers import FSQ, RECOMMENDED_LEVELS, batch_metrics, usage_and_perplexity


def reference_fsq(z, levels, eps=1e-3):
  """The google-research fsq.ipynb computation, written out in float64 numpy."""
  levels = np.asarray(levels, np.float64)
  half_l = (levels - 1) * (1 - eps) / 2
  offset = np.where(levels % 2 == 1, 0.0, 0.5)
  shift = np.tan(offset / half_l)
  bounded = np.tanh(z + shift) * half_l - offset
  half_width = levels // 2
  codes = np.round(bounded) / half_width
  basis = np.concatenate(([1], np.cumprod(levels[:-1])))
  indices = ((codes * half_width + half_width) * basis).sum(-1).astype(np.int64)
  return codes, indices


@pytest.mark.parametrize("levels", [(8, 5, 5, 5), (8, 6, 5), (7, 5, 5, 5, 5), (2, 3), (4, 4, 4)])
def test_matches_reference_notebook(levels):
  z = np.random.default_rng(0).normal(scale=2.0, size=(4096, len(levels))).astype(np.float32)
  out = FSQ(levels)(jnp.asarray(z))
  codes, indices = reference_fsq(z.astype(np.float64), levels)
  # Rounding sits exactly on .5 boundaries with probability ~0; compare where float32 and float64 agree.
  np.testing.assert_allclose(np.asarray(out.quantized), codes, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(out.indices), indices)
  assert out.indices.dtype == jnp.int32 and out.losses == {}


@pytest.mark.parametrize("levels", [(8, 5, 5, 5), (8, 6, 5), (3, 2, 4)])
def test_every_code_reachable_and_round_trip(levels):
  q = FSQ(levels)
  # All prod(L) level combinations, as codes; quantizing their preimage must give them back.
  grids = [(np.arange(l) - l // 2) / (l // 2) for l in levels]
  codes = np.array(list(itertools.product(*grids)), np.float32)
  assert len(codes) == q.codebook_size == math.prod(levels)
  indices = np.asarray(q.codes_to_indices(jnp.asarray(codes)))
  assert sorted(indices.tolist()) == list(range(q.codebook_size))
  np.testing.assert_array_equal(np.asarray(q.indices_to_codes(jnp.asarray(indices))), codes)
  # Preimage: invert bound(z) = tanh(z + shift) * half - offset at each level value, pulled 0.1 inside the
  # open range (-half - offset, half - offset) of the bound so the extreme levels are reachable too.
  levels_np = np.asarray(levels, np.float64)
  half_l = (levels_np - 1) * (1 - 1e-3) / 2
  offset = np.where(levels_np % 2 == 1, 0.0, 0.5)
  bounded = np.clip(codes * (levels_np // 2), -half_l - offset + 0.1, half_l - offset - 0.1)
  z = np.arctanh((bounded + offset) / half_l) - np.tan(offset / half_l)
  out = q(jnp.asarray(z, jnp.float32))
  np.testing.assert_array_equal(np.asarray(out.indices), indices)
  assert float(out.metrics["usage"]) == 1.0
  np.testing.assert_allclose(float(out.metrics["perplexity"]), q.codebook_size, rtol=1e-4)


def test_bfloat16_inputs_give_float32_indices():
  q = FSQ((8, 5, 5, 5))
  z = jax.random.normal(jax.random.key(1), (8192, 4)).astype(jnp.bfloat16)
  out_bf16, out_f32 = q(z), q(z.astype(jnp.float32))
  np.testing.assert_array_equal(np.asarray(out_bf16.indices), np.asarray(out_f32.indices))
  assert out_bf16.quantized.dtype == jnp.float32
  # In bf16 arithmetic a code index above 256 is not representable exactly; ours keep all 1000 codes.
  assert int(out_bf16.indices.max()) > 900


def test_straight_through_gradient():
  q = FSQ((8, 5, 5, 5))
  z = jax.random.normal(jax.random.key(2), (64, 4))
  g = jax.random.normal(jax.random.key(3), (64, 4))
  grad = jax.grad(lambda z: jnp.sum(q(z).quantized * g))(z)
  # d quantized / dz = d bound(z) / dz / (L // 2) elementwise (rounding is the identity under STE).
  expected = jax.grad(lambda z: jnp.sum(q.bound(z) / q._half_width * g))(z)
  np.testing.assert_allclose(np.asarray(grad), np.asarray(expected), rtol=1e-6)
  assert np.all(np.abs(np.asarray(grad)) > 0)


def test_recommended_levels_sizes():
  for bits, levels in RECOMMENDED_LEVELS.items():
    assert abs(math.log2(math.prod(levels)) - bits) < 0.5, (bits, levels)


@pytest.mark.parametrize("levels, message", [((), "at least one"), ((8, 1), ">= 2"),
                                             ((2**16, 2**16), "int32")])
def test_invalid_levels(levels, message):
  with pytest.raises(ValueError, match=message):
    FSQ(levels)


def test_wrong_channel_count():
  with pytest.raises(ValueError, match="expects 4 channels"):
    FSQ((8, 5, 5, 5))(jnp.zeros((2, 3)))


def test_usage_and_perplexity_closed_form():
  counts = jnp.array([5, 5, 0, 10])
  usage, perplexity = usage_and_perplexity(counts)
  p = np.array([0.25, 0.25, 0.5])
  assert float(usage) == 0.75
  np.testing.assert_allclose(float(perplexity), np.exp(-(p * np.log(p)).sum()), rtol=1e-6)
  m = batch_metrics(jnp.array([[0, 1], [1, 3]]), 4)
  assert float(m["usage"]) == 0.75


@pytest.mark.parametrize("levels", [(8, 6, 5), (4, 2)])
def test_symmetric_variant(levels):
  q = FSQ(levels, symmetric=True)
  codes = q.indices_to_codes(jnp.arange(q.codebook_size))
  for i, l in enumerate(levels):
    values = np.unique(np.asarray(codes[:, i]))
    np.testing.assert_allclose(values, np.linspace(-1, 1, l), atol=1e-6)  # symmetric grid, ends at +-1
  np.testing.assert_array_equal(np.asarray(q.codes_to_indices(codes)), np.arange(q.codebook_size))
  z = jax.random.normal(jax.random.key(0), (50000, len(levels))) * 3
  out = q(z)
  assert float(out.metrics["usage"]) == 1.0  # every code reachable
  k = np.round((np.tanh(np.asarray(z, np.float64)) * (1 - 1e-3) + 1) * (np.asarray(levels) - 1) / 2)
  np.testing.assert_allclose(np.asarray(out.quantized), 2 * k / (np.asarray(levels) - 1) - 1, atol=1e-6)
  # Odd levels: (L - 1) / 2 is an integer, so both variants quantize every z identically.
  odd = jax.random.normal(jax.random.key(1), (1000, 2)) * 2
  np.testing.assert_array_equal(np.asarray(FSQ((5, 7), symmetric=True)(odd).quantized),
                                np.asarray(FSQ((5, 7))(odd).quantized))


def test_rotated_fsq_is_plain_fsq_in_a_fixed_orthonormal_basis():
  """rotation=True: R is orthogonal and fixed; the index is plain FSQ's index of z R, the output FSQ(z R) R^T; the
  indices and the codes convert into each other; the gradient is the straight-through one, rotated back (R R^T)."""
  from flax import nnx

  from vqgen.quantizers.fsq import FSQ, haar_orthogonal

  levels = (5, 5, 5, 5)
  rotated, plain = FSQ(levels, rotation=True, rngs=nnx.Rngs(3)), FSQ(levels)
  r = np.asarray(rotated.rotation[...], np.float64)
  np.testing.assert_allclose(r.T @ r, np.eye(4), atol=1e-5)
  z = jnp.asarray(np.random.default_rng(0).normal(size=(2, 50, 4)) * 2, jnp.float32)
  out, ref = rotated(z), plain(jnp.asarray(np.asarray(z) @ r, jnp.float32))
  np.testing.assert_array_equal(out.indices, ref.indices)
  np.testing.assert_allclose(out.quantized, np.asarray(ref.quantized) @ r.T, atol=1e-5)
  np.testing.assert_allclose(rotated.indices_to_codes(out.indices), out.quantized, atol=1e-5)
  np.testing.assert_array_equal(rotated.codes_to_indices(out.quantized), out.indices)
  # Inside the grid's cells the straight-through Jacobian of z R is R, rotated back by R^T: the identity scaled
  # by tanh's slope per rotated channel; at z = 0 (slope 1 - eps per half width) it is R diag(s) R^T.
  jac = jax.jacobian(lambda v: rotated(v[None]).quantized[0])(jnp.zeros((4,)))
  slope = np.asarray(jax.jacobian(lambda v: plain(v[None]).quantized[0])(jnp.zeros((4,))))
  np.testing.assert_allclose(jac, r @ slope @ r.T, atol=1e-5)
  # Haar: the first column's first coordinate is spread like a coordinate of a uniform unit vector (mean 0,
  # variance 1/d), over many draws.
  firsts = np.asarray(jax.vmap(lambda key: haar_orthogonal(key, 4)[0, 0])(jax.random.split(jax.random.key(0), 400)))
  assert abs(firsts.mean()) < 0.1 and abs(firsts.var() - 0.25) < 0.05


def test_rotation_needs_rngs():
  from vqgen.quantizers.fsq import FSQ

  with pytest.raises(ValueError, match="pass rngs"):
    FSQ((5, 5), rotation=True)


@pytest.mark.parametrize("symmetric", [False, True])
def test_noise_dropout_mixes_rounded_unrounded_and_noised_examples(symmetric):
  """TAAE's bottleneck with p = 0.5 over 4000 examples: per example, the rounded grid (1/4), the unrounded
  bounded latent (1/4) or that latent plus noise uniform over one level step (1/2), each within 4 sigma; noise
  mean 0 and variance 1/12 of a step squared; indices those of the rounded grid; gradient to z that of the bounded
  latent in every case; evaluation unchanged."""
  from flax import nnx  # pylint: disable=import-outside-toplevel
  levels = (8, 5, 5)
  fsq = FSQ(levels, symmetric=symmetric, noise_dropout=0.5, rngs=nnx.Rngs(0))
  plain = FSQ(levels, symmetric=symmetric)
  z = 2.0 * jax.random.normal(jax.random.key(1), (4000, 2, 3))
  out = fsq(z, train=True)
  grid, u = np.asarray(plain(z).quantized), np.asarray(plain.continuous(z))
  q = np.asarray(out.quantized)
  rounded = np.all(q == grid, axis=(1, 2))
  unrounded = np.all(q == u, axis=(1, 2)) & ~rounded
  noised = ~rounded & ~unrounded
  for frac, p in ((rounded.mean(), 0.25), (unrounded.mean(), 0.25), (noised.mean(), 0.5)):
    assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / 4000)
  step = np.asarray(2.0 / (np.array(levels) - 1) if symmetric else 1.0 / (np.array(levels) // 2), np.float32)
  noise = ((q - u) / step)[noised]
  assert np.abs(noise).max() <= 0.5 + 1e-5
  assert abs(noise.mean()) < 0.01 and abs(noise.var() - 1 / 12) < 0.005
  np.testing.assert_array_equal(out.indices, plain(z).indices)
  np.testing.assert_array_equal(fsq(z, train=False).quantized, grid)
  graphdef, state = nnx.split(fsq)
  state = state.to_pure_dict()  # the RNG count is merged into fresh Variables inside the trace
  jac = jax.grad(lambda z: jnp.sum(nnx.merge(graphdef, state)(z, train=True).quantized * 1.7))(z)
  np.testing.assert_allclose(jac, jax.grad(lambda z: jnp.sum(plain.continuous(z) * 1.7))(z), rtol=1e-5, atol=1e-7)


def test_noise_dropout_needs_rngs_and_a_probability():
  with pytest.raises(ValueError, match="pass rngs"):
    FSQ((5, 5), noise_dropout=0.5)
  from flax import nnx  # pylint: disable=import-outside-toplevel
  with pytest.raises(ValueError, match=r"noise_dropout must be in \[0, 1\)"):
    FSQ((5, 5), noise_dropout=1.0, rngs=nnx.Rngs(0))
