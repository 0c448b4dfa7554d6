"""Priors over tokenizer codes: MaskGIT, autoregressive, masked, uniform and mask-and-replace diffusion on one
transformer backbone, and the RQ-Transformer (a spatial and a depth transformer) for stacked codes.

`PRIORS` maps each family's name to its class; every class takes a `PriorNetwork` (the RQ-Transformer also its depth
`Transformer`) and plain keyword arguments.
A class's `LIKELIHOOD` says what its `bits_per_token` metric is: "exact" (autoregressive), "bound" (the diffusion
ELBOs) or None (MaskGIT: its loss is no likelihood, and it reports no bits per token).
This package imports nothing else of vqgen.
"""

from vqgen.priors.autoregressive import Autoregressive
from vqgen.priors.base import PriorNetwork
from vqgen.priors.diffusion import MaskedDiffusion
from vqgen.priors.mask_replace_diffusion import MaskReplaceDiffusion
from vqgen.priors.maskgit import MaskGIT
from vqgen.priors.rq_transformer import RQTransformer
from vqgen.priors.uniform_diffusion import UniformDiffusion

PRIORS = {"maskgit": MaskGIT, "autoregressive": Autoregressive, "diffusion": MaskedDiffusion,
          "uniform_diffusion": UniformDiffusion, "mask_replace": MaskReplaceDiffusion, "rq_transformer": RQTransformer}

__all__ = ["PRIORS", "Autoregressive", "MaskGIT", "MaskReplaceDiffusion", "MaskedDiffusion", "PriorNetwork",
           "RQTransformer", "UniformDiffusion"]
