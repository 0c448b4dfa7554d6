"""Residual and Grouped quantizers: error falls with depth, dropout keeps indices valid, round trips."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vqgen.quantizers import FSQ, VQ, Grouped, Residual, build_quantizer


@pytest.mark.parametrize("name, kwargs", [
    ("fsq", {"levels": (5, 5, 5)}),
    ("vq", {"dim": 3, "codebook_size": 64, "kmeans_init": True}),
])
def test_residual_error_decreases_with_depth(name, kwargs):
  z = jax.random.normal(jax.random.key(0), (512, 3)) * 0.5
  errors = []
  for depth in (1, 2, 4):
    q = build_quantizer("residual", quantizer=name, num_quantizers=depth, rngs=nnx.Rngs(0), **kwargs)
    out = q(z, train=name == "vq")  # VQ: k-means init on the first (training) call
    if name == "vq":
      out = q(z, train=False)
    assert out.indices.shape == (512, depth) and out.indices.dtype == jnp.int32
    errors.append(float(jnp.mean(jnp.square(out.quantized - z))))
    np.testing.assert_allclose(np.asarray(q.indices_to_codes(out.indices)), np.asarray(out.quantized), atol=1e-5)
  assert errors[0] > errors[1] > errors[2], errors


def test_residual_fsq_scales_and_round_trip():
  q = Residual(lambda: FSQ((5, 5)), 3)
  np.testing.assert_allclose(np.asarray(q.scale(2)), [1 / 16, 1 / 16])
  indices = jax.random.randint(jax.random.key(1), (100, 3), 0, 25)
  codes = q.indices_to_codes(indices)
  np.testing.assert_allclose(np.asarray(q.indices_to_codes(q.codes_to_indices(codes))), np.asarray(codes),
                             atol=1e-6)


def test_residual_commitment_on_cumulative_sums():
  rngs = nnx.Rngs(0)
  q = Residual(lambda: VQ(dim=4, codebook_size=16, rngs=rngs), 2)
  z = jax.random.normal(jax.random.key(2), (64, 4))
  out = q(z)
  c1 = q.levels[0].indices_to_codes(out.indices[:, 0])
  c2 = c1 + q.levels[1].indices_to_codes(out.indices[:, 1])
  expected = 0.25 * (jnp.mean(jnp.square(z - c1)) + jnp.mean(jnp.square(z - c2)))
  np.testing.assert_allclose(float(out.losses["commitment"]), float(expected), rtol=1e-5)
  assert "codebook" in out.losses


def test_quantizer_dropout_keeps_shapes_and_valid_indices():
  q = Residual(lambda: FSQ((8, 5, 5, 5)), 4, quantizer_dropout=0.9, rngs=nnx.Rngs(3))
  z = jax.random.normal(jax.random.key(4), (256, 4))
  full = q(z, train=False)
  dropped = q(z, train=True)
  assert dropped.quantized.shape == z.shape and dropped.indices.shape == (256, 4)
  assert int(dropped.indices.min()) >= 0 and int(dropped.indices.max()) < 1000
  np.testing.assert_array_equal(np.asarray(dropped.indices), np.asarray(full.indices))
  # Each example's output is the cumulative sum up to some depth n in 1..4.
  partial = [sum(q.levels[d].indices_to_codes(full.indices[:, d]) * q.scale(d) for d in range(n))
             for n in range(1, 5)]
  match = np.stack([np.all(np.isclose(np.asarray(dropped.quantized), np.asarray(p), atol=1e-6), -1)
                    for p in partial], -1)
  assert match.any(-1).all()
  assert match[:, :3].any(-1).mean() > 0.5  # most examples were truncated at p = 0.9


def test_shared_codebook_is_one_module():
  rngs = nnx.Rngs(0)
  q = Residual(lambda: VQ(dim=4, codebook_size=8, rngs=rngs), 3, shared_codebook=True)
  params = nnx.state(q, nnx.Param)
  assert sum(x.size for x in jax.tree.leaves(params)) == 8 * 4


def test_grouped_splits_channels():
  q = Grouped(lambda: FSQ((8, 6, 5)), 2)
  assert q.dim == 6
  z = jax.random.normal(jax.random.key(5), (10, 6))
  out = q(z)
  assert out.indices.shape == (10, 2)
  single = FSQ((8, 6, 5))
  np.testing.assert_array_equal(np.asarray(out.indices[:, 1]), np.asarray(single(z[:, 3:]).indices))
  np.testing.assert_array_equal(np.asarray(q.codes_to_indices(q.indices_to_codes(out.indices))),
                                np.asarray(out.indices))
  v = build_quantizer("grouped", quantizer="vq", groups=4, dim=4, codebook_size=32, rngs=nnx.Rngs(0))
  assert v.dim == 16 and v(jnp.ones((3, 16))).indices.shape == (3, 4)


def test_registry_builds_composites_like_their_constructors():
  """build_quantizer passes the composite's own arguments to it and the rest to every level, drawing the same
  random numbers as the constructor called by hand."""
  by_name = build_quantizer("residual", quantizer="vq", num_quantizers=2, shared_codebook=False, dim=4,
                            codebook_size=16, commitment_weight=0.5, rngs=nnx.Rngs(7))
  rngs = nnx.Rngs(7)
  by_hand = Residual(lambda: VQ(dim=4, codebook_size=16, commitment_weight=0.5, rngs=rngs), 2, rngs=rngs)
  assert by_name.levels[1].commitment_weight == 0.5
  jax.tree.map(np.testing.assert_array_equal, nnx.state(by_name, nnx.Param).to_pure_dict(),
               nnx.state(by_hand, nnx.Param).to_pure_dict())


@pytest.mark.parametrize("build, message", [
    (lambda: Grouped(lambda: FSQ((8, 5)), 0), "groups >= 1"),
    (lambda: build_quantizer("grouped", groups=2, levels=(8, 5)), "quantizer=<the family"),
    (lambda: build_quantizer("residual", quantizer="fsq", num_quantizers=2, levels=(5,), codebook_size=8),
     "unexpected keyword argument 'codebook_size'"),
    (lambda: Residual(lambda: FSQ((5,)), 2, shared_codebook=True), "no learned codebook"),
    (lambda: Residual(lambda: FSQ((5,)), 2, quantizer_dropout=0.5), "pass rngs"),
])
def test_impossible_composites(build, message):
  with pytest.raises((ValueError, TypeError), match=message):
    build()


def test_grouped_disentanglement_is_the_mean_squared_cosine_between_groups():
  """FQGAN's regulariser over three VQ sub-codebooks: w * the mean over the 3 pairs of groups of mean_n cos^2 of
  their codes at position n, pair by pair in float64; in training only; 0 for codes in orthogonal subspaces."""
  from flax import nnx

  from vqgen.quantizers import build_quantizer
  from vqgen.quantizers.grouped import disentanglement_loss

  q = build_quantizer("grouped", quantizer="vq", groups=3, disentanglement_weight=0.1, dim=4, codebook_size=8,
                      rngs=nnx.Rngs(0))
  z = jnp.asarray(np.random.default_rng(0).normal(size=(2, 10, 12)), jnp.float32)
  out = q(z, train=True)
  parts = np.split(np.asarray(out.quantized, np.float64).reshape(-1, 12), 3, -1)
  cos2 = lambda a, b: np.mean((np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))) ** 2)
  expected = (cos2(parts[0], parts[1]) + cos2(parts[0], parts[2]) + cos2(parts[1], parts[2])) / 3
  np.testing.assert_allclose(out.losses["disentanglement"], 0.1 * expected, rtol=1e-5)
  assert "disentanglement" not in q(z, train=False).losses
  e = np.eye(4, dtype=np.float32)
  assert float(disentanglement_loss([jnp.asarray(e[:2]), jnp.asarray(e[2:])])) == 0.0
  with pytest.raises(ValueError, match="groups >= 2"):
    build_quantizer("grouped", quantizer="vq", groups=1, disentanglement_weight=0.1, dim=4, codebook_size=8,
                    rngs=nnx.Rngs(0))
