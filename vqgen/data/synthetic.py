"""Synthetic images of any shape: smooth random colour fields made on demand, deterministic per (split, index).

A stand-in for a dataset that is not on this machine, at its real shape: smoke tests of the ImageNet-256 recipes
and accelerator throughput benchmarks (`config.data.name = "synthetic"`). Nothing is learned from them: a
record is an 8x8 grid of uniform random values per channel, bicubically upsampled to image_size, so it has the
spatial smoothness of a natural image and none of its content.
"""

import zlib

import numpy as np
from PIL import Image

from vqgen.errors import Refusal

SPLIT_SIZES = {"train": 10_000}  # every other split name has EVAL_SIZE records
EVAL_SIZE = 1_000
NUM_CLASSES = 1_000              # labels cycle through ImageNet's number of classes


class SyntheticImages:
  """Random-access source of {'image': uint8 [image_size, image_size, channels], 'label': int32} records."""

  def __init__(self, split: str, *, image_size: int, channels: int, grid: int = 8):
    if image_size < 1 or channels not in (1, 3) or grid < 1:
      raise Refusal(f"Synthetic images need image_size >= 1, channels 1 or 3 and grid >= 1, got "
                       f"image_size={image_size}, channels={channels}, grid={grid}.")
    self.split, self.image_size, self.channels, self.grid = split, image_size, channels, grid
    self._seed = zlib.crc32(split.encode())  # a split's records differ from every other split's

  def __len__(self) -> int:
    return SPLIT_SIZES.get(self.split, EVAL_SIZE)

  def __getitem__(self, index: int) -> dict:
    if not 0 <= index < len(self):
      raise IndexError(f"index {index} out of range for {len(self)} synthetic '{self.split}' records")
    rng = np.random.default_rng([self._seed, index])
    coarse = rng.integers(0, 256, (self.grid, self.grid, self.channels), dtype=np.uint8)
    planes = [np.asarray(Image.fromarray(coarse[..., c]).resize((self.image_size,) * 2, Image.BICUBIC))
              for c in range(self.channels)]
    return {"image": np.stack(planes, -1), "label": np.int32(index % NUM_CLASSES)}

  def __repr__(self):
    return (f"SyntheticImages(split={self.split!r}, n={len(self)}, "
            f"shape={(self.image_size, self.image_size, self.channels)})")
