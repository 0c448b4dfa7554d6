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
from vqgen.stages.classifier import perceptual_network
from vqgen.stages.feature_codebook import read_feature_codebook
from vqgen.tokenizers.perceptual import lpips_distance
from vqgen.tokenizers.perceptual_networks import load_lpips_vgg16
from vqgen.tokenizers.vqgan import TokenizerGAN, vqgan_losses
from vqgen.train.optim import ParamGroup
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
  """A Tokenizer trained with config.loss: pixel loss, optionally LPIPS-style perceptual loss and, with a
  discriminator, VQGAN's adversarial loss (tokenizers/vqgan.py). With a discriminator the trained model is a
  TokenizerGAN with two parameter groups (generator: config.optimizer; discriminator:
  config.discriminator.optimizer); what the run hands on (`export`, `load_run`) is the Tokenizer alone."""
  NAME = "tokenizer"

  def __init__(self, config, workdir: str | None = None):
    super().__init__(config, workdir)
    self._perceptual = None  # (graphdef, state) of the frozen perceptual network, loaded on first use

  def build_model(self, rngs):
    tokenizer = build.tokenizer(self.config, rngs)
    discriminator = build.discriminator(self.config, rngs)
    return tokenizer if discriminator is None else TokenizerGAN(tokenizer, discriminator)

  def param_groups(self):
    if self.config.discriminator.name == "none":
      return None
    return {"generator": ParamGroup(self.config.optimizer, ("tokenizer",)),
            "discriminator": ParamGroup(self.config.discriminator.optimizer, ("discriminator",))}

  def export(self, model):
    return model.tokenizer if isinstance(model, TokenizerGAN) else model

  def perceptual_network(self):
    """The frozen feature network of the perceptual loss as (graphdef, state); None when the loss is off."""
    l = self.config.loss
    if l.perceptual_weight == 0:
      return None
    if self._perceptual is None:
      if l.perceptual_network == "lpips_vgg16":
        net = load_lpips_vgg16(l.perceptual_weights)
      else:
        net = perceptual_network(l.perceptual_weights or None, self.config.data.data_dir)
      self._perceptual = nnx.split(net)
    return self._perceptual

  def initialize(self, state, spec):
    """A fresh run's state: the frozen VQGAN-LC codebook read from model.feature_codebook (stages/feature_codebook.py)."""
    path = self.config.model.feature_codebook
    if not path:
      return state
    model = spec.merge(state.params, state.rest)
    self.export(model).quantizer.set_feature_codebook(read_feature_codebook(path))
    return state.replace(rest=spec.split(model)[1])

  def frozen(self):
    net = self.perceptual_network()
    return None if net is None else {"perceptual": net[1]}

  def loss(self, model, batch, ctx):
    perceptual = None
    if ctx.frozen is not None:
      net = nnx.merge(self.perceptual_network()[0], ctx.frozen["perceptual"])
      perceptual = lambda x, y: lpips_distance(net.features(x), net.features(y), net.channel_weights)
    losses, metrics = vqgan_losses(model, batch["image"], ctx.step, perceptual=perceptual,
                                   **build.vqgan_losses(self.config))
    metrics.update({f"loss/{k}": v for k, v in losses.items()})
    return sum(losses.values()), metrics

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
