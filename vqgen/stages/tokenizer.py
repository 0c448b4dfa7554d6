"""The tokenizer stage: what the generic trainer needs to train and evaluate a Tokenizer."""

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vqgen import images as images_lib
from vqgen.evaluation.reconstruction import batch_statistics, summarize
from vqgen.stages import build
from vqgen.stages.image_data import ImageStage
from vqgen.tokenizers import tokenizer_losses
from vqgen.train import sharding as sharding_lib
from vqgen.train import writers


def evaluate_tokenizer(model, batches, mesh, codebook_size: int):
  """Runs `model` over `batches` (per-process dicts with image/mask), each fed into a global batch on `mesh`.

  Returns (metrics, (images, reconstructions) of the first global batch as numpy arrays).
  """
  graphdef, state = nnx.split(model)
  step = jax.jit(lambda state, batch: batch_statistics(nnx.merge(graphdef, state), batch, codebook_size))
  totals, first = None, None
  for local in batches:
    batch = sharding_lib.global_batch(local, mesh)
    stats, recon = step(state, batch)
    totals = stats if totals is None else jax.tree.map(jnp.add, totals, stats)
    if first is None:
      first = tuple(sharding_lib.to_host(x) for x in (batch["image"], recon))
  return summarize(jax.device_get(totals), int(np.prod(first[0].shape[1:])), codebook_size), first


class TokenizerStage(ImageStage):
  NAME = "tokenizer"

  def build_model(self, rngs):
    return build.tokenizer(self.config, rngs)

  def loss(self, model, batch, rng):
    del rng  # deterministic objective
    recon, q = model(batch["image"], train=True)
    losses = tokenizer_losses(recon, batch["image"], q.losses, **build.tokenizer_losses(self.config))
    loss = sum(losses.values())
    metrics = {f"loss/{k}": v for k, v in losses.items()}
    metrics.update({f"quantizer/{k}": v for k, v in q.metrics.items()})
    metrics["mse"] = jnp.mean(jnp.square(jnp.clip(recon, 0, 1) - batch["image"]))
    return loss, metrics

  def evaluate(self, make_model, mesh, workdir: str, writer, step: int) -> dict:
    """Reconstruction metrics over the eval split; writes reconstructions.png and metrics.json."""
    c = self.config
    model = make_model()
    results, (images, recon) = evaluate_tokenizer(model, self.eval_batches(mesh), mesh,
                                                  model.quantizer.codebook_size)
    results["step"] = step
    n = min(c.train.num_grid_images, len(images))
    grid = images_lib.make_grid(np.concatenate([images[:n], recon[:n]]), rows=2)
    if jax.process_index() == 0:
      images_lib.save_png(os.path.join(workdir, "reconstructions.png"), grid, scale=3)
      writer.write_images(step, {"reconstructions": grid[None]})
      writer.write_scalars(step, {f"eval/{k}": v for k, v in results.items() if k != "step"})
      writers.write_json(os.path.join(workdir, "metrics.json"), results)
    return results
