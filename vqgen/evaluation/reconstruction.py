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
from flax import nnx

from vqgen.quantizers import usage_and_perplexity
from vqgen.train import sharding as sharding_lib


def psnr_from_mse(mse: float) -> float:
  return float(10.0 * np.log10(1.0 / mse))


def _batch_stats(model, batch, codebook_size):
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


def evaluate_tokenizer(model, batches, mesh, codebook_size: int):
  """Runs `model` over `batches` (per-process dicts with image/mask).

  Returns (metrics, (images, reconstructions) of the first global batch as numpy arrays).
  """
  graphdef, state = nnx.split(model)

  @jax.jit
  def step(state, batch):
    return _batch_stats(nnx.merge(graphdef, state), batch, codebook_size)

  totals, first = None, None
  for local in batches:
    batch = sharding_lib.global_batch(local, mesh)
    stats, recon = step(state, batch)
    totals = stats if totals is None else jax.tree.map(jnp.add, totals, stats)
    if first is None:
      first = tuple(sharding_lib.to_host(x) for x in (batch["image"], recon))
  totals = jax.device_get(totals)
  pixels = totals["count"] * np.prod(first[0].shape[1:])
  per_level = [usage_and_perplexity(jnp.asarray(c)) for c in totals["codes"]]
  usage = np.mean([float(u) for u, _ in per_level])
  perplexity = np.mean([float(p) for _, p in per_level])
  return {
      "test_psnr": psnr_from_mse(totals["sq_err"] / pixels),
      "test_mse": float(totals["sq_err"] / pixels),
      "test_ssim": float(totals["ssim"] / totals["count"]),
      "codebook_usage": float(usage),
      "codebook_perplexity": float(perplexity),
      "codebook_size": int(codebook_size),
      "num_eval_images": int(totals["count"]),
  }, first
