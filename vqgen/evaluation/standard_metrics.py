"""The standard image-generation metrics on the FID Inception-v3 (inception.py): FID, Inception Score, precision /
recall and rFID, scored against a reference (statistics of real images) and always reported with their sample
counts, the reference and the weights file.

  FID        Frechet distance (frechet.py, float64) between Gaussians fitted to the pool3 features [N, 2048] of the
             samples and of the reference images (Heusel et al. 2017); biased upward at small N, so published
             values are only comparable at the same sample and reference counts (docs/inception.md)
  IS         Salimans et al. 2016, as OpenAI's improved-GAN code computes it: p(y|x) = softmax of the 1008
             unbiased logits (pool3 @ fc.weight.T, no bias); the samples in their given order are cut into
             `splits` consecutive parts [i N / splits, (i + 1) N / splits); per part
               IS_part = exp(mean_x KL(p(y|x) || p(y))),  p(y) = the part's mean of p(y|x);
             the score is the mean and (population) standard deviation of IS_part over the parts
  precision / recall   k = 3 (Kynkaanniemi et al. 2019; frechet.py) on pool3, against the first N reference images
  rFID       FID of a tokenizer's reconstructions of the reference images against the reference statistics
Reading reference images and caching their statistics is data loading: vqgen/stages/inception_reference.py.
"""

import hashlib
import os
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from flax import nnx

from vqgen.evaluation.frechet import frechet_distance_to_statistics, precision_recall
from vqgen.evaluation.inception_layout import DEFAULT_PATH, FEATURE_DIM, WEIGHTS_URL
from vqgen.evaluation.samples import SampleError, check_images as _check_images

IS_SPLITS = 10   # the split count of OpenAI's code and of published Inception Scores


def check_images(images) -> None:
  """samples.check_images with the paper-scale hint."""
  _check_images(images, hint="papers use 50,000")


@nnx.jit
def _apply(net, images):
  return net(images)


@nnx.jit
def _reconstruct(tokenizer, images):
  return jnp.clip(tokenizer(images, train=False)[0], 0.0, 1.0)


def _batched(fn, images: np.ndarray, batch_size: int) -> tuple[list, int]:
  """([fn of each fixed-size batch of `images`, the last padded by repeating its final image], N)."""
  n = len(images)
  pad = -n % batch_size
  x = np.concatenate([images, np.repeat(images[-1:], pad, 0)]) if pad else images
  outs = [fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
  return outs, n


def inception_features(net, images, batch_size: int = 100) -> tuple[np.ndarray, np.ndarray]:
  """(pool3 float64 [N, 2048], unbiased logits float64 [N, 1008]) of float images [N, H, W, 1 or 3] in [0, 1]
  through one jitted apply of `net` (an FIDInceptionV3) on batches of `batch_size` (the last one padded).
  The network computes in float32; float64 holds those values exactly (pytorch-fid's float64 arrays)."""
  outs, n = _batched(lambda b: _apply(net, jnp.asarray(b, jnp.float32)), np.asarray(images), batch_size)
  pool3 = np.concatenate([np.asarray(o["pool3"], np.float64) for o in outs])[:n]
  logits = np.concatenate([np.asarray(o["logits"], np.float64) for o in outs])[:n]
  return pool3, logits


def reconstructions(tokenizer, images, batch_size: int = 100) -> np.ndarray:
  """A tokenizer's reconstructions clip(tokenizer(x)[0], 0, 1) of float images [N, H, W, C], as float32 numpy."""
  outs, n = _batched(lambda b: _reconstruct(tokenizer, jnp.asarray(b, jnp.float32)), np.asarray(images), batch_size)
  return np.concatenate([np.asarray(o, np.float32) for o in outs])[:n]


def inception_score(logits, splits: int = IS_SPLITS) -> tuple[float, float]:
  """(mean, std) over `splits` consecutive parts of exp(mean_x KL(p(y|x) || p(y))) (module docstring), computed in
  float64 from logits [N, classes]; needs N >= splits."""
  logits = np.asarray(logits, np.float64)
  if logits.ndim != 2 or splits < 1 or len(logits) < splits:
    raise ValueError(f"The Inception Score needs logits [N >= splits, classes] and splits >= 1; got shape "
                     f"{list(logits.shape)} with splits={splits}.")
  shifted = logits - logits.max(1, keepdims=True)
  log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))   # log p(y|x)
  n, scores = len(log_p), []
  for i in range(splits):
    part = log_p[i * n // splits:(i + 1) * n // splits]
    log_py = np.log(np.exp(part).mean(0))
    kl = np.sum(np.exp(part) * (part - log_py), 1)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))


def missing_weights_message(path: str) -> str:
  return (f"FID Inception weights file {path} does not exist. vqgen never downloads weights: download pytorch-fid's "
          f"{WEIGHTS_URL} yourself and put it at {DEFAULT_PATH} (the default), or pass its location with "
          "--inception_weights=PATH (docs/inception.md).")


def weights_sha256(path: str) -> str:
  """The SHA-256 (hex) of a weights file's bytes: its fingerprint in cache keys and reports. FileNotFoundError
  saying where to get the file when it is missing."""
  full = os.path.expanduser(path)
  if not os.path.isfile(full):
    raise FileNotFoundError(missing_weights_message(path))
  digest = hashlib.sha256()
  with open(full, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


class Reference(NamedTuple):
  """Statistics of real images: mu [2048], sigma [2048, 2048] (float64) of num_images pool3 features (None when a
  statistics file does not say), the features of the first images when known (precision / recall need as many as
  there are samples) and what they are (e.g. "fashion_mnist:test, all 10000 images at 28x28 px")."""
  mu: np.ndarray
  sigma: np.ndarray
  num_images: int | None
  features: np.ndarray | None
  description: str


class InceptionScorer:
  """FID, IS and precision / recall of sample sets against one reference, on one FID Inception (`net`, loaded from
  `weights`); `score(images)` for any number of sample sets, `reconstruction_fid(pool3)` for a tokenizer."""

  def __init__(self, net, reference: Reference, weights: str, weights_sha256: str, batch_size: int = 100,
               splits: int = IS_SPLITS):
    if reference.mu.shape != (FEATURE_DIM,) or reference.sigma.shape != (FEATURE_DIM, FEATURE_DIM):
      raise ValueError(f"The reference ({reference.description}) has mu {list(reference.mu.shape)} and sigma "
                       f"{list(reference.sigma.shape)}; Inception pool3 statistics are [2048] and [2048, 2048].")
    self.net, self.reference, self.batch_size, self.splits = net, reference, batch_size, splits
    self.provenance = {"reference": reference.description, "num_reference": reference.num_images,
                       "weights": weights, "weights_sha256": weights_sha256}

  def features(self, images) -> tuple[np.ndarray, np.ndarray]:
    return inception_features(self.net, images, min(self.batch_size, len(images)))

  def fid(self, pool3: np.ndarray) -> float:
    """FD(Gaussian of pool3, the reference's); fewer images than 2049 take frechet.py's exact low-rank route."""
    return frechet_distance_to_statistics(pool3, self.reference.mu, self.reference.sigma)

  def score(self, images) -> dict:
    """FID, IS (mean, std over `splits`) and precision / recall of float images [N, H, W, 1 or 3] in [0, 1]."""
    check_images(images)
    if len(images) < self.splits:
      raise SampleError(f"{len(images)} images: the Inception Score needs at least {self.splits} (its split "
                        "count); papers use 50,000.")
    pool3, logits = self.features(np.asarray(images, np.float32))
    is_mean, is_std = inception_score(logits, self.splits)
    out = {"fid": self.fid(pool3), "inception_score": is_mean, "inception_score_std": is_std,
           "inception_score_splits": self.splits, "num_samples": len(pool3), **self.provenance}
    if self.reference.features is not None:
      real = self.reference.features[:len(pool3)]
      out["precision"], out["recall"] = precision_recall(real, pool3)
      out["num_precision_recall_reference"] = len(real)
    return out

  def reconstruction_fid(self, pool3: np.ndarray) -> dict:
    """rFID: the FID of the pool3 features of a tokenizer's reconstructions of the reference images."""
    return {"rfid": self.fid(pool3), "rfid_num_images": len(pool3), **self.provenance}


def format_inception_scores(s: dict) -> str:
  """One human-readable block: every score with its sample count, the reference and the weights file."""
  ref = f"{s['reference']}" + ("" if s.get("num_reference") else " (image count not recorded)")
  lines = [f"FID Inception {s['weights']} (sha256 {s['weights_sha256'][:16]}...); reference: {ref}"]
  if "fid" in s:
    lines.append(f"  FID                {s['fid']:.4f}   ({s['num_samples']} samples)")
    lines.append(f"  Inception Score    {s['inception_score']:.4f} +- {s['inception_score_std']:.4f}   "
                 f"({s['num_samples']} samples, {s['inception_score_splits']} splits)")
    if "precision" in s:
      lines.append(f"  precision / recall {s['precision']:.4f} / {s['recall']:.4f}   (k = 3, {s['num_samples']} "
                   f"samples vs the first {s['num_precision_recall_reference']} reference images)")
    else:
      lines.append("  precision / recall not computed: the reference is a statistics file without features")
  if "rfid" in s:
    lines.append(f"  rFID               {s['rfid']:.4f}   ({s['rfid_num_images']} reconstructions of "
                 f"{s.get('rfid_reference', s['reference'])})")
  lines.append("  (FID is biased upward at small counts: compare only at equal sample and reference counts)")
  return "\n".join(lines)
