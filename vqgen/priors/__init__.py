"""Priors over tokenizer codes: MaskGIT, autoregressive, masked, uniform and mask-and-replace diffusion on one
transformer backbone.

`PRIORS` maps each family's name to its class; every class takes a `PriorNetwork` and plain keyword arguments.
A class's `LIKELIHOOD` says what its `bits_per_token` metric is: "exact" (autoregressive), "bound" (the diffusion
ELBOs) or None (MaskGIT: its loss is no likelihood, and it reports no bits per token).
This package imports nothing else of vqgen.
"""

from vqgen.priors.autoregressive import Autoregressive
from vqgen.priors.base import PriorNetwork
from vqgen.priors.diffusion import MaskedDiffusion
from vqgen.priors.mask_replace_diffusion import MaskReplaceDiffusion
from vqgen.priors.maskgit import MaskGIT
from vqgen.priors.uniform_diffusion import UniformDiffusion

PRIORS = {"maskgit": MaskGIT, "autoregressive": Autoregressive, "diffusion": MaskedDiffusion,
          "uniform_diffusion": UniformDiffusion, "mask_replace": MaskReplaceDiffusion}

__all__ = ["PRIORS", "Autoregressive", "MaskGIT", "MaskReplaceDiffusion", "MaskedDiffusion", "PriorNetwork",
           "UniformDiffusion"]
