"""Grain input pipelines: shuffled, repeated, batched per process, deterministic for a seed, checkpointable."""

import grain
import numpy as np
from PIL import Image

from vqgen.data.fashion_mnist import FashionMNIST
from vqgen.data.splits import sliced
from vqgen.data.synthetic import SyntheticImages
from vqgen.data.tfds_source import TFDSSource
from vqgen.errors import Refusal


def make_source(name: str, split: str, data_dir: str | None = None, *, image_size: int | None = None,
                channels: int | None = None):
  """`fashion_mnist` reads the local IDX files; `synthetic` makes images of image_size x image_size x channels
  (data/synthetic.py); any other name is a prepared TFDS dataset. Every split may be sliced as in TFDS:
  `train[:512]`, `test[10%:20%]` (data/splits.py)."""
  if name == "fashion_mnist":
    return sliced(lambda s: FashionMNIST(s, data_dir or None), split)
  if name == "synthetic":
    if image_size is None or channels is None:
      raise Refusal("The synthetic source needs image_size and channels (config.data).")
    return sliced(lambda s: SyntheticImages(s, image_size=image_size, channels=channels), split)
  return TFDSSource(name, split, data_dir or None)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
  """Central square crop, then bicubic resize to size x size (a no-op when the image already fits)."""
  h, w = image.shape[:2]
  if h == w == size:
    return image
  s = min(h, w)
  top, left = (h - s) // 2, (w - s) // 2
  image = image[top:top + s, left:left + s]
  squeeze = image.shape[-1] == 1
  pil = Image.fromarray(image[..., 0] if squeeze else image).resize((size, size), Image.BICUBIC)
  out = np.asarray(pil)
  return out[..., None] if squeeze else out


class _Resize(grain.transforms.Map):
  """One record's uint8 image to [size, size, C] (a no-op at the right size)."""

  def __init__(self, image_size: int):
    self.image_size = image_size

  def map(self, record):
    return {"image": resize_image(np.asarray(record["image"]), self.image_size),
            "label": np.int32(record["label"])}


class _RandomFlip(grain.transforms.RandomMap):
  """Mirrors each image of a uint8 batch left-right with probability 1/2 (the training stream's augmentation).

  Grain seeds the generator from the pipeline's seed and the batch's index, so the flips are deterministic for a
  seed and a resumed iterator draws the same ones."""

  def random_map(self, batch, rng: np.random.Generator):
    images = np.asarray(batch["image"])
    flip = rng.random(len(images)) < 0.5
    return {**batch, "image": np.where(flip[:, None, None, None], images[:, :, ::-1], images)}


def to_float(batch: dict) -> dict:
  """A batch's uint8 images to float32 in [0, 1] (done per batch: vectorised)."""
  return {**batch, "image": np.asarray(batch["image"], np.float32) / 255.0}


def train_dataset(source, *, batch_size: int, seed: int, image_size: int | None,
                  process_index: int = 0, process_count: int = 1, random_flip: bool = False) -> grain.IterDataset:
  """Infinite stream of per-process batches {'image': [b, H, W, C] float32, 'label': [b] int32}.

  With image_size=None records are batched as they are (e.g. stage-2 codes: {'codes', 'label'}). `random_flip`
  mirrors each image left-right with probability 1/2 (config.data.random_flip; evaluation never flips).

  Each process reads a disjoint slice of the source (records process_index::process_count), reshuffled every
  epoch from `seed`. Iterate with `iter(ds)`; the iterator's state (get_state/set_state) is what checkpoints save.
  """
  if len(source) < process_count * batch_size:
    raise Refusal(f"The data source has {len(source)} records, fewer than one global batch "
                     f"({process_count} x {batch_size}).")
  ds = grain.MapDataset.source(source)[process_index::process_count]
  ds = ds.shuffle(seed=seed).repeat(None)
  if image_size is not None:
    ds = ds.map(_Resize(image_size))
  ds = ds.batch(batch_size, drop_remainder=True)
  if random_flip:
    if image_size is None:
      raise Refusal("random_flip applies to images: it needs image_size.")
    ds = ds.random_map(_RandomFlip(), seed=int(np.random.SeedSequence([seed, process_index]).generate_state(1)[0]))
  if image_size is not None:
    ds = ds.map(to_float)
  # Records are read on the main thread: cheaper than thread pools for small images on a 2-core machine.
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))


def eval_batches(source, *, batch_size: int, image_size: int, process_index: int = 0, process_count: int = 1,
                 limit: int | None = None):
  """One ordered pass over (the first `limit` records of) a split, in fixed-size per-process batches.

  The last batch is padded by repeating its final record; `mask` (bool [b]) marks the real records, so jitted
  evaluation compiles once and averages stay exact.
  """
  n = len(source) if limit is None else min(limit, len(source))
  indices = np.arange(n)[process_index::process_count]
  per_process = -(-n // process_count)  # every process runs the same number of batches
  resize = _Resize(image_size)
  for start in range(0, per_process, batch_size):
    chunk = indices[start:start + batch_size]
    mask = np.zeros(batch_size, bool)
    mask[:len(chunk)] = True
    if len(chunk) == 0:
      chunk = indices[-1:]
    chunk = np.concatenate([chunk, np.full(batch_size - len(chunk), chunk[-1])])
    records = [resize.map(source[int(i)]) for i in chunk]
    yield to_float({"image": np.stack([r["image"] for r in records]),
                    "label": np.stack([r["label"] for r in records]), "mask": mask})
