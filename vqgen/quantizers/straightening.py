"""Straightening out the straight-through estimator (Huh, Cheung, Agrawal & Isola 2023, ICML; arXiv 2305.08842).

The STE's gradient is taken at z but applied at q; the paper's three remedies close the gap between the codebook
and the encoder's moving distribution:

  affine reparameterisation (Sec. 4.1)  the codes are  c_k = (1 + r s_g) * w_k + r b_g  with s_g, b_g in R^d
        learned, zero at init, shared by the codes of group g (the K codes split into G consecutive groups) and
        r the affine learning-rate scale (the source's affine_lr, 10 in its example), so one step moves every code
        of a group together towards the encoder's statistics.
  synchronised commitment (Sec. 4.2)  the estimator's output gains nu (q - sg(q)): the forward value is still q,
        and the codebook receives nu times the gradient the decoder sends to z (the source's sync_nu, 0.2).
  alternating optimisation (Sec. 4.3)  in each training step the codebook first takes its own step on
        mean ||c(i_n) - sg(z_n)||^2 (SGD with momentum, the source's lr 50 and momentum 0.9), then the batch is
        quantized with the moved codes (same indices) and the encoder's step follows: the encoder always meets a
        codebook fitted to its current outputs. The gradient is 2 (n_k c_k - sum_{n: k} z_n) / (N d), so a step
        closes lr 2 n_k / (N d) of a code's gap to its cluster mean (n_k / N its share of the batch): the source's
        lr 50 suits its K d; set alternating_lr for yours.
"""

import jax
import jax.numpy as jnp


def affine_codes(w: jax.Array, scale: jax.Array, bias: jax.Array, lr_scale: float) -> jax.Array:
  """(1 + r s_g) * w + r b_g for w [K, d] and s, b [G, d]: code k belongs to group k // (K / G)."""
  k, d = w.shape
  groups = scale.shape[0]
  grouped = w.reshape(groups, k // groups, d)
  return ((1.0 + lr_scale * scale)[:, None, :] * grouped + lr_scale * bias[:, None, :]).reshape(k, d)


def inverse_affine_codes(codes: jax.Array, scale: jax.Array, bias: jax.Array, lr_scale: float) -> jax.Array:
  """The w with affine_codes(w) = codes (where 1 + r s is 0 the code cannot be placed and w is 0)."""
  k, d = codes.shape
  groups = scale.shape[0]
  gain = (1.0 + lr_scale * scale)[:, None, :]
  grouped = codes.reshape(groups, k // groups, d) - lr_scale * bias[:, None, :]
  return jnp.where(gain != 0, grouped / jnp.where(gain != 0, gain, 1.0), 0.0).reshape(k, d)


def synchronized(estimate: jax.Array, q: jax.Array, nu: float) -> jax.Array:
  """estimate + nu (q - sg(q)): the same forward value, and nu times its incoming gradient reaches q."""
  return estimate + nu * (q - jax.lax.stop_gradient(q)) if nu else estimate


def alternating_step(w: jax.Array, momentum: jax.Array, codes_of, x: jax.Array, indices: jax.Array, lr: float,
                     beta: float) -> tuple[jax.Array, jax.Array]:
  """The codebook's own step (torch.optim.SGD with momentum): g = d/dw mean ||codes_of(w)[i_n] - sg(x_n)||^2,
  m <- beta m + g, w <- w - lr m. Returns (w, m)."""
  x = jax.lax.stop_gradient(x)
  grad = jax.grad(lambda w: jnp.mean(jnp.square(jnp.take(codes_of(w), indices, axis=0) - x)))(w)
  momentum = beta * momentum + grad
  return jax.lax.stop_gradient((w - lr * momentum, momentum))
