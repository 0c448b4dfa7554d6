"""The self-supervised judge of Fashion-MNIST samples: a small CNN trained by SimCLR (Chen et al. 2020), so its
features are learned without labels and by another objective than the classifier's (evaluation/classifier.py).

Architecture: five conv3x3 -> GroupNorm(8) -> ReLU layers at full resolution (widths w, 2w, 2w, 4w, 4w; the
second and fourth with stride 2: 28 -> 14 -> 7 px), then a global mean = the representation [B, 4w] that the sample
metrics read. Training adds SimCLR's projection head (dense -> ReLU -> dense) and the NT-Xent loss between two
augmented views of each image. The views are translated (+-4 px), flipped, dimmed and cut out, never blurred or
noised: a network taught to ignore blur or noise could not judge it (the degradation ladder checks that it does).
"""

import jax
import jax.numpy as jnp
from flax import nnx

SHIFT = 4          # largest translation of a view, in pixels (zero padding: the images' background is 0)
CUTOUT = 10        # side of the square a view may lose (with probability 1/2)
DIM_RANGE = (0.6, 1.0)  # a view's intensities are scaled by a factor drawn from this range


class ContrastiveEncoder(nnx.Module):

  def __init__(self, width: int = 16, projection_dim: int = 64, *, rngs: nnx.Rngs):
    widths = (width, 2 * width, 2 * width, 4 * width, 4 * width)
    strides = (1, 2, 1, 2, 1)
    cins = (1,) + widths[:-1]
    self.convs = nnx.List([nnx.Conv(cin, cout, (3, 3), strides=s, padding="SAME", rngs=rngs)
                           for cin, cout, s in zip(cins, widths, strides)])
    self.norms = nnx.List([nnx.GroupNorm(c, num_groups=8, rngs=rngs) for c in widths])
    self.hidden = nnx.Linear(widths[-1], 2 * widths[-1], rngs=rngs)
    self.projection = nnx.Linear(2 * widths[-1], projection_dim, rngs=rngs)

  def maps(self, images: jax.Array) -> list:
    """Images [B, 28, 28, 1] in [0, 1] -> the five layers' feature maps (after ReLU)."""
    x, maps = 2.0 * images - 1.0, []
    for conv, norm in zip(self.convs, self.norms):
      x = nnx.relu(norm(conv(x)))
      maps.append(x)
    return maps

  def features(self, images: jax.Array) -> jax.Array:
    """Images [B, 28, 28, 1] in [0, 1] -> representations [B, 4w] (the global mean of the last feature map)."""
    return self.maps(images)[-1].mean((1, 2))

  def __call__(self, images: jax.Array) -> jax.Array:
    """The projection head's output z = g(h) that NT-Xent compares (SimCLR Sec. 2.1)."""
    return self.projection(nnx.relu(self.hidden(self.features(images))))


def augment(key: jax.Array, images: jax.Array) -> jax.Array:
  """One random view of each image [B, H, W, 1]: horizontal flip, translation by up to SHIFT px, intensity scaled
  into DIM_RANGE, and with probability 1/2 a CUTOUT x CUTOUT square set to 0."""
  b, h, w, _ = images.shape
  k_flip, k_shift, k_dim, k_centre, k_cut = jax.random.split(key, 5)
  x = jnp.where(jax.random.bernoulli(k_flip, 0.5, (b, 1, 1, 1)), images[:, :, ::-1], images)
  padded = jnp.pad(x, ((0, 0), (SHIFT, SHIFT), (SHIFT, SHIFT), (0, 0)))
  dy, dx = jax.random.randint(k_shift, (2, b), 0, 2 * SHIFT + 1)
  x = jax.vmap(lambda im, y, z: jax.lax.dynamic_slice(im, (y, z, 0), (h, w, im.shape[-1])))(padded, dy, dx)
  x = x * jax.random.uniform(k_dim, (b, 1, 1, 1), minval=DIM_RANGE[0], maxval=DIM_RANGE[1])
  cy, cx = jax.random.randint(k_centre, (2, b, 1, 1), 0, max(h, w))
  rows, cols = jnp.arange(h)[None, :, None], jnp.arange(w)[None, None, :]
  hole = (jnp.abs(rows - cy) < CUTOUT // 2) & (jnp.abs(cols - cx) < CUTOUT // 2)
  hole = hole & jax.random.bernoulli(k_cut, 0.5, (b, 1, 1))
  return jnp.where(hole[..., None], 0.0, x)


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float) -> jax.Array:
  """SimCLR's NT-Xent (eq. 1), averaged over all 2B anchors: -log softmax over the 2B - 1 others of the cosine
  similarity / temperature, at the other view of the same image."""
  z = jnp.concatenate([z1, z2]).astype(jnp.float32)
  z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
  n = len(z1)
  logits = z @ z.T / temperature
  logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)  # an anchor is not its own candidate
  positive = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
  return jnp.mean(jax.nn.logsumexp(logits, -1) - logits[jnp.arange(2 * n), positive])
