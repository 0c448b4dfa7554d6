"""Fashion-MNIST read from the IDX files of the Debian package `dataset-fashion-mnist` (no network needed)."""

import gzip
import os
import pathlib

import numpy as np

from vqgen.errors import MissingInput, Refusal

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "VQGEN_FASHION_MNIST_DIR"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_INSTALL_HINT = ("Install it with `apt-get install dataset-fashion-mnist` (or `make data`), or point "
                 f"${ENV_VAR} / config.data.data_dir at a folder holding the four IDX files.")


def read_idx(path: pathlib.Path) -> np.ndarray:
  """Reads an IDX file (optionally gzipped): magic 0x0000 08 ndim, big-endian uint32 dims, uint8 data."""
  opener = gzip.open if path.suffix == ".gz" else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (EOFError, gzip.BadGzipFile, OSError) as e:
    raise Refusal(f"{path} cannot be read ({type(e).__name__}: {e}): the file is truncated or corrupt. "
                     "Reinstall the data (`apt-get install --reinstall dataset-fashion-mnist`).") from e
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise Refusal(f"{path} is not an unsigned-byte IDX file (bad magic {data[:4]!r}).")
  ndim = data[3]
  dims = np.frombuffer(data, ">u4", count=ndim, offset=4).astype(int)
  expected = 4 + 4 * ndim + int(np.prod(dims))
  if len(data) != expected:
    raise Refusal(f"{path} is truncated or corrupt: {len(data)} bytes, expected {expected} for dims "
                     f"{tuple(dims)}. Reinstall the data (`apt-get install --reinstall dataset-fashion-mnist`).")
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(directory: pathlib.Path, stem: str) -> pathlib.Path:
  for name in (stem + ".gz", stem):
    if (directory / name).exists():
      return directory / name
  raise MissingInput(f"Fashion-MNIST file {stem}(.gz) not found in {directory}. {_INSTALL_HINT}")


class FashionMNIST:
  """Random-access source of {'image': uint8 [28, 28, 1], 'label': int32} records (a Grain source)."""

  def __init__(self, split: str = "train", data_dir: str | None = None):
    if split not in _FILES:
      raise Refusal(f"Fashion-MNIST split must be one of {sorted(_FILES)}, got {split!r}.")
    directory = pathlib.Path(data_dir or os.environ.get(ENV_VAR) or DEFAULT_DIR)
    if not directory.is_dir():
      raise MissingInput(f"Fashion-MNIST folder {directory} does not exist. {_INSTALL_HINT}")
    images_file, labels_file = _FILES[split]
    self.images = read_idx(_find(directory, images_file))[..., None]
    self.labels = read_idx(_find(directory, labels_file)).astype(np.int32)
    if len(self.images) != len(self.labels):
      raise Refusal(f"{directory}: {len(self.images)} images but {len(self.labels)} labels in '{split}'.")
    self.split = split

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, index: int) -> dict:
    return {"image": self.images[index], "label": self.labels[index]}

  def __repr__(self):
    return f"FashionMNIST(split={self.split!r}, n={len(self)})"
