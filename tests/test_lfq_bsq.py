"""LFQ and BSQ: entropy terms against brute force over all codes and MAGVIT's formula; bits; spheres; memory."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vqgen.quantizers import BSQ, LFQ
from vqgen.quantizers.entropy import bits_to_codes, exact_entropies, grouped_entropies


def brute_entropies(z, scale):
  """Per-sample and codebook entropy with the full [N, 2^d] probability table, float64."""
  z = np.asarray(z, np.float64)
  codes = np.array(list(itertools.product([-1.0, 1.0], repeat=z.shape[1])))
  logits = scale * z @ codes.T
  logits -= logits.max(-1, keepdims=True)
  p = np.exp(logits)
  p /= p.sum(-1, keepdims=True)
  h = lambda p: -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), -1)
  return h(p).mean(), h(p.mean(0))


def magvit_entropy_loss(affinity, temperature=1.0):
  """google-research/magvit videogvt/train_lib/losses.py `entropy_loss` (loss_type='softmax'), in jnp."""
  flat = affinity.reshape(-1, affinity.shape[-1]) / temperature
  probs = jax.nn.softmax(flat, axis=-1)
  log_probs = jax.nn.log_softmax(flat + 1e-5, axis=-1)
  avg_probs = jnp.mean(probs, axis=0)
  avg_entropy = -jnp.sum(avg_probs * jnp.log(avg_probs + 1e-5))
  sample_entropy = -jnp.mean(jnp.sum(probs * log_probs, axis=-1))
  return sample_entropy - avg_entropy


@pytest.mark.parametrize("bits, scale", [(4, 1.0), (8, 0.5), (10, 0.2)])
def test_exact_chunked_entropy_equals_brute_force(bits, scale):
  z = jax.random.normal(jax.random.key(bits), (96, bits))
  sample, codebook = exact_entropies(z, scale, chunk=16)
  ref_sample, ref_codebook = brute_entropies(z, scale)
  np.testing.assert_allclose(float(sample), ref_sample, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(float(codebook), ref_codebook, rtol=1e-4, atol=1e-5)
  # Gradients of the chunked, rematerialised computation equal those of the full softmax table.
  codes = bits_to_codes(jnp.arange(2**bits), bits)

  def full(z):
    p = jax.nn.softmax(scale * z @ codes.T, -1)
    h = lambda p: -jnp.sum(p * jnp.log(p + 1e-30), -1)
    return jnp.mean(h(p)) - h(jnp.mean(p, 0))

  chunked = lambda z: (lambda s, c: s - c)(*exact_entropies(z, scale, chunk=16))
  np.testing.assert_allclose(np.asarray(jax.grad(chunked)(z)), np.asarray(jax.grad(full)(z)), rtol=2e-3,
                             atol=2e-5)


@pytest.mark.parametrize("group_size", [1, 2, 4])
def test_grouped_per_sample_term_is_exact_and_codebook_term_an_upper_bound(group_size):
  z = jax.random.normal(jax.random.key(0), (128, 8))
  sample, codebook = grouped_entropies(z, 0.7, group_size)
  exact_sample, exact_codebook = exact_entropies(z, 0.7)
  np.testing.assert_allclose(float(sample), float(exact_sample), rtol=1e-4)
  assert float(codebook) >= float(exact_codebook) - 1e-4  # subadditivity of entropy
  if group_size == 1:  # per bit: p(bit = +1) = sigmoid(2 s z)
    p = jax.nn.sigmoid(2 * 0.7 * z)
    analytic = -(p * jnp.log(p) + (1 - p) * jnp.log(1 - p)).sum(-1).mean()
    np.testing.assert_allclose(float(sample), float(analytic), rtol=1e-4)


def test_lfq_entropy_reproduces_magvit_reference():
  q = LFQ(256, entropy_weight=1.0, commitment_weight=0.0, inv_temperature=0.3, chunk=64)
  z = jax.random.normal(jax.random.key(2), (4, 16, 8))
  out = q(z, train=True)
  codes = bits_to_codes(jnp.arange(256), 8)
  flat = z.reshape(-1, 8)
  affinity = -0.3 * jnp.sum(jnp.square(flat[:, None, :] - codes[None]), -1)  # -tau ||z - c||^2
  np.testing.assert_allclose(float(out.losses["entropy"]), float(magvit_entropy_loss(affinity)), atol=3e-3)
  assert "entropy" not in q(z, train=False).losses  # a training-time regulariser


@pytest.mark.parametrize("bit_order", ["msb", "lsb"])
def test_lfq_bits_indices_and_round_trip(bit_order):
  q = LFQ(16, bit_order=bit_order)
  z = jnp.array([[0.5, -1.0, 0.0, 2.0]])  # signs + - (0 -> -) +
  out = q(z)
  expected = 0b1001 if bit_order == "msb" else 0b1001  # palindrome: both orders agree here
  assert int(out.indices[0]) == expected
  z2 = jnp.array([[1.0, 1.0, -1.0, -1.0]])
  assert int(q(z2).indices[0]) == (0b1100 if bit_order == "msb" else 0b0011)
  np.testing.assert_array_equal(np.asarray(out.quantized), [[1.0, -1.0, -1.0, 1.0]])
  all_codes = q.indices_to_codes(jnp.arange(16))
  np.testing.assert_array_equal(np.asarray(q.codes_to_indices(all_codes)), np.arange(16))
  np.testing.assert_array_equal(np.asarray(q(all_codes).indices), np.arange(16))  # every code reachable
  g = jax.grad(lambda z: jnp.sum(q(z).quantized * 2.0))(z)
  np.testing.assert_allclose(np.asarray(g), 2.0)


def test_lfq_projection_and_errors():
  q = LFQ(64, dim=16, rngs=nnx.Rngs(0))
  out = q(jnp.ones((2, 3, 16)), train=True)
  assert out.quantized.shape == (2, 3, 16) and out.indices.shape == (2, 3)
  for kwargs, message in (({"codebook_size": 100}, "power of two"), ({"codebook_size": 64, "group_size": 4},
                                                                     "must divide"),
                          ({"codebook_size": 64, "dim": 8}, "pass rngs"),
                          ({"codebook_size": 64, "bit_order": "big"}, "bit_order")):
    with pytest.raises(ValueError, match=message):
      LFQ(**kwargs)


def test_bsq_codes_on_unit_sphere_and_entropy():
  q = BSQ(dim=12, num_bits=6, group_size=2, inv_temperature=2.0, rngs=nnx.Rngs(0))
  z = jax.random.normal(jax.random.key(3), (200, 12))
  out = q(z, train=True)
  codes = q.latent(z)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(codes), axis=-1), 1.0, rtol=1e-5)
  hard = jnp.where(codes > 0, 1.0, -1.0) / np.sqrt(6)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(hard), axis=-1), 1.0, rtol=1e-6)
  # Per-bit analytic per-sample entropy equals the exact one at BSQ's scale 2 tau / sqrt(L).
  scale = 2 * 2.0 / np.sqrt(6)
  p = jax.nn.sigmoid(2 * scale * codes)
  analytic = -(p * jnp.log(p) + (1 - p) * jnp.log(1 - p)).sum(-1).mean()
  np.testing.assert_allclose(float(out.metrics["sample_entropy"]), float(analytic), rtol=1e-4)
  np.testing.assert_allclose(float(exact_entropies(codes, scale)[0]), float(analytic), rtol=1e-4)


def test_bsq_entropy_weight_ramp():
  q = BSQ(dim=4, num_bits=4, group_size=2, ramp_start=3.0, ramp_steps=4, rngs=nnx.Rngs(0))
  factors = [float(q.entropy_factor()) for _ in range(6)]
  np.testing.assert_allclose(factors, [3.0, 2.5, 2.0, 1.5, 1.0, 1.0])


def test_lfq_2_18_codes_memory_is_bounded():
  """Exact entropy over 2^18 codes on 2048 tokens compiles to well under 2 GB of temporaries (forward+grad)."""
  q = LFQ(2**18, chunk=4096)
  z = jax.ShapeDtypeStruct((2048, 18), jnp.float32)
  compiled = jax.jit(jax.grad(lambda z: q(z, train=True).losses["entropy"])).lower(z).compile()
  temp = compiled.memory_analysis().temp_size_in_bytes
  assert temp < 2**31, temp
  # The dense [N, K] float32 probability table alone would be 2048 * 2^18 * 4 B = 2 GiB.
  assert temp < 0.25 * 2048 * 2**18 * 4
