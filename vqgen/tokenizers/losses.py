"""Tokenizer training objective: weighted reconstruction plus the quantizer's own (already weighted) losses.

Perceptual and adversarial terms join here as further named entries of the same dict.
"""

import jax
import jax.numpy as jnp

RECONSTRUCTION = {
    "l1": lambda x, y: jnp.mean(jnp.abs(x - y)),
    "l2": lambda x, y: jnp.mean(jnp.square(x - y)),
}


def tokenizer_losses(recon: jax.Array, images: jax.Array, quantizer_losses: dict, *,
                     reconstruction: str = "l2", reconstruction_weight: float = 1.0) -> dict:
  """Named loss terms (their sum is the objective); pixel errors are measured on [0, 1] images."""
  losses = {"reconstruction": reconstruction_weight * RECONSTRUCTION[reconstruction](recon, images)}
  losses.update(quantizer_losses)
  return losses
