"""Priors over tokenizer codes: MaskGIT, autoregressive and masked diffusion on one transformer backbone."""

import jax.numpy as jnp

from vqgen.priors.autoregressive import Autoregressive
from vqgen.priors.base import PriorNetwork
from vqgen.priors.diffusion import MaskedDiffusion
from vqgen.priors.maskgit import MaskGIT
from vqgen.priors.uniform_diffusion import UniformDiffusion

PRIORS = ("maskgit", "autoregressive", "diffusion", "uniform_diffusion")


def build_prior(config, codebook_size: int, grid: tuple[int, int], rngs):
  """The prior module of a prior config (config.prior / config.network) for codes of `grid` in [0, K)."""
  p, n = config.prior, config.network
  network = PriorNetwork(
      codebook_size=codebook_size, grid=grid, num_classes=p.num_classes, width=n.width, depth=n.depth,
      heads=n.heads, mlp_ratio=n.mlp_ratio, dropout_rate=n.dropout, positions=n.positions, head=n.head,
      head_groups=n.head_groups, class_dropout=p.class_dropout,
      time_conditioning=p.name in ("diffusion", "uniform_diffusion") and p.time_conditioning, dtype=jnp.dtype(n.compute_dtype), rngs=rngs)
  if p.name == "maskgit":
    return MaskGIT(network, mask_schedule=p.mask_schedule, min_mask_ratio=p.min_mask_ratio,
                   label_smoothing=p.label_smoothing)
  if p.name == "autoregressive":
    return Autoregressive(network, label_smoothing=p.label_smoothing)
  if p.name == "diffusion":
    return MaskedDiffusion(network, schedule=p.diffusion_schedule, exponent=p.diffusion_exponent)
  if p.name == "uniform_diffusion":
    return UniformDiffusion(network, schedule=p.diffusion_schedule, exponent=p.diffusion_exponent,
                            num_steps=p.uniform_steps, aux_weight=p.aux_weight)
  raise ValueError(f"Unknown prior {p.name!r}; choose one of {PRIORS}.")


def sampler_kwargs(config) -> dict:
  """The keyword arguments of `prior.sample` that config.sampling sets for this prior."""
  s = config.sampling
  common = dict(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, guidance_scale=s.guidance_scale,
                guidance_schedule=s.guidance_schedule)
  if config.prior.name == "maskgit":
    return dict(common, steps=s.steps, schedule=s.mask_schedule, choice_temperature=s.choice_temperature)
  if config.prior.name in ("diffusion", "uniform_diffusion"):
    return dict(common, steps=s.steps, grid=s.grid)
  return common


__all__ = ["PRIORS", "Autoregressive", "MaskGIT", "MaskedDiffusion", "PriorNetwork", "UniformDiffusion",
           "build_prior", "sampler_kwargs"]
