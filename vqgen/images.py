"""Image grids as PNG files."""

import numpy as np
from PIL import Image


def make_grid(images: np.ndarray, rows: int, padding: int = 2, pad_value: float = 1.0) -> np.ndarray:
  """[N, H, W, C] in [0, 1] -> one [rows*(H+p)+p, cols*(W+p)+p, C] image, row-major; short rows are padded."""
  images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  n, h, w, c = images.shape
  cols = -(-n // rows)
  grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c), pad_value, np.float32)
  for i in range(n):
    r, q = divmod(i, cols)
    top, left = padding + r * (h + padding), padding + q * (w + padding)
    grid[top:top + h, left:left + w] = images[i]
  return grid


def save_png(path, image: np.ndarray, scale: int = 1) -> None:
  """Writes a [H, W, C] image in [0, 1] (C = 1 or 3) as an 8-bit PNG, upscaled by an integer factor."""
  pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
  pixels = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
  pil = Image.fromarray(pixels)
  if scale > 1:
    pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
  pil.save(path)
