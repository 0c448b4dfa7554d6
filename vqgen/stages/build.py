"""Config -> constructor arguments: the one place a run's ConfigDict becomes modules and keyword arguments.

The model packages take plain keyword arguments and never see a config; every translation is here.
"""

import jax.numpy as jnp
import numpy as np

from vqgen.evaluation.classifier import Classifier
from vqgen.evaluation.contrastive import ContrastiveEncoder
from vqgen.nn.transformer import Transformer
from vqgen.priors import PRIORS, PriorNetwork
from vqgen.quantizers import build_quantizer
from vqgen.tokenizers import Decoder, Encoder, Tokenizer
from vqgen.tokenizers.discriminators import PatchGAN, StyleGANDiscriminator
from vqgen.tokenizers.perceptual_networks import FashionPerceptual
from vqgen.tokenizers.vit import ViTDecoder, ViTEncoder


def quantizer(config, rngs):
  """The quantizer of config.quantizer (its keys are exactly `build_quantizer`'s keyword arguments)."""
  return build_quantizer(**config.quantizer.to_dict(), rngs=rngs)


def tokenizer(config, rngs) -> Tokenizer:
  """The Tokenizer of config.model / config.quantizer / config.data."""
  m, d = config.model, config.data
  q = quantizer(config, rngs)
  dtype = jnp.dtype(m.compute_dtype)
  if m.name == "vit":
    common = dict(image_size=d.image_size, patch_size=m.patch_size, width=m.vit_width, depth=m.vit_depth,
                  heads=m.vit_heads, mlp_ratio=m.vit_mlp_ratio, positions=m.vit_positions, rngs=rngs, dtype=dtype)
    encoder, decoder = ViTEncoder(d.channels, q.dim, **common), ViTDecoder(q.dim, d.channels, **common)
  else:
    common = dict(channels=m.channels, channel_multipliers=tuple(m.channel_multipliers),
                  num_res_blocks=m.num_res_blocks, norm_groups=m.norm_groups, patch_size=m.patch_size,
                  attention_levels=tuple(m.attention_levels), mid_attention=m.mid_attention,
                  activation=m.activation, downsample=m.downsample, rngs=rngs, dtype=dtype)
    encoder, decoder = Encoder(d.channels, q.dim, **common), Decoder(q.dim, d.channels, **common)
  return Tokenizer(encoder, q, decoder, pre_quant_norm=m.pre_quant_norm)


def prior(config, codebook_size: int, code_shape: tuple, rngs):
  """The prior of config.prior / config.network for codes of `code_shape` (h, w) or (h, w, D) in [0, codebook_size).

  Stacked codes (Residual, Grouped: D per position) are one row of w * D codes per grid row for every family but the
  RQ-Transformer, whose spatial transformer runs over the (h, w) grid and whose depth transformer over the D."""
  p, n = config.prior, config.network
  if p.name not in PRIORS:
    raise ValueError(f"Unknown prior {p.name!r}; choose one of {list(PRIORS)}.")
  h, w, depth = code_shape[0], code_shape[1], int(np.prod(code_shape[2:], dtype=int))
  grid = (h, w) if p.name == "rq_transformer" else (h, w * depth)
  network = PriorNetwork(
      codebook_size=codebook_size, grid=grid, num_classes=p.num_classes, width=n.width, depth=n.depth,
      heads=n.heads, mlp_ratio=n.mlp_ratio, dropout_rate=n.dropout, positions=n.positions, norm=n.norm,
      mlp=n.mlp, head=n.head,
      head_groups=n.head_groups, class_dropout=p.class_dropout,
      time_conditioning=time_conditioned(p),
      dtype=jnp.dtype(n.compute_dtype), rngs=rngs)
  objective = {
      "maskgit": dict(mask_schedule=p.mask_schedule, min_mask_ratio=p.min_mask_ratio,
                      label_smoothing=p.label_smoothing),
      "autoregressive": dict(label_smoothing=p.label_smoothing),
      "diffusion": dict(schedule=p.diffusion_schedule, exponent=p.diffusion_exponent),
      "uniform_diffusion": dict(schedule=p.diffusion_schedule, exponent=p.diffusion_exponent,
                                num_steps=p.uniform_steps, aux_weight=p.aux_weight),
      "mask_replace": dict(num_steps=p.uniform_steps, mask_end=p.mask_end, replace_end=p.replace_end,
                           aux_weight=p.aux_weight),
  }
  if p.name == "rq_transformer":
    depth_transformer = Transformer(
        width=n.width, depth=n.depth_layers, heads=n.heads, grid=(1, depth), prefix=0, mlp_ratio=n.mlp_ratio,
        dropout_rate=n.dropout, norm=n.norm, mlp=n.mlp, dtype=jnp.dtype(n.compute_dtype), rngs=rngs)
    return PRIORS[p.name](network, depth_transformer, label_smoothing=p.label_smoothing, rngs=rngs)
  return PRIORS[p.name](network, **objective[p.name])


def time_conditioned(prior_section) -> bool:
  """Whether config.prior's network takes the diffusion time t (adaLN): the diffusion families, when asked."""
  return prior_section.name in ("diffusion", "uniform_diffusion", "mask_replace") and prior_section.time_conditioning


def sampler_kwargs(config) -> dict:
  """The keyword arguments of `prior.sample` that config.sampling sets for this prior."""
  s = config.sampling
  common = dict(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, guidance_scale=s.guidance_scale,
                guidance_schedule=s.guidance_schedule)
  if config.prior.name == "maskgit":
    return dict(common, steps=s.steps, schedule=s.mask_schedule, choice_temperature=s.choice_temperature)
  if config.prior.name == "diffusion":
    return dict(common, steps=s.steps, grid=s.grid, sampler=s.sampler, remask=s.remask, remask_eta=s.remask_eta,
                remask_loop=tuple(s.remask_loop))
  if config.prior.name == "uniform_diffusion":
    return dict(common, steps=s.steps, grid=s.grid, corrector_steps=s.corrector_steps)
  if config.prior.name == "mask_replace":
    return dict(common, steps=s.steps, strategy=s.strategy, purity_weight=s.purity_weight)
  return common


def classifier(config, rngs):
  """The network of config.model: the sample metrics' classifier or contrastive judge, or vqgen's own perceptual
  network."""
  if config.model.architecture == "contrastive":
    return ContrastiveEncoder(config.model.width, rngs=rngs)
  if config.model.architecture == "perceptual":
    return FashionPerceptual(config.model.num_classes, rngs=rngs)
  return Classifier(config.model.num_classes, dropout=config.model.dropout, rngs=rngs)


def discriminator(config, rngs):
  """The discriminator of config.discriminator (None for 'none')."""
  d = config.discriminator
  if d.name == "patchgan":
    return PatchGAN(config.data.channels, channels=d.channels, num_layers=d.num_layers, norm=d.norm, rngs=rngs)
  if d.name == "stylegan":
    return StyleGANDiscriminator(config.data.channels, config.data.image_size,
                                 channels=tuple(d.stylegan_channels), rngs=rngs)
  return None


def vqgan_losses(config) -> dict:
  """The keyword arguments of `tokenizers.vqgan_losses` set by config.loss (the perceptual callable aside)."""
  l = config.loss
  return dict(reconstruction=l.reconstruction, reconstruction_weight=l.reconstruction_weight,
              perceptual_weight=l.perceptual_weight, adversarial_weight=l.adversarial_weight,
              adaptive_weight=l.adaptive_weight, gan_loss=l.gan_loss, discriminator_start=l.discriminator_start,
              lecam_weight=l.lecam_weight, lecam_decay=l.lecam_decay, r1_gamma=l.r1_gamma,
              discriminator_input=l.discriminator_input)
