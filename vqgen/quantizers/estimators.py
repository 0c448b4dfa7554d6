"""Gradient estimators of a VQ's lookup: each returns a value equal to the chosen code q in the forward pass and
routes the gradient as its paper says.

  ste       straight-through (Bengio et al. 2013; VQ-VAE): z + sg(q - z), identity Jacobian to z
  rotation  the rotation trick (Fifty et al. 2024, arXiv 2410.06424, eq. 4)
  gumbel    Gumbel-softmax (Jang et al. 2017) over logits, hard one-hot forward, soft gradient
  ibq       Index Backpropagation Quantization (Shi et al. 2024): straight-through over the categorical
            softmax(z . c), so every code receives gradient
"""

import jax
import jax.numpy as jnp

from vqgen.quantizers.base import l2_normalize

GRADIENTS = ("ste", "rotation", "gumbel", "ibq")


def straight_through(z: jax.Array, q: jax.Array) -> jax.Array:
  """z + sg(q - z): forward value q, gradient to z unchanged."""
  return z + jax.lax.stop_gradient(q - z)


def rotation_trick(z: jax.Array, q: jax.Array, eps: float = 1e-6) -> jax.Array:
  """Rotation-trick estimator (arXiv 2410.06424, eq. 4): forward value q, gradient sg(|q|/|z|) R^T g.

  With u = z/|z|, qh = q/|q|, w = sg(normalize(u + qh)):  R z = z - 2 (z.w) w + 2 (z.sg(u)) sg(qh).
  R is a rotation taking u onto qh, treated as a constant; vectors with |z| or |q| below eps fall back to STE.
  """
  z_norm = jnp.linalg.norm(z, axis=-1, keepdims=True)
  q_norm = jnp.linalg.norm(q, axis=-1, keepdims=True)
  u = jax.lax.stop_gradient(z / jnp.maximum(z_norm, eps))
  qh = jax.lax.stop_gradient(q / jnp.maximum(q_norm, eps))
  w = jax.lax.stop_gradient(l2_normalize(u + qh))
  rz = z - 2.0 * jnp.sum(z * w, -1, keepdims=True) * w + 2.0 * jnp.sum(z * u, -1, keepdims=True) * qh
  rotated = jax.lax.stop_gradient(q_norm / jnp.maximum(z_norm, eps)) * rz
  ste = z + jax.lax.stop_gradient(q - z)
  degenerate = (z_norm < eps) | (q_norm < eps)
  estimator = jnp.where(degenerate, ste, rotated)
  # Forward value is q bit for bit: (e - sg(e)) is exactly zero, and the gradient flows through e.
  return estimator - jax.lax.stop_gradient(estimator) + jax.lax.stop_gradient(q)


def index_backpropagation(z: jax.Array, codes: jax.Array, indices: jax.Array) -> jax.Array:
  """IBQ: (onehot(i) - sg(p) + p) C with p = softmax(z C^T): forward value c_i, gradient through p to z and C."""
  probs = jax.nn.softmax(z @ codes.T, -1)
  onehot = jax.nn.one_hot(indices, codes.shape[0], dtype=probs.dtype)
  return (onehot - jax.lax.stop_gradient(probs) + probs) @ codes


def gumbel_straight_through(logits: jax.Array, codes: jax.Array, key: jax.Array) -> jax.Array:
  """Hard Gumbel-softmax: the code of argmax(softmax(logits + g)) forward, the soft mixture's gradient."""
  soft = jax.nn.softmax(logits + jax.random.gumbel(key, logits.shape), -1)
  hard = jax.nn.one_hot(jnp.argmax(soft, -1), codes.shape[0], dtype=soft.dtype)
  return (hard - jax.lax.stop_gradient(soft) + soft) @ codes
