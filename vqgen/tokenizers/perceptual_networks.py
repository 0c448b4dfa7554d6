"""Feature networks for the perceptual loss: `features(images in [0, 1]) -> [feature maps]`, `channel_weights`.

VGG16LPIPS   LPIPS's standard network: VGG16's `features` up to relu5_3, tapped after relu1_2, relu2_2, relu3_3,
             relu4_3, relu5_3, with LPIPS's input scaling and v0.1's per-channel linear weights. Weights come from
             local files with the PyTorch names (torchvision `features.<i>.weight|bias` or LPIPS `net.slice<s>.<i>.*`,
             and `lin<l>.model.1.weight`): the public .pth files themselves or an .npz,
             `load_lpips_vgg16("vgg16-397923af.pth,vgg.pth")`. vqgen never downloads them.
FashionPerceptual  vqgen's own network for 28x28 grayscale images, trained as a Fashion-MNIST classifier
             (stages/classifier.py, `model.architecture='perceptual'`). It is NOT the network that scores samples
             (evaluation/classifier.py): another architecture (VGG-style stacks of two convs per scale, average
             pooling and a global mean against single convs, max pooling and a dense feature layer) and another
             training seed, so a loss trained on it cannot game that judge (nor the other, contrastive one). Uniform channel weights (LPIPS's "baseline" variant: no human judgements
             to calibrate them on).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vqgen.tokenizers.pth import load_weights, weight_array

LPIPS_FIX = ("Fix: download torchvision's vgg16-397923af.pth and LPIPS v0.1's vgg.pth again, or write the .npz of "
             "both again (docs/perceptual.md).")
# torchvision vgg16.features: conv layer indices (each followed by ReLU) and the taps LPIPS reads (after relu).
VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
VGG16_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
VGG16_POOL_AFTER = (2, 7, 14, 21)   # conv index after whose relu a 2x2 max-pool follows (before the next conv)
VGG16_TAPS = (2, 7, 14, 21, 28)     # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
LPIPS_SLICE_START = (0, 4, 9, 16, 23)  # LPIPS's slice<s> holds features[start_s : start_{s+1}]
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
MIN_VGG16_SIZE = 16                 # four 2x2 pools before relu5_3


class VGG16LPIPS(nnx.Module):
  """LPIPS(vgg) v0.1 features; gray images are repeated to 3 channels."""

  def __init__(self, *, rngs: nnx.Rngs):
    cin, convs = 3, []
    for width in VGG16_WIDTHS:
      convs.append(nnx.Conv(cin, width, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs))
      cin = width
    self.convs = nnx.List(convs)
    self.lins = nnx.List([nnx.Param(jnp.ones((VGG16_WIDTHS[VGG16_CONVS.index(t)],))) for t in VGG16_TAPS])

  @property
  def channel_weights(self):
    return [w[...] for w in self.lins]

  def features(self, images: jax.Array) -> list:
    if min(images.shape[1:3]) < MIN_VGG16_SIZE:
      raise ValueError(f"VGG16 LPIPS needs images of at least {MIN_VGG16_SIZE}x{MIN_VGG16_SIZE} pixels, got "
                       f"{images.shape[1]}x{images.shape[2]}.")
    x = images if images.shape[-1] == 3 else jnp.repeat(images, 3, axis=-1)
    x = ((2.0 * x - 1.0) - jnp.asarray(LPIPS_SHIFT)) / jnp.asarray(LPIPS_SCALE)
    taps = []
    for index, layer in zip(VGG16_CONVS, self.convs):
      x = nnx.relu(layer(x))
      if index in VGG16_TAPS:
        taps.append(x)
      if index in VGG16_POOL_AFTER:
        x = nnx.max_pool(x, (2, 2), (2, 2))
    return taps


def _torch_key(arrays: dict, index: int, what: str) -> str:
  """The name of features[index].<what> in either naming (torchvision or LPIPS's slices)."""
  plain = f"features.{index}.{what}"
  if plain in arrays:
    return plain
  s = max(i for i, start in enumerate(LPIPS_SLICE_START) if start <= index)
  return f"net.slice{s + 1}.{index}.{what}"


def read_weight_files(paths: str) -> dict:
  """{PyTorch name: array} of one or more comma-separated local files, each a .npz or a PyTorch .pth/.pt
  (read without PyTorch: tokenizers/pth.py); a later file's arrays replace an earlier one's of the same name.
  A truncated, damaged or crafted file raises WeightsFileError (one line: the file, the cause, the fix)."""
  arrays = {}
  for path in [p.strip() for p in paths.split(",") if p.strip()]:
    if not os.path.exists(path):
      raise FileNotFoundError(
          f"Perceptual weights file {path!r} does not exist. vqgen never downloads weights: give torchvision's "
          "VGG16 .pth and LPIPS's v0.1 vgg.pth (comma-separated), or one .npz of both with their PyTorch names "
          "(docs/perceptual.md), or set config.loss.perceptual_network='fashion_mnist'.")
    arrays.update(load_weights(path, LPIPS_FIX))
  return arrays


def load_lpips_vgg16(path: str) -> VGG16LPIPS:
  """VGG16LPIPS with the weights of local files (`read_weight_files`: .npz or .pth, comma-separated), in the
  PyTorch names and layouts (conv [out, in, kh, kw], lin [1, C, 1, 1]). Raises FileNotFoundError for a missing
  file, WeightsFileError naming the file and the unreadable, missing or misshapen array."""
  arrays = read_weight_files(path)
  net = nnx.eval_shape(lambda: VGG16LPIPS(rngs=nnx.Rngs(0)))
  _, state = nnx.split(net)
  pure = state.to_pure_dict()

  def take(key, shape):
    return weight_array(arrays, key, shape, path, f"a VGG16 LPIPS file needs features.<i>.weight/bias (or "
                        f"net.slice<s>.<i>.*) for i in {VGG16_CONVS} and lin0..4.model.1.weight", LPIPS_FIX)

  for i, (index, width) in enumerate(zip(VGG16_CONVS, VGG16_WIDTHS)):
    cin = 3 if i == 0 else VGG16_WIDTHS[i - 1]
    w = take(_torch_key(arrays, index, "weight"), (width, cin, 3, 3))
    pure["convs"][i]["kernel"] = jnp.asarray(w.transpose(2, 3, 1, 0))
    pure["convs"][i]["bias"] = jnp.asarray(take(_torch_key(arrays, index, "bias"), (width,)))
  for l, tap in enumerate(VGG16_TAPS):
    width = VGG16_WIDTHS[VGG16_CONVS.index(tap)]
    pure["lins"][l] = jnp.asarray(take(f"lin{l}.model.1.weight", (1, width, 1, 1)).reshape(width))
  state.replace_by_pure_dict(pure)
  return nnx.merge(nnx.graphdef(net), state)


class FashionPerceptual(nnx.Module):
  """Images [B, 28, 28, 1] in [0, 1]: 3 stages of 2 x (conv3x3 -> ReLU) at 28, 14 and 7 px (widths 16, 32, 64),
  2x2 average pooling between them; the taps are each stage's last ReLU. Head: global mean -> dense(classes)."""

  channel_weights = None

  def __init__(self, num_classes: int = 10, *, rngs: nnx.Rngs):
    widths, cin, convs = (16, 16, 32, 32, 64, 64), 1, []
    for width in widths:
      convs.append(nnx.Conv(cin, width, (3, 3), padding="SAME", rngs=rngs))
      cin = width
    self.convs = nnx.List(convs)
    self.out = nnx.Linear(widths[-1], num_classes, rngs=rngs)

  def features(self, images: jax.Array) -> list:
    x, taps = 2.0 * images - 1.0, []
    for i, layer in enumerate(self.convs):
      x = nnx.relu(layer(x))
      if i % 2 == 1:
        taps.append(x)
        if i < len(self.convs) - 1:
          x = nnx.avg_pool(x, (2, 2), (2, 2))
    return taps

  def __call__(self, images, *, dropout_key=None):
    """Class logits (the classifier stage's interface; no dropout)."""
    del dropout_key
    return self.out(jnp.mean(self.features(images)[-1], axis=(1, 2)))
