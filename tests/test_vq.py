"""VQ against brute force and closed forms: nearest codes, losses, rotation trick, EMA, dead codes, k-means."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vqgen.quantizers import VQ, kmeans, rotation_trick
from vqgen.quantizers.base import squared_distances


def make(**kwargs):
  kwargs.setdefault("dim", 8)
  kwargs.setdefault("codebook_size", 32)
  return VQ(**kwargs, rngs=nnx.Rngs(0))


def test_nearest_code_and_losses_brute_force():
  q = make()
  z = jax.random.normal(jax.random.key(1), (4, 5, 8))
  out = q(z, train=True)
  codebook = np.asarray(q.codebook[...])
  flat = np.asarray(z).reshape(-1, 8)
  brute = np.argmin(((flat[:, None, :] - codebook[None]) ** 2).sum(-1), -1)
  np.testing.assert_array_equal(np.asarray(out.indices).reshape(-1), brute)
  np.testing.assert_allclose(np.asarray(out.quantized).reshape(-1, 8), codebook[brute], atol=1e-6)
  mse = np.mean((flat - codebook[brute]) ** 2)
  np.testing.assert_allclose(float(out.losses["commitment"]), 0.25 * mse, rtol=1e-5)
  np.testing.assert_allclose(float(out.losses["codebook"]), mse, rtol=1e-5)
  assert out.indices.shape == (4, 5) and out.indices.dtype == jnp.int32


def test_loss_gradients_go_to_the_right_side():
  q = make()
  z = jax.random.normal(jax.random.key(2), (64, 8))
  graphdef, params, rest = nnx.split(q, nnx.Param, ...)

  def loss(params, z, name):
    return nnx.merge(graphdef, params, rest)(z, train=False).losses[name]

  # commitment moves only the encoder output; codebook moves only the codes.
  assert float(jnp.abs(jax.grad(loss)(params, z, "commitment")["codebook"][...]).max()) == 0.0
  assert float(jnp.abs(jax.grad(loss, argnums=1)(params, z, "codebook")).max()) == 0.0
  g = jax.grad(lambda z: jnp.sum(q(z).quantized * 3.0))(z)  # STE: identity Jacobian
  np.testing.assert_allclose(np.asarray(g), 3.0)


def test_rotation_trick_forward_and_vjp():
  z = jax.random.normal(jax.random.key(3), (16, 6))
  q = jax.random.normal(jax.random.key(4), (16, 6)) * 2.0
  out = rotation_trick(z, q)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(q))  # exactly q
  g = jax.random.normal(jax.random.key(5), (16, 6))
  _, vjp = jax.vjp(lambda z: rotation_trick(z, q), z)
  (grad,) = vjp(g)
  zn, qn = np.asarray(z, np.float64), np.asarray(q, np.float64)
  for i in range(16):
    u = zn[i] / np.linalg.norm(zn[i])
    qh = qn[i] / np.linalg.norm(qn[i])
    w = (u + qh) / np.linalg.norm(u + qh)
    rot = np.eye(6) - 2 * np.outer(w, w) + 2 * np.outer(qh, u)
    scale = np.linalg.norm(qn[i]) / np.linalg.norm(zn[i])
    # R maps z's direction onto q's (a rotation: orthogonal, det +1) ...
    np.testing.assert_allclose(rot @ u, qh, atol=1e-9)
    np.testing.assert_allclose(rot @ rot.T, np.eye(6), atol=1e-9)
    # ... and the VJP is scale * R^T g: finite differences of the linear map z' -> scale * R z'.
    eps = 1e-4
    fd = np.array([(scale * rot @ (zn[i] + eps * e) - scale * rot @ (zn[i] - eps * e)) @ g[i] / (2 * eps)
                   for e in np.eye(6)])
    np.testing.assert_allclose(np.asarray(grad[i]), fd, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(grad[i]), scale * rot.T @ np.asarray(g[i]), rtol=1e-4, atol=1e-5)


def test_rotation_trick_falls_back_to_ste_at_zero():
  z = jnp.zeros((2, 4))
  q = jnp.ones((2, 4))
  out, vjp = jax.vjp(lambda z: rotation_trick(z, q), z)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(q))
  np.testing.assert_allclose(np.asarray(vjp(jnp.full((2, 4), 2.0))[0]), 2.0)


def test_ema_update_closed_form():
  q = make(dim=2, codebook_size=3, learning="ema", decay=0.9, eps=1e-5)
  q.codebook[...] = jnp.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
  q.ema_sum[...] = q.codebook[...] * 1.0
  q.ema_count[...] = jnp.ones((3,))
  x = jnp.array([[1.0, 0.0], [0.0, 1.0], [9.0, 1.0], [9.0, -1.0]])  # codes 0, 0, 1, 1; code 2 unused
  out = q(x, train=True)
  assert out.indices.tolist() == [0, 0, 1, 1] and "codebook" not in out.losses
  count = 0.9 * np.ones(3) + 0.1 * np.array([2, 2, 0])
  total = 0.9 * np.array([[0, 0], [10, 0], [0, 10]]) + 0.1 * np.array([[1, 1], [18, 0], [0, 0]])
  n = count.sum()
  smoothed = (count + 1e-5) / (n + 3e-5) * n
  np.testing.assert_allclose(np.asarray(q.ema_count[...]), count, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(q.ema_sum[...]), total, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(q.codebook[...]), total / smoothed[:, None], rtol=1e-5)
  # Eval mode changes nothing.
  before = np.asarray(q.codebook[...])
  q(x, train=False)
  np.testing.assert_array_equal(np.asarray(q.codebook[...]), before)


def test_dead_code_restart_moves_only_dead_codes_deterministically():
  def run():
    q = VQ(dim=2, codebook_size=4, learning="ema", decay=0.5, dead_code_threshold=0.5, rngs=nnx.Rngs(7))
    q.codebook[...] = jnp.array([[0.0, 0.0], [5.0, 5.0], [100.0, 100.0], [-100.0, 100.0]])
    q.ema_sum[...] = q.codebook[...] * 1.0
    q.ema_count[...] = jnp.ones((4,))
    x = jnp.concatenate([jax.random.normal(jax.random.key(0), (8, 2)) * 0.1,
                         5.0 + jax.random.normal(jax.random.key(1), (8, 2)) * 0.1])
    q(x, train=True)
    return q, x

  (a, x), (b, _) = run(), run()
  np.testing.assert_array_equal(np.asarray(a.codebook[...]), np.asarray(b.codebook[...]))
  codebook = np.asarray(a.codebook[...])
  # Codes 2 and 3 got no tokens: count 0.5 < 0.5 * 16 / 4; they now sit on batch vectors with reset stats.
  batch = np.asarray(x)
  for k in (2, 3):
    assert np.min(np.abs(batch - codebook[k]).sum(-1)) < 1e-6
    np.testing.assert_allclose(float(a.ema_count[...][k]), 4.0)
  # Live codes followed the EMA closed form (not restarted).
  assert np.linalg.norm(codebook[0]) < 1.0 and np.linalg.norm(codebook[1] - 5.0) < 2.0


def test_kmeans_init_reduces_first_batch_error():
  x = jnp.concatenate([c + 0.05 * jax.random.normal(jax.random.key(i), (64, 4))
                       for i, c in enumerate(jnp.eye(4) * 5.0)])
  plain = make(dim=4, codebook_size=4)
  init = make(dim=4, codebook_size=4, kmeans_init=True)
  err = lambda q: float(q(x, train=True).losses["commitment"])
  e_plain, e_init = err(plain), err(init)
  assert e_init < 0.05 * e_plain
  assert bool(init.initialized[...])
  # Second call does not re-initialise.
  before = np.asarray(init.codebook[...])
  init(x + 1.0, train=True)
  np.testing.assert_array_equal(np.asarray(init.codebook[...]), before)
  centroids, counts = kmeans(x, 4, 10, jax.random.key(0))
  assert float(counts.sum()) == 256.0


def test_cosine_codes_are_unit_and_pick_max_cosine():
  q = make(cosine=True)
  z = jax.random.normal(jax.random.key(6), (50, 8))
  out = q(z)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(q.codes()), axis=-1), 1.0, rtol=1e-5)
  zn = np.asarray(z) / np.linalg.norm(np.asarray(z), axis=-1, keepdims=True)
  np.testing.assert_array_equal(np.asarray(out.indices), np.argmax(zn @ np.asarray(q.codes()).T, -1))


@pytest.mark.parametrize("kwargs", [{}, {"codebook_dim": 3}, {"cosine": True}, {"simvq": True}])
def test_indices_codes_round_trip(kwargs):
  q = make(**kwargs)
  indices = jnp.arange(32)
  codes = q.indices_to_codes(indices)
  assert codes.shape == (32, 8)
  np.testing.assert_array_equal(np.asarray(q.codes_to_indices(codes)), np.arange(32))
  out = q(jax.random.normal(jax.random.key(0), (3, 7, 8)))
  np.testing.assert_allclose(np.asarray(q.indices_to_codes(out.indices)), np.asarray(out.quantized), atol=1e-5)


def test_simvq_initial_codes_have_the_plain_vq_scale():
  # C ~ N(0, 1/d) and a LeCun-normal W give codes C W with E|c|^2 = 1, like plain VQ's codebook; a unit-variance C
  # made them sqrt(d) times longer than the latents and collapsed usage (regression).
  for kwargs in ({}, {"simvq": True}):
    q = make(dim=64, codebook_size=4096, **kwargs)
    mean_sq = float(jnp.mean(jnp.sum(jnp.square(q.codes()), -1)))
    assert 0.8 < mean_sq < 1.25, (kwargs, mean_sq)


def test_simvq_and_ibq_give_every_code_a_gradient():
  z = jax.random.normal(jax.random.key(8), (16, 8))
  for kwargs, leaf in (({"simvq": True}, ("codebook_map", "kernel")), ({"gradient": "ibq"}, ("codebook",))):
    q = make(**kwargs)
    graphdef, params, rest = nnx.split(q, nnx.Param, ...)
    if kwargs.get("simvq"):
      assert "codebook" not in params and "frozen_codebook" in rest  # C frozen, W learned
    if kwargs.get("simvq"):  # W learns from the codebook loss, and moving W moves every code C W
      loss = lambda p: nnx.merge(graphdef, p, rest)(z, train=True).losses["codebook"]
    else:  # IBQ: the task gradient through the straight-through categorical reaches every code
      loss = lambda p: jnp.sum(nnx.merge(graphdef, p, rest)(z, train=True).quantized ** 2)
    grad = jax.grad(loss)(params)
    for key in leaf:
      grad = grad[key]
    grad = np.asarray(grad[...])
    if kwargs.get("gradient") == "ibq":
      assert np.all(np.abs(grad).sum(-1) > 0)  # all 32 codes, though 16 tokens pick at most 16
    else:
      assert np.abs(grad).sum() > 0


def test_gumbel_is_hard_in_training_and_argmin_in_eval():
  q = make(gradient="gumbel", gumbel_temperature=0.5)
  z = jax.random.normal(jax.random.key(9), (40, 8))
  train = q(z, train=True)
  codes = np.asarray(q.codes())
  quantized = np.asarray(train.quantized)
  assert all(np.min(np.abs(codes - v).sum(-1)) < 1e-5 for v in quantized)  # each output is a code
  brute = np.argmin(np.asarray(squared_distances(z, q.codes())), -1)
  np.testing.assert_array_equal(np.asarray(q(z, train=False).indices), brute)


@pytest.mark.parametrize("kwargs, message", [
    ({"gradient": "magic"}, "gradient must be one of"),
    ({"learning": "ema", "simvq": True}, "learning='gradient'"),
    ({"dead_code_threshold": 0.1}, "needs learning='ema'"),
    ({"learning": "ema", "dead_code_threshold": 1.5}, "never stop"),
    ({"codebook_size": 1}, "codebook_size >= 2"),
    ({"kmeans_init": True, "simvq": True}, "basis is frozen"),
])
def test_impossible_settings_fail_at_construction(kwargs, message):
  with pytest.raises(ValueError, match=message):
    make(**kwargs)


def test_entropy_regulariser_matches_magvit_formula():
  q = make(entropy_weight=1.0, entropy_temperature=0.5)
  z = jax.random.normal(jax.random.key(10), (128, 8))
  out = q(z, train=True)
  codebook = np.asarray(q.codebook[...], np.float64)
  zn = np.asarray(z, np.float64)
  affinity = -((zn[:, None] - codebook[None]) ** 2).sum(-1) / 0.5  # -||z - c||^2 / T
  p = np.exp(affinity - affinity.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  sample = -(p * np.log(p + 1e-30)).sum(-1).mean()
  avg = p.mean(0)
  expected = sample + (avg * np.log(avg + 1e-30)).sum()  # MAGVIT entropy_loss: sample - avg entropy
  np.testing.assert_allclose(float(out.losses["entropy"]), expected, rtol=1e-4, atol=1e-5)
  assert "entropy" not in q(z, train=False).losses
