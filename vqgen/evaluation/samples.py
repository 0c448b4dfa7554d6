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

from vqgen import data as data_lib
from vqgen.evaluation import classifier as classifier_lib
from vqgen.evaluation.frechet import feature_frechet_distance, precision_recall


class SampleScorer:
  """Holds the classifier and the reference features; `score(images, labels)` for any number of sample sets."""

  def __init__(self, tokenizer=None, tokenizer_config=None, classifier_dir: str | None = None, seed: int = 0):
    if tokenizer_config is not None and tokenizer_config.data.name != "fashion_mnist":
      raise ValueError(f"Sample metrics use a Fashion-MNIST classifier; the tokenizer was trained on "
                       f"{tokenizer_config.data.name!r}. Set config.evaluation.metrics=False.")
    data_dir = (tokenizer_config.data.data_dir or None) if tokenizer_config is not None else None
    self.model, self.classifier_accuracy = classifier_lib.load_or_train(classifier_dir, data_dir=data_dir)
    graphdef, state = nnx.split(self.model)
    features = jax.jit(lambda s, x: nnx.merge(graphdef, s).features(x))
    logits = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    self.features = lambda x: classifier_lib.batched_apply(lambda b: features(state, b), x)
    self.logits = lambda x: classifier_lib.batched_apply(lambda b: logits(state, b), x)
    test = data_lib.FashionMNIST("test", data_dir)
    train = data_lib.FashionMNIST("train", data_dir)
    self.test_features = self.features(test.images.astype(np.float32) / 255.0)
    self.train_images = train.images[np.random.default_rng(seed).permutation(len(train))].astype(np.float32) / 255
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
        images = classifier_lib.batched_apply(lambda b: recon(state, b), self.train_images[:n], 500)
        out["recon_fd"] = feature_frechet_distance(self.features(images), self.test_features)
      self._floors[n] = out
    return self._floors[n]

  def score(self, images: np.ndarray, labels: np.ndarray | None = None) -> dict:
    images = np.asarray(images, np.float32)
    n = len(images)
    if n < 2:
      raise ValueError("Sample metrics need at least 2 samples (a covariance), better >= 1000.")
    feats = self.features(images)
    p, r = precision_recall(self.test_features[:n], feats)
    out = {"sample_fd": feature_frechet_distance(feats, self.test_features), "precision": p, "recall": r,
           **self.floors(n), "num_samples": n, "reference": f"test split ({len(self.test_features)} images)",
           "classifier_test_accuracy": self.classifier_accuracy}
    if labels is not None:
      out["class_accuracy"] = float(np.mean(np.argmax(self.logits(images), -1) == np.asarray(labels)))
    return out


def score_samples(images, labels, tokenizer=None, tokenizer_config=None, classifier_dir=None) -> dict:
  return SampleScorer(tokenizer, tokenizer_config, classifier_dir).score(images, labels)


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
