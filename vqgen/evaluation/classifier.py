"""The in-domain Fashion-MNIST classifier of the sample metrics (Inception features do not fit 28x28 grayscale images;
REFERENCES.md): the supervised one of the two judges (the other, self-supervised: evaluation/contrastive.py). It is
trained by the generic trainer (`vqgen/stages/classifier.py`, `python -m vqgen.cli.train_classifier`) and cached;
this file holds the model only.

Architecture: conv3x3(16) at 28x28 -> ReLU -> maxpool2 -> conv3x3(32) -> ReLU -> conv3x3(32) -> ReLU -> maxpool2 ->
conv3x3(64) -> ReLU -> dense(128) -> ReLU (penultimate) -> dropout -> dense(10).

The judge's features (`features`) are the penultimate activations beside the texture statistics of the first two
layers: the spatial mean and standard deviation of each of their channels (a style representation in the sense
of Gatys et al. 2016, first order). A classifier learns to ignore what does not change the class, pixel noise and
mild blur among it: on its penultimate layer alone, a sigma-0.5 blur of 1000 images scored 2.5x the real floor,
with the statistics of its full-resolution layers 15.8x (experiments/degradation_ladder.py).
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

PENULTIMATE = 128
WIDTHS = (16, 32, 32, 64)
FEATURE_DIM = PENULTIMATE + 2 * (WIDTHS[0] + WIDTHS[1])


class Classifier(nnx.Module):

  def __init__(self, num_classes: int = 10, *, dropout: float = 0.3, rngs: nnx.Rngs):
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
    cins = (1,) + WIDTHS[:-1]
    self.convs = nnx.List([nnx.Conv(cin, cout, (3, 3), padding="SAME", rngs=rngs) for cin, cout in zip(cins, WIDTHS)])
    self.fc = nnx.Linear(7 * 7 * WIDTHS[-1], PENULTIMATE, rngs=rngs)
    self.out = nnx.Linear(PENULTIMATE, num_classes, rngs=rngs)
    self.dropout = dropout

  def penultimate(self, images: jax.Array) -> tuple[jax.Array, list]:
    """Images [B, 28, 28, 1] in [0, 1] -> (penultimate activations [B, 128], the conv layers' ReLU maps)."""
    x, maps = 2.0 * images - 1.0, []
    for i, conv in enumerate(self.convs):
      if i in (1, 3):
        x = nnx.max_pool(x, (2, 2), (2, 2))
      x = nnx.relu(conv(x))
      maps.append(x)
    return nnx.relu(self.fc(x.reshape(len(x), -1))), maps

  def features(self, images: jax.Array) -> jax.Array:
    """The judge's features [B, FEATURE_DIM]: penultimate activations, then the spatial mean and standard deviation
    of every channel of the first two conv layers."""
    h, maps = self.penultimate(images)
    return jnp.concatenate([h] + [jnp.concatenate([m.mean((1, 2)), m.std((1, 2))], -1) for m in maps[:2]], -1)

  def __call__(self, images, *, dropout_key=None):
    """Class logits; with `dropout_key` (training) the features are dropped out (inverted dropout)."""
    h, _ = self.penultimate(images)
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
