"""Scores of generated Fashion-MNIST images by two judges, always beside their floors.

The judges are feature networks of different kinds: the in-domain classifier (supervised; evaluation/classifier.py)
and the contrastive encoder (self-supervised, SimCLR; evaluation/contrastive.py). Each judge's features are divided
by their standard deviation over the reference split (floored at a third of the median feature's), so that no
feature's scale outweighs the others (a fixed linear map per judge; features constant on the reference are
dropped). Both pass the degradation ladder
(experiments/degradation_ladder.py). For N samples, per judge (keys suffixed `_contrastive` for the second):
  sample FD      Frechet distance(samples, the whole test split)
  real floor     Frechet distance(N training images, the test split): what a perfect generator would score at
                 this sample count (FD is biased upward at small N)
  recon FD       Frechet distance(tokenizer reconstructions of the same N training images, the test split): the
                 best a prior over this tokenizer's codes can expect
  precision / recall (k = 3) against the first N test images, with the same floor for real training images
and, once: class accuracy of class-conditional samples under the classifier (and the classifier's own test
accuracy); with a tokenizer, the reconstructions' PSNR and LPIPS-style distance (the contrastive encoder's maps).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vqgen.evaluation.classifier import batched_apply
from vqgen.evaluation.frechet import feature_frechet_distance, precision_recall
from vqgen.tokenizers.perceptual import lpips_distance


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


JUDGES = ("classifier", "contrastive")


def judge_key(name: str, judge: str) -> str:
  """The scores' key of metric `name` by `judge`: the classifier's keys are plain (sample_fd), the others' suffixed
  (sample_fd_contrastive)."""
  return name if judge == JUDGES[0] else f"{name}_{judge}"


class Judge:
  """A feature network's view of images: `network.features` divided by their standard deviation over the
  reference images, floored at a third of the median feature's (STD_FLOOR), and features constant there (dead
  units) dropped. `reference` holds the reference's own features.

  Without the floor a unit that fires on a handful of images gets a huge weight and the real floor swings with
  the draw: the classifier's floor over three draws of 1000 images was 8.2 +- 3.9 unfloored, 3.5 +- 0.4 floored."""

  STD_FLOOR = 1 / 3

  def __init__(self, network, reference_images: np.ndarray):
    features = applied(network, lambda net, x: net.features(x))
    self._raw = lambda x: np.asarray(features(x), np.float64)
    raw = self._raw(reference_images)
    std = raw.std(0)
    live = std > 1e-6 * std.max()
    floor = self.STD_FLOOR * np.median(std[live])
    self.scale = np.where(live, 1.0 / np.maximum(std, floor), 0.0)
    self.reference = raw * self.scale

  def __call__(self, images: np.ndarray) -> np.ndarray:
    return self._raw(images) * self.scale


def applied(network, fn, batch_size: int = 1000):
  """images -> numpy fn(network, images), jitted once and run over fixed-size batches."""
  graphdef, state = nnx.split(network)
  jitted = jax.jit(lambda s, x: fn(nnx.merge(graphdef, s), x))
  return lambda images: batched_apply(lambda b: jitted(state, b), images, batch_size)


def lpips_of(encoder):
  """(x, y) -> the mean LPIPS-style distance (tokenizers/perceptual.py, uniform channel weights) between two image
  sets on the encoder's feature maps."""
  graphdef, state = nnx.split(encoder)
  distance = jax.jit(lambda s, x, y: lpips_distance(nnx.merge(graphdef, s).maps(x), nnx.merge(graphdef, s).maps(y)))
  return lambda x, y: float(np.mean(np.concatenate(
      [np.asarray(distance(state, x[i:i + 500], y[i:i + 500])) for i in range(0, len(x), 500)])))


class SampleScorer:
  """Holds the judges and the reference features; `score(images, labels)` for any number of sample sets.

  `test_images` are the reference set, `train_images` (in the order to draw from) give the real floor, and the
  tokenizer, when given, the reconstruction distance; images are float [N, 28, 28, 1] in [0, 1]. The classifier
  judges and gives class accuracy; the contrastive encoder (optional only for tests of the classifier) is the
  second judge.
  """

  def __init__(self, classifier, classifier_accuracy: float, test_images: np.ndarray, train_images: np.ndarray,
               tokenizer=None, contrastive=None, contrastive_accuracy: float | None = None):
    self.classifier_accuracy = classifier_accuracy
    self.contrastive_accuracy = contrastive_accuracy
    self.judges = {JUDGES[0]: Judge(classifier, test_images)}
    self.features = self.judges[JUDGES[0]]  # the classifier's judged features (images -> [N, D])
    self.test_features = self.judges[JUDGES[0]].reference
    if contrastive is not None:
      self.judges[JUDGES[1]] = Judge(contrastive, test_images)
      self.lpips = lpips_of(contrastive)
    self.logits = applied(classifier, lambda net, x: net(x))
    self.train_images = train_images
    self.tokenizer = tokenizer
    self._floors = {}

  def judged(self, images: np.ndarray, n_reference: int) -> dict:
    """{judge: (Frechet distance to the test split, precision, recall against its first `n_reference` images)}."""
    out = {}
    for name, judge in self.judges.items():
      feats = judge(images)
      out[name] = (feature_frechet_distance(feats, judge.reference),
                   *precision_recall(judge.reference[:n_reference], feats))
    return out

  def reconstruct(self, images: np.ndarray) -> np.ndarray:
    return applied(self.tokenizer, lambda net, x: jnp.clip(net(x)[0], 0.0, 1.0), 500)(images)

  def floors(self, n: int) -> dict:
    """Real-vs-real and reconstruction scores for N images (computed once per N)."""
    if n not in self._floors:
      real = self.train_images[:n]
      out = {}
      for name, (fd, p, r) in self.judged(real, n).items():
        out.update({judge_key("real_fd_floor", name): fd, judge_key("real_precision_floor", name): p,
                    judge_key("real_recall_floor", name): r})
      if self.tokenizer is not None:
        images = self.reconstruct(real)
        out.update({judge_key("recon_fd", name): fd for name, (fd, _, _) in self.judged(images, n).items()})
        out["recon_psnr"] = float(10 * np.log10(1.0 / np.mean(np.square(images - real))))
        if JUDGES[1] in self.judges:
          out["recon_lpips"] = self.lpips(real, images)
      self._floors[n] = out
    return self._floors[n]

  def score(self, images: np.ndarray, labels: np.ndarray | None = None) -> dict:
    check_samples(images, labels)
    images = np.asarray(images, np.float32)
    n = len(images)
    out = {}
    for name, (fd, p, r) in self.judged(images, n).items():
      out.update({judge_key("sample_fd", name): fd, judge_key("precision", name): p, judge_key("recall", name): r})
    out.update({**self.floors(n), "num_samples": n,
                "reference": f"test split ({len(self.judges[JUDGES[0]].reference)} images)",
                "classifier_test_accuracy": self.classifier_accuracy})
    if self.contrastive_accuracy is not None:
      out["contrastive_nn_accuracy"] = self.contrastive_accuracy
    if labels is not None:
      out["class_accuracy"] = float(np.mean(np.argmax(self.logits(images), -1) == np.asarray(labels)))
    return out


def format_scores(s: dict) -> str:
  """One human-readable block: every sample score beside its floor, by each judge, with the sample count and the
  reference."""
  accuracy = f"classifier test accuracy {100 * s['classifier_test_accuracy']:.2f}%"
  if "contrastive_nn_accuracy" in s:
    accuracy += f", contrastive encoder 1-NN accuracy {100 * s['contrastive_nn_accuracy']:.2f}%"
  lines = [f"{s['num_samples']} samples vs the {s['reference']}; {accuracy}"]
  for judge in JUDGES:
    key = lambda name: judge_key(name, judge)
    if key("sample_fd") not in s:
      continue
    fd, floor = s[key("sample_fd")], s[key("real_fd_floor")]
    lines += [f"  [{judge}]",
              f"  Frechet distance   samples {fd:.3f} ({fd / floor:.1f}x the floor)   real floor {floor:.3f}"
              + (f"   tokenizer reconstructions {s[key('recon_fd')]:.3f} ({s[key('recon_fd')] / floor:.1f}x)"
                 if key("recon_fd") in s else ""),
              f"  precision          samples {s[key('precision')]:.3f}   real floor {s[key('real_precision_floor')]:.3f}",
              f"  recall             samples {s[key('recall')]:.3f}   real floor {s[key('real_recall_floor')]:.3f}"]
  if "recon_psnr" in s:
    lines.append(f"  reconstructions    PSNR {s['recon_psnr']:.2f} dB" +
                 (f", LPIPS-style distance {s['recon_lpips']:.4f} (contrastive encoder)" if "recon_lpips" in s else ""))
  if "class_accuracy" in s:
    lines.append(f"  class accuracy     samples {100 * s['class_accuracy']:.1f}%")
  return "\n".join(lines)
