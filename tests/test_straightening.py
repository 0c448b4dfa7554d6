"""Straightening the straight-through estimator (vqgen/quantizers/straightening.py): the affine
reparameterisation and its inverse, its gradients against their closed form, the synchronised commitment's
gradient split, and the alternating codebook step against SGD with momentum written out."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vqgen.quantizers.straightening import affine_codes, inverse_affine_codes
from vqgen.quantizers.vq import VQ


def test_affine_codes_per_group_and_their_inverse():
  rng = np.random.default_rng(0)
  w, s, b = rng.normal(size=(6, 3)), rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
  got = np.asarray(affine_codes(jnp.asarray(w), jnp.asarray(s), jnp.asarray(b), 10.0))
  group = np.repeat([0, 1], 3)  # codes 0-2 in group 0, 3-5 in group 1
  np.testing.assert_allclose(got, (1 + 10 * s[group]) * w + 10 * b[group], rtol=1e-5)
  back = inverse_affine_codes(jnp.asarray(got), jnp.asarray(s), jnp.asarray(b), 10.0)
  np.testing.assert_allclose(back, w, rtol=1e-4, atol=1e-5)


def test_affine_parameters_get_the_chain_rule_gradient():
  """At s = b = 0 the codes are w, so dL/ds_g = r sum_{k in g} dL/dc_k * w_k and dL/db_g = r sum_{k in g} dL/dc_k,
  with dL/dc_k the gradient the plain codebook gets."""
  z = jax.random.normal(jax.random.key(0), (64, 4))
  vq = VQ(4, 8, affine_lr=10.0, affine_groups=2, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(vq, nnx.Param, ...)

  def loss(params):
    out = nnx.merge(graphdef, params, rest)(z, train=True)
    return jnp.sum(jnp.sin(out.quantized)) + sum(out.losses.values())

  grads = jax.grad(loss)(params)
  gw, w = np.asarray(grads["codebook"][...]), np.asarray(vq.codebook[...])
  expect_s = 10 * (gw * w).reshape(2, 4, 4).sum(1)
  expect_b = 10 * gw.reshape(2, 4, 4).sum(1)
  np.testing.assert_allclose(grads["affine_scale"][...], expect_s, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(grads["affine_bias"][...], expect_b, rtol=1e-4, atol=1e-6)


def test_synchronised_commitment_sends_nu_times_the_decoder_gradient_to_the_codes():
  """Output value q; the gradient a of the downstream loss reaches z whole (straight-through) and code k as
  nu * sum_{n: i_n = k} a_n (no commitment or codebook loss here)."""
  z = jax.random.normal(jax.random.key(0), (50, 3))
  a = jax.random.normal(jax.random.key(1), (50, 3))
  vq = VQ(3, 5, sync_nu=0.2, commitment_weight=0.0, codebook_weight=0.0, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(vq, nnx.Param, ...)

  def loss(z, params):
    out = nnx.merge(graphdef, params, rest)(z, train=True)
    return jnp.sum(out.quantized * a), out

  (_, out), (gz, gp) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(z, params)
  np.testing.assert_allclose(out.quantized, vq.indices_to_codes(out.indices), rtol=1e-6)
  np.testing.assert_allclose(gz, a, rtol=1e-6)
  expected = 0.2 * jax.ops.segment_sum(a, out.indices, num_segments=5)
  np.testing.assert_allclose(gp["codebook"][...], expected, rtol=1e-5, atol=1e-6)


def test_alternating_step_is_sgd_with_momentum_on_the_codebook_loss():
  """Two training calls: each moves the codebook by torch's SGD(lr, momentum) on mean ||c_i - z||^2 (gradient
  2 (n_k c_k - sum_{n: k} z_n) / (N d)) before quantizing, and the output is the moved code."""
  lr, beta = 3.0, 0.9
  vq = VQ(2, 4, learning="alternating", alternating_lr=lr, alternating_momentum=beta, rngs=nnx.Rngs(0))
  w = np.asarray(vq.codebook[...], np.float64)
  m = np.zeros_like(w)
  for step in range(2):
    z = np.asarray(jax.random.normal(jax.random.key(step), (40, 2)), np.float64)
    idx = ((z[:, None] - w[None]) ** 2).sum(-1).argmin(1)
    grad = np.zeros_like(w)
    for k in range(4):
      grad[k] = 2 * ((idx == k).sum() * w[k] - z[idx == k].sum(0)) / z.size
    m = beta * m + grad
    w = w - lr * m
    out = vq(jnp.asarray(z, jnp.float32), train=True)
    np.testing.assert_array_equal(out.indices, idx)
    np.testing.assert_allclose(vq.codebook[...], w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.quantized, w[idx], rtol=1e-5, atol=1e-6)
  assert "codebook" not in out.losses  # the codebook is not the optimizer's


@pytest.mark.parametrize("kwargs, message", [
    ({"affine_lr": 10.0, "affine_groups": 3}, "dividing codebook_size"),
    ({"affine_lr": 10.0, "learning": "ema"}, "through gradients"),
    ({"sync_nu": 0.2, "simvq": True}, "through gradients"),
    ({"learning": "alternating", "gradient": "ibq"}, "outside the optimizer"),
    ({"learning": "alternating", "alternating_momentum": 1.0}, "alternating_momentum"),
])
def test_impossible_straightening_settings_fail_at_construction(kwargs, message):
  with pytest.raises(ValueError, match=message):
    VQ(2, 4, rngs=nnx.Rngs(0), **kwargs)
