"""What every quantizer returns, and the codebook statistics they share."""

from typing import NamedTuple

import jax
import jax.numpy as jnp


class QuantizerOutput(NamedTuple):
  """Output of `quantizer(z, train=...)`.

  quantized: same shape as z, float32, carrying straight-through gradients to z.
  indices:   int32 code indices, z.shape[:-1] (plus a trailing depth/group axis for composite quantizers).
  losses:    named, already weighted scalar losses to add to the training objective ({} for FSQ).
  metrics:   named scalars for logging (`usage`, `perplexity` of the batch).
  """
  quantized: jax.Array
  indices: jax.Array
  losses: dict
  metrics: dict


def code_histogram(indices: jax.Array, codebook_size: int) -> jax.Array:
  """Counts of each code in `indices` (any shape), int32 [codebook_size]."""
  return jnp.bincount(indices.reshape(-1), length=codebook_size).astype(jnp.int32)


def usage_and_perplexity(counts: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Codebook usage (fraction of codes used at least once) and perplexity exp(H(histogram))."""
  counts = counts.astype(jnp.float32)
  p = counts / jnp.maximum(counts.sum(), 1.0)
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
  return jnp.mean(counts > 0), jnp.exp(entropy)


def batch_metrics(indices: jax.Array, codebook_size: int) -> dict:
  usage, perplexity = usage_and_perplexity(code_histogram(indices, codebook_size))
  return {"usage": usage, "perplexity": perplexity}


def sum_losses(outputs) -> dict:
  """Adds the levels' losses by name."""
  losses = {}
  for out in outputs:
    for name, value in out.losses.items():
      losses[name] = losses.get(name, 0.0) + value
  return losses


def level_metrics(indices, codebook_size, axis_name) -> dict:
  """Usage and perplexity per level, averaged, plus those of level 0."""
  per = [batch_metrics(indices[..., i], codebook_size) for i in range(indices.shape[-1])]
  out = {k: jnp.mean(jnp.stack([m[k] for m in per])) for k in per[0]}
  out.update({f"{k}_{axis_name}0": v for k, v in per[0].items()})
  return out


def l2_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  """x / max(||x||, eps) over the last axis."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), -1, keepdims=True), eps * eps))


def squared_distances(x: jax.Array, codebook: jax.Array) -> jax.Array:
  """||x_n - c_k||^2 = ||x||^2 - 2 x.c + ||c||^2, [N, d] x [K, d] -> [N, K], float32."""
  return (jnp.sum(jnp.square(x), -1, keepdims=True) - 2.0 * x @ codebook.T
          + jnp.sum(jnp.square(codebook), -1)[None, :])
