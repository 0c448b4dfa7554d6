"""The in-domain feature network for Fashion-MNIST sample metrics: a small CNN classifier (Inception features do not
fit 28x28 grayscale images; REFERENCES.md). It is trained by the generic trainer (`vqgen/stages/classifier.py`,
`python -m vqgen.cli.train_classifier`) and cached; this file holds the model only.

Architecture: 2x2 space-to-depth (28x28x1 -> 14x14x4) -> conv3x3(32) -> ReLU -> conv3x3(32) -> ReLU -> maxpool2 ->
conv3x3(64) -> ReLU -> dense(128) -> ReLU = the features (Frechet distance, precision/recall) -> dropout ->
dense(10). Folding pixels into channels first makes it 3x cheaper per step on a CPU than the same convolutions at
28x28 (41 vs 125 ms at batch 128 on 2 cores), for the same receptive field.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vqgen.tokenizers import space_to_depth

FEATURE_DIM = 128


class Classifier(nnx.Module):

  def __init__(self, num_classes: int = 10, *, dropout: float = 0.3, rngs: nnx.Rngs):
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    conv = lambda cin, cout: nnx.Conv(cin, cout, (3, 3), padding="SAME", rngs=rngs)
    self.conv1, self.conv2, self.conv3 = conv(4, 32), conv(32, 32), conv(32, 64)
    self.fc = nnx.Linear(7 * 7 * 64, FEATURE_DIM, rngs=rngs)
    self.out = nnx.Linear(FEATURE_DIM, num_classes, rngs=rngs)
    self.dropout = dropout

  def features(self, images: jax.Array) -> jax.Array:
    """Images [B, 28, 28, 1] in [0, 1] -> penultimate features [B, 128]."""
    x = space_to_depth(2.0 * images - 1.0, 2)
    x = nnx.relu(self.conv2(nnx.relu(self.conv1(x))))
    x = nnx.relu(self.conv3(nnx.max_pool(x, (2, 2), (2, 2))))
    return nnx.relu(self.fc(x.reshape(len(x), -1)))

  def __call__(self, images, *, dropout_key=None):
    """Class logits; with `dropout_key` (training) the features are dropped out (inverted dropout)."""
    h = self.features(images)
    if dropout_key is not None and self.dropout > 0:
      keep = 1.0 - self.dropout
      h = jnp.where(jax.random.bernoulli(dropout_key, keep, h.shape), h / keep, 0.0)
    return self.out(h)


def batched_apply(fn, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
  """fn over fixed-size batches (the last padded), concatenated as numpy."""
  n = len(images)
  pad = -n % batch_size
  x = np.concatenate([images, np.repeat(images[-1:], pad, 0)]) if pad else images
  return np.concatenate([np.asarray(fn(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])[:n]
