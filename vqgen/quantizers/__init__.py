"""Quantizers: one file per family, and `build_quantizer(name, **kwargs)`, the registry by name.

Every quantizer is `Q(..., rngs=None)` with plain keyword arguments; those that draw random numbers (Gumbel, k-means
init, dead-code restarts, quantizer dropout) need `rngs`. This package imports nothing else of vqgen.
"""

import inspect

from vqgen.quantizers.base import QuantizerOutput, batch_metrics, code_histogram, usage_and_perplexity
from vqgen.quantizers.bsq import BSQ
from vqgen.quantizers.clustering import kmeans
from vqgen.quantizers.entropy import entropy_loss
from vqgen.quantizers.estimators import rotation_trick
from vqgen.quantizers.fsq import FSQ, RECOMMENDED_LEVELS
from vqgen.quantizers.grouped import Grouped
from vqgen.quantizers.lfq import LFQ
from vqgen.quantizers.residual import Residual
from vqgen.quantizers.vq import VQ

QUANTIZERS = {"fsq": FSQ, "vq": VQ, "lfq": LFQ, "bsq": BSQ, "residual": Residual, "grouped": Grouped}
# Composite quantizers take a factory of their levels (first argument) instead of the levels' arguments.
COMPOSITES = ("residual", "grouped")


def own_arguments(name: str) -> dict:
  """The keyword arguments of a quantizer's constructor (`inspect.Parameter`s by name), without self, rngs and a
  composite's level factory."""
  params = list(inspect.signature(QUANTIZERS[name].__init__).parameters.values())[1:]
  if name in COMPOSITES:
    params = params[1:]
  return {p.name: p for p in params if p.name != "rngs" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def build_quantizer(name: str, *, rngs=None, **kwargs):
  """The quantizer `name` from plain keyword arguments.

  A composite takes `quantizer=<family of its levels>`; the arguments its own constructor does not know go to each
  level: build_quantizer('residual', quantizer='vq', num_quantizers=4, dim=16, codebook_size=256, rngs=rngs).
  """
  if name not in QUANTIZERS:
    raise ValueError(f"Unknown quantizer {name!r}; choose one of {sorted(QUANTIZERS)}.")
  if name not in COMPOSITES:
    return QUANTIZERS[name](**kwargs, rngs=rngs)
  if "quantizer" not in kwargs:
    raise ValueError(f"The {name} quantizer needs quantizer=<the family of its levels>, e.g. quantizer='vq'.")
  inner = kwargs.pop("quantizer")
  own = own_arguments(name)
  level_kwargs = {k: v for k, v in kwargs.items() if k not in own}
  return QUANTIZERS[name](lambda: build_quantizer(inner, rngs=rngs, **level_kwargs),
                          **{k: v for k, v in kwargs.items() if k in own}, rngs=rngs)


__all__ = ["BSQ", "COMPOSITES", "FSQ", "Grouped", "LFQ", "QUANTIZERS", "QuantizerOutput", "RECOMMENDED_LEVELS",
           "Residual", "VQ", "batch_metrics", "build_quantizer", "code_histogram", "entropy_loss", "kmeans",
           "own_arguments", "rotation_trick", "usage_and_perplexity"]
