"""The tokenizer training stage: what the generic trainer needs to train and evaluate a Tokenizer."""

import os

import jax
import jax.numpy as jnp
import numpy as np

from vqgen import data as data_lib
from vqgen import images as images_lib
from vqgen.evaluation.reconstruction import evaluate_tokenizer
from vqgen.tokenizers.losses import tokenizer_losses
from vqgen.tokenizers.tokenizer import build_tokenizer
from vqgen.train import sharding as sharding_lib
from vqgen.train import writers


class TokenizerStage:

  def __init__(self, config):
    self.config = config

  def build_model(self, rngs):
    return build_tokenizer(self.config, rngs)

  def train_dataset(self, batch_size: int, process_index: int, process_count: int):
    d = self.config.data
    source = data_lib.make_source(d.name, d.train_split, d.data_dir)
    return data_lib.train_dataset(source, batch_size=batch_size, seed=self.config.seed, image_size=d.image_size,
                                  process_index=process_index, process_count=process_count)

  def loss(self, model, batch, rng):
    del rng  # deterministic objective
    recon, q = model(batch["image"], train=True)
    losses = tokenizer_losses(recon, batch["image"], q.losses, reconstruction=self.config.loss.reconstruction,
                              reconstruction_weight=self.config.loss.reconstruction_weight)
    loss = sum(losses.values())
    metrics = {f"loss/{k}": v for k, v in losses.items()}
    metrics.update({f"quantizer/{k}": v for k, v in q.metrics.items()})
    metrics["mse"] = jnp.mean(jnp.square(jnp.clip(recon, 0, 1) - batch["image"]))
    return loss, metrics

  def evaluate(self, make_model, mesh, workdir: str, writer, step: int) -> dict:
    """Reconstruction metrics over the eval split; writes reconstructions.png and metrics.json."""
    c = self.config
    model = make_model()
    local_bs = sharding_lib.per_process_batch_size(c.data.eval_batch_size, mesh)
    source = data_lib.make_source(c.data.name, c.data.eval_split, c.data.data_dir)
    batches = data_lib.eval_batches(source, batch_size=local_bs, image_size=c.data.image_size,
                                    process_index=jax.process_index(), process_count=jax.process_count(),
                                    limit=c.data.eval_limit or None)
    results, (images, recon) = evaluate_tokenizer(model, batches, mesh, model.quantizer.codebook_size)
    results["step"] = step
    n = min(c.train.num_grid_images, len(images))
    grid = images_lib.make_grid(np.concatenate([images[:n], recon[:n]]), rows=2)
    if jax.process_index() == 0:
      images_lib.save_png(os.path.join(workdir, "reconstructions.png"), grid, scale=3)
      writer.write_images(step, {"reconstructions": grid[None]})
      writer.write_scalars(step, {f"eval/{k}": v for k, v in results.items() if k != "step"})
      writers.write_json(os.path.join(workdir, "metrics.json"), results)
    return results
