"""Scores of generated Fashion-MNIST images on the in-domain classifier's features, always beside their floors.

For N samples:
  sample FD      Frechet distance(samples, the whole test split)
  real floor     Frechet distance(N training images, the test split): what a perfect generator would score at
                 this sample count (FD is biased upward at small N)
  recon FD       Frechet distance(tokenizer reconstructions of the same N training images, the test split): the
                 best a prior over this tokenizer's codes can expect
  precision / recall (k = 3) against the first N test images, with the same floor for real training images
  class accuracy of class-conditional samples under the classifier (and the classifier's own test accuracy)
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vqgen.evaluation.classifier import batched_apply
from vqgen.evaluation.frechet import feature_frechet_distance, precision_recall


IMAGE_SHAPE = (28, 28, 1)  # what the classifier reads
NUM_CLASSES = 10  # its classes; a samples file labels unconditional samples with the null class 10


class SampleError(ValueError):
  """Sample arrays that cannot be scored; the message says what was expected."""


def check_images(images, hint: str = "better >= 1000") -> None:
  """Raises SampleError unless `images` are float [N >= 2, H, W, 1 or 3] in [0, 1]."""
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise SampleError(f"images have shape {list(images.shape)}; expected [N, H, W, 1 or 3] (NHWC).")
  if not np.issubdtype(images.dtype, np.floating):
    raise SampleError(f"images are {images.dtype}; expected floats in [0, 1] (divide uint8 pixels by 255).")
  if len(images) < 2:
    raise SampleError(f"{len(images)} image(s): the metrics need at least 2 (a covariance), {hint}.")
  lo, hi = float(np.min(images)), float(np.max(images))
  if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1e-3 or hi > 1 + 1e-3:
    raise SampleError(f"image values span [{lo:.4g}, {hi:.4g}]; expected [0, 1] (pixels / 255).")


def check_samples(images, labels=None, num_classes: int = NUM_CLASSES) -> None:
  """Raises SampleError unless `images` are float [N >= 2, 28, 28, 1] in [0, 1] and `labels` (if given) N ints in
  [0, num_classes)."""
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
    raise SampleError(f"images have shape {list(images.shape)}; expected [N, 28, 28, 1] (NHWC Fashion-MNIST).")
  check_images(images)
  if labels is not None:
    labels = np.asarray(labels)
    if labels.shape != (len(images),):
      raise SampleError(f"{labels.size} labels of shape {list(labels.shape)} for {len(images)} images; expected one "
                        "label per image.")
    if not np.issubdtype(labels.dtype, np.integer):
      raise SampleError(f"labels are {labels.dtype}; expected integers in [0, {num_classes}).")
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
      i = int(np.argmax(bad))
      raise SampleError(f"label {labels[i]} (sample {i}; {int(bad.sum())} of {len(labels)} labels) is not a class: "
                        f"labels must lie in [0, {num_classes}), or all be {num_classes} (the null class) for "
                        "unconditional samples.")


def class_labels(labels, num_classes: int = NUM_CLASSES):
  """The labels to score class accuracy against: None when there are none, or when every label is the null class
  `num_classes` (unconditional samples, generate.py's convention)."""
  if labels is None or (np.size(labels) and np.all(np.asarray(labels) == num_classes)):
    return None
  return labels


class SampleScorer:
  """Holds the classifier and the reference features; `score(images, labels)` for any number of sample sets.

  `test_images` are the reference set, `train_images` (in the order to draw from) give the real floor, and the
  tokenizer, when given, the reconstruction distance; images are float [N, 28, 28, 1] in [0, 1].
  """

  def __init__(self, classifier, classifier_accuracy: float, test_images: np.ndarray, train_images: np.ndarray,
               tokenizer=None):
    self.classifier_accuracy = classifier_accuracy
    graphdef, state = nnx.split(classifier)
    features = jax.jit(lambda s, x: nnx.merge(graphdef, s).features(x))
    logits = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    self.features = lambda x: batched_apply(lambda b: features(state, b), x)
    self.logits = lambda x: batched_apply(lambda b: logits(state, b), x)
    self.test_features = self.features(test_images)
    self.train_images = train_images
    self.tokenizer = tokenizer
    self._floors = {}

  def floors(self, n: int) -> dict:
    """Real-vs-real and reconstruction scores for N images (computed once per N)."""
    if n not in self._floors:
      real = self.features(self.train_images[:n])
      out = {"real_fd_floor": feature_frechet_distance(real, self.test_features)}
      p, r = precision_recall(self.test_features[:n], real)
      out.update({"real_precision_floor": p, "real_recall_floor": r})
      if self.tokenizer is not None:
        graphdef, state = nnx.split(self.tokenizer)
        recon = jax.jit(lambda s, x: jnp.clip(nnx.merge(graphdef, s)(x)[0], 0.0, 1.0))
        images = batched_apply(lambda b: recon(state, b), self.train_images[:n], 500)
        out["recon_fd"] = feature_frechet_distance(self.features(images), self.test_features)
      self._floors[n] = out
    return self._floors[n]

  def score(self, images: np.ndarray, labels: np.ndarray | None = None) -> dict:
    check_samples(images, labels)
    images = np.asarray(images, np.float32)
    n = len(images)
    feats = self.features(images)
    p, r = precision_recall(self.test_features[:n], feats)
    out = {"sample_fd": feature_frechet_distance(feats, self.test_features), "precision": p, "recall": r,
           **self.floors(n), "num_samples": n, "reference": f"test split ({len(self.test_features)} images)",
           "classifier_test_accuracy": self.classifier_accuracy}
    if labels is not None:
      out["class_accuracy"] = float(np.mean(np.argmax(self.logits(images), -1) == np.asarray(labels)))
    return out


def format_scores(s: dict) -> str:
  """One human-readable block: every sample score beside its floor, with the sample count and reference."""
  lines = [f"{s['num_samples']} samples vs the {s['reference']}; classifier test accuracy "
           f"{100 * s['classifier_test_accuracy']:.2f}%",
           f"  Frechet distance   samples {s['sample_fd']:.3f}   real floor {s['real_fd_floor']:.3f}"
           + (f"   tokenizer reconstructions {s['recon_fd']:.3f}" if "recon_fd" in s else ""),
           f"  precision          samples {s['precision']:.3f}   real floor {s['real_precision_floor']:.3f}",
           f"  recall             samples {s['recall']:.3f}   real floor {s['real_recall_floor']:.3f}"]
  if "class_accuracy" in s:
    lines.append(f"  class accuracy     samples {100 * s['class_accuracy']:.1f}%")
  return "\n".join(lines)
