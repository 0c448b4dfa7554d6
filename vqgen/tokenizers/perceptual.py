"""LPIPS's perceptual distance over the features of any network (Zhang et al. 2018, eq. 1, as in their code).

For feature maps f_l(x) of layers l = 1..L ([B, H_l, W_l, C_l]):
  f_hat   = f / (sqrt(sum_c f^2) + 1e-10)                      each position unit-normalised over channels
  d(x, y) = sum_l mean_{h,w} sum_c w_{l,c} (f_hat_l(x) - f_hat_l(y))^2_{h,w,c}
with w_l the non-negative per-channel weights of LPIPS v0.1's 1x1 "linear" layers (applied to the squared
difference, as the released code does), or all ones (`weights=None`: the uniform variant, LPIPS's "baseline").
The feature network is the caller's: vqgen never downloads one.
"""

import jax
import jax.numpy as jnp


def unit_normalize(features: jax.Array, eps: float = 1e-10) -> jax.Array:
  """Each position's channel vector divided by its l2 norm (LPIPS's `normalize_tensor`)."""
  return features / (jnp.sqrt(jnp.sum(jnp.square(features), -1, keepdims=True)) + eps)


def lpips_distance(features_x, features_y, weights=None) -> jax.Array:
  """d(x, y) per image, [B], from two lists of feature maps [B, H_l, W_l, C_l] and optional weights [C_l]."""
  if len(features_x) != len(features_y) or (weights is not None and len(weights) != len(features_x)):
    raise ValueError(f"Need one feature map per layer for both images (and one weight vector per layer), got "
                     f"{len(features_x)}, {len(features_y)}" + ("" if weights is None else f", {len(weights)}"))
  total = 0.0
  for layer, (fx, fy) in enumerate(zip(features_x, features_y)):
    diff = jnp.square(unit_normalize(fx.astype(jnp.float32)) - unit_normalize(fy.astype(jnp.float32)))
    if weights is not None:
      diff = diff * jnp.asarray(weights[layer], jnp.float32)
    total = total + jnp.mean(jnp.sum(diff, -1), axis=(1, 2))
  return total
