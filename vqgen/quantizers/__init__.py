"""Quantizers: one file per family. `build_quantizer(name, **kwargs)` maps config names to modules."""

from vqgen.quantizers.base import QuantizerOutput, batch_metrics, code_histogram, usage_and_perplexity
from vqgen.quantizers.bsq import BSQ
from vqgen.quantizers.entropy import entropy_loss
from vqgen.quantizers.fsq import FSQ, RECOMMENDED_LEVELS
from vqgen.quantizers.grouped import Grouped
from vqgen.quantizers.lfq import LFQ
from vqgen.quantizers.residual import Residual
from vqgen.quantizers.vq import VQ, kmeans, rotation_trick

QUANTIZERS = {"fsq": FSQ, "vq": VQ, "lfq": LFQ, "bsq": BSQ, "residual": Residual, "grouped": Grouped}


def build_quantizer(name: str, **kwargs):
  if name not in QUANTIZERS:
    raise ValueError(f"Unknown quantizer {name!r}; choose one of {sorted(QUANTIZERS)}.")
  return QUANTIZERS[name](**kwargs)


__all__ = ["BSQ", "FSQ", "Grouped", "LFQ", "Residual", "VQ", "entropy_loss", "kmeans", "rotation_trick", "QuantizerOutput", "RECOMMENDED_LEVELS", "build_quantizer", "batch_metrics",
           "code_histogram", "usage_and_perplexity"]
