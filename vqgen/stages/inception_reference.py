"""References of the standard metrics (evaluation/standard_metrics.py): FID Inception pool3 statistics of a dataset
split read through vqgen's data sources and cached, or a statistics .npz given by path; and a tokenizer's
reconstructions of a split's images (rFID).

Images of a split: its first `num_images` records (all by default), centre-cropped to a square and resized
bicubically to `image_size` (the data pipeline's resize_image, a no-op at that size; None keeps the records as they
are), as float32 pixels / 255.
Statistics are accumulated chunk by chunk (frechet.GaussianAccumulator, float64), so a split of any size fits.
Cache: <cache_dir>/<dataset>-<split>-n<N>-<H>x<W>px-<first 16 hex of the weights file's SHA-256>.npz with mu, sigma
(float64), features (the float32 pool3 the network computed, of the first min(N, 50,000) images: precision /
recall use as many as there are samples; 8 KiB per image) and the key's fields. Another weights file, image count
or size is another file, so statistics are never reused across them.
Default cache_dir: $VQGEN_CACHE_DIR/inception_stats (VQGEN_CACHE_DIR defaults to ~/.cache/vqgen).
"""

import logging
import os
import re

import numpy as np

from vqgen import data as data_lib
from vqgen.evaluation.frechet import GaussianAccumulator
from vqgen.evaluation.inception import load_fid_inception
from vqgen.evaluation.inception_layout import DEFAULT_PATH, FEATURE_DIM
from vqgen.evaluation.standard_metrics import (InceptionScorer, Reference, inception_features, reconstructions,
                                               weights_sha256)
from vqgen.train import writers

CHUNK_BATCHES = 4            # images are read this many network batches at a time (bounded memory at ImageNet sizes)
MAX_STORED_FEATURES = 50_000  # reference features kept for precision / recall (papers' sample count)


def default_cache_dir() -> str:
  return os.path.join(os.environ.get("VQGEN_CACHE_DIR") or os.path.expanduser("~/.cache/vqgen"), "inception_stats")


class SplitImages:
  """The first `num_images` images of a dataset split (module docstring), read in chunks of float32 [n, H, W, C]."""

  def __init__(self, dataset: str, split: str, num_images: int | None = None, *, image_size: int | None = None,
               channels: int = 3):
    # image_size and channels shape the synthetic source only (256 px when image_size is None)
    self.source = data_lib.make_source(dataset, split, image_size=image_size or 256, channels=channels)
    available = len(self.source)
    if num_images is not None and not 2 <= num_images <= available:
      raise ValueError(f"{dataset}:{split} has {available} images; the reference count must be in [2, {available}], "
                       f"got {num_images}.")
    self.dataset, self.split, self.image_size = dataset, split, image_size
    self.num_images = available if num_images is None else num_images
    self.everything = self.num_images == available
    self.shape = self._image(0).shape[:2]

  def _image(self, index: int) -> np.ndarray:
    image = np.asarray(self.source[index]["image"])
    return image if self.image_size is None else data_lib.resize_image(image, self.image_size)

  def chunks(self, size: int):
    for start in range(0, self.num_images, size):
      images = [self._image(i) for i in range(start, min(start + size, self.num_images))]
      shapes = {im.shape for im in images}
      if len(shapes) > 1 or images[0].shape[:2] != self.shape:
        raise ValueError(f"{self.dataset}:{self.split} holds images of several sizes ({sorted(shapes)[:3]} ...); "
                         "pass image_size (the CLI passes the samples' size) to crop and resize them to one.")
      yield np.asarray(np.stack(images), np.float32) / 255.0

  def describe(self) -> str:
    count = f"all {self.num_images}" if self.everything else f"the first {self.num_images}"
    return f"{self.dataset}:{self.split}, {count} images at {self.shape[0]}x{self.shape[1]} px"

  def cache_name(self, fingerprint: str) -> str:
    safe = lambda s: re.sub(r"[^A-Za-z0-9_.]+", "_", s)  # noqa: E731
    return (f"{safe(self.dataset)}-{safe(self.split)}-n{self.num_images}-{self.shape[0]}x{self.shape[1]}px-"
            f"{fingerprint[:16]}.npz")


def feature_chunks(images: SplitImages, net, batch_size: int, tokenizer=None):
  """pool3 features [n, 2048] of the split's images chunk by chunk (with a tokenizer: of its reconstructions)."""
  batch = min(batch_size, images.num_images)
  for chunk in images.chunks(CHUNK_BATCHES * batch):
    if tokenizer is not None:
      chunk = reconstructions(tokenizer, chunk, batch)
    yield inception_features(net, chunk, batch)[0]


def reference_pass(images: SplitImages, net, batch_size: int) -> tuple:
  """(mu, sigma, float32 features of the first MAX_STORED_FEATURES images) of a split, in one pass."""
  stats, kept, stored = GaussianAccumulator(), [], 0
  for pool3 in feature_chunks(images, net, batch_size):
    stats.add(pool3)
    kept.append(pool3[:MAX_STORED_FEATURES - stored].astype(np.float32))   # exact: the network's float32 values
    stored += len(kept[-1])
  return *stats.statistics(), np.concatenate(kept)


def _read_cache(path: str, images: SplitImages, fingerprint: str) -> tuple | None:
  """(mu, sigma, features) of a cache file, or None when it is unreadable or not of this key (then it is computed
  again)."""
  num_images = images.num_images
  try:
    with np.load(path) as f:
      key = (str(f["dataset"]), str(f["split"]), int(f["num_images"]), tuple(f["image_shape"]),
             str(f["weights_sha256"]))
      if key != (images.dataset, images.split, num_images, tuple(images.shape), fingerprint):
        raise ValueError(f"it holds {key}")
      mu, sigma, features = f["mu"], f["sigma"], f["features"]
    if features.shape != (min(num_images, MAX_STORED_FEATURES), FEATURE_DIM) or mu.shape != (FEATURE_DIM,):
      raise ValueError(f"features of shape {features.shape}, mu of shape {mu.shape}")
    return mu, sigma, features
  except (OSError, ValueError, KeyError, EOFError) as e:
    logging.warning("Inception statistics cache %s is not usable (%s); computing it again.", path, e)
    return None


def dataset_reference(dataset: str, split: str, num_images: int | None = None, weights_path: str = DEFAULT_PATH,
                      cache_dir: str | None = None, *, image_size: int | None = None, channels: int = 3,
                      batch_size: int = 100, net=None) -> Reference:
  """The Reference of a split's first `num_images` images (all by default) at `image_size`: read from the cache
  when this key was computed before, else computed with `net` (default: loaded from `weights_path`) and cached."""
  images = SplitImages(dataset, split, num_images, image_size=image_size, channels=channels)
  fingerprint = weights_sha256(weights_path)
  cache_dir = cache_dir or default_cache_dir()
  path = os.path.join(cache_dir, images.cache_name(fingerprint))
  cached = _read_cache(path, images, fingerprint) if os.path.exists(path) else None
  if cached is None:
    writers.say(f"Computing the Inception statistics of {images.describe()} (once; cached in {path}) ...")
    if net is None:
      net = load_fid_inception(weights_path)
    mu, sigma, features = reference_pass(images, net, batch_size)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
      np.savez(f, mu=mu, sigma=sigma, features=features, num_images=images.num_images, dataset=dataset, split=split,
               image_shape=np.asarray(images.shape), weights_sha256=fingerprint, description=images.describe())
    os.replace(tmp, path)
    cached = mu, sigma, features
  return Reference(*cached[:2], images.num_images, cached[2], images.describe())


def reference_statistics(dataset: str, split: str, num_images: int | None = None, weights_path: str = DEFAULT_PATH,
                         cache_dir: str | None = None, **kwargs) -> tuple[np.ndarray, np.ndarray, int]:
  """(mu, sigma, N) of a split's pool3 features (dataset_reference, cached)."""
  ref = dataset_reference(dataset, split, num_images, weights_path, cache_dir, **kwargs)
  return ref.mu, ref.sigma, ref.num_images


def file_reference(path: str, fingerprint: str | None = None) -> Reference:
  """A statistics .npz: pytorch-fid's `--save-stats` layout (`mu` [2048], `sigma` [2048, 2048]), or one of vqgen's
  cache files (which add `features` and the weights' fingerprint: a file made with other weights than
  `fingerprint` is refused)."""
  try:
    with np.load(os.path.expanduser(path)) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError, EOFError) as e:
    raise ValueError(f"Reference statistics {path} cannot be read as an .npz ({type(e).__name__}: {e}).") from e
  for key, shape in (("mu", (FEATURE_DIM,)), ("sigma", (FEATURE_DIM, FEATURE_DIM))):
    if key not in arrays:
      raise ValueError(f"Reference statistics {path} has no array {key!r} (it has {sorted(arrays)}); expected "
                       "pytorch-fid's layout: mu [2048] and sigma [2048, 2048] of pool3 features.")
    if arrays[key].shape != shape:
      raise ValueError(f"Reference statistics {path}: {key} has shape {list(arrays[key].shape)}, expected "
                       f"{list(shape)} (FID Inception pool3).")
  made_with = str(arrays["weights_sha256"]) if "weights_sha256" in arrays else None
  if fingerprint and made_with and made_with != fingerprint:
    raise ValueError(f"Reference statistics {path} were computed with another Inception weights file (sha256 "
                     f"{made_with[:16]}..., these weights are {fingerprint[:16]}...); use statistics of these weights.")
  n = int(arrays["num_images"]) if "num_images" in arrays else None
  features = arrays.get("features")
  what = f" ({arrays['description']})" if "description" in arrays else ""
  return Reference(np.asarray(arrays["mu"], np.float64), np.asarray(arrays["sigma"], np.float64), n, features,
                   f"statistics file {path}{what}")


def reconstruction_features(tokenizer, net, dataset: str, split: str, num_images: int | None = None, *,
                            image_size: int | None = None, channels: int = 3, batch_size: int = 100) -> np.ndarray:
  """pool3 features of a tokenizer's reconstructions of a split's images (the same images as dataset_reference's
  for the same arguments): rFID = their FID against that reference."""
  images = SplitImages(dataset, split, num_images, image_size=image_size, channels=channels)
  writers.say(f"Reconstructing {images.describe()} for rFID ...")
  return np.concatenate(list(feature_chunks(images, net, batch_size, tokenizer)))


def parse_reference(spec: str) -> tuple[str, str] | None:
  """(dataset, split) of `DATASET:SPLIT` (cut at the first colon), or None for a statistics .npz; ValueError else."""
  if spec.endswith(".npz"):
    return None
  dataset, _, split = spec.partition(":")
  if not dataset or not split:
    raise ValueError(f"Reference {spec!r}: expected DATASET:SPLIT (e.g. fashion_mnist:test, imagenet2012:train) or "
                     "the path of a statistics .npz.")
  return dataset, split


def score_samples(images: np.ndarray, weights: str, reference: str, num_reference: int | None = None,
                  batch_size: int = 100) -> dict:
  """FID, IS and precision / recall (InceptionScorer.score) of float images [N, H, W, C] in [0, 1] against
  `reference` (DATASET:SPLIT, its first `num_reference` images at the samples' size, cached; or a statistics .npz)."""
  net, fingerprint = load_fid_inception(weights), weights_sha256(weights)
  split = parse_reference(reference)
  if split is None:
    ref = file_reference(reference, fingerprint)
  else:
    ref = dataset_reference(*split, num_reference, weights, image_size=images.shape[1], channels=images.shape[-1],
                            batch_size=batch_size, net=net)
  return InceptionScorer(net, ref, weights, fingerprint, batch_size).score(images)
