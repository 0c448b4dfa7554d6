"""Tokenizer reconstruction metrics over a whole split: PSNR, SSIM, codebook usage and perplexity.

PSNR = 10 log10(1 / MSE) with pixels in [0, 1] and the MSE averaged over every pixel of the split (not a mean of
per-image PSNRs). Usage is the fraction of codes used at least once over the split; perplexity is
exp(entropy of the split's code histogram). Composite quantizers (residual depths, groups) have one codebook per
level: usage and perplexity are computed per level and averaged.
"""

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

from vqgen.quantizers import usage_and_perplexity


def psnr_from_mse(mse: float) -> float:
  return float(10.0 * np.log10(1.0 / mse))


def batch_statistics(model, batch: dict, codebook_size: int) -> tuple[dict, jax.Array]:
  """Sums over one padded batch {image, mask} (squared error, SSIM, count, per-level code counts) to add across
  batches, and the clipped reconstructions."""
  images, mask = batch["image"], batch["mask"]
  recon, q = model(images, train=False)
  recon = jnp.clip(recon, 0.0, 1.0)
  m = mask.astype(jnp.float32)
  sq_err = jnp.sum(jnp.square(recon - images).reshape(len(images), -1).sum(-1) * m)
  ssim = jnp.sum(dm_pix.ssim(images, recon) * m)
  # Tokens are [B, h, w] for single quantizers and [B, h, w, L] for composite ones (L levels).
  indices = q.indices if q.indices.ndim == images.ndim else q.indices[..., None]
  levels = indices.shape[-1]
  token_mask = jnp.broadcast_to(m.reshape((-1,) + (1,) * (indices.ndim - 1)), indices.shape)
  offset = jnp.arange(levels, dtype=jnp.int32) * codebook_size  # level l counts into row l
  counts = jnp.bincount((indices + offset).reshape(-1), weights=token_mask.reshape(-1),
                        length=levels * codebook_size).reshape(levels, codebook_size)
  return {"sq_err": sq_err, "ssim": ssim, "count": m.sum(), "codes": counts}, recon


def summarize(totals: dict, pixels_per_image: int, codebook_size: int) -> dict:
  """The split's metrics from the summed `batch_statistics` (numpy)."""
  pixels = np.float64(totals["count"]) * pixels_per_image
  per_level = [usage_and_perplexity(jnp.asarray(c)) for c in totals["codes"]]
  return {
      "test_psnr": psnr_from_mse(totals["sq_err"] / pixels),
      "test_mse": float(totals["sq_err"] / pixels),
      "test_ssim": float(totals["ssim"] / totals["count"]),
      "codebook_usage": float(np.mean([float(u) for u, _ in per_level])),
      "codebook_perplexity": float(np.mean([float(p) for _, p in per_level])),
      "codebook_size": int(codebook_size),
      "num_eval_images": int(totals["count"]),
  }
