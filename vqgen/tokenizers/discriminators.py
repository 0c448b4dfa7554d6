"""The two discriminators of VQGAN-class tokenizer training. Both take images in [-1, 1] and return logits.

PatchGAN (Isola et al. 2017, as VQGAN uses it): conv4x4/2 -> LeakyReLU(0.2), then `num_layers - 1` x
[conv4x4/2 -> norm -> LeakyReLU], conv4x4/1 -> norm -> LeakyReLU, conv4x4/1 -> one logit per patch
[B, h, w, 1]. Widths channels * min(2^n, 8); padding 1 on every side; weights N(0, 0.02) as in VQGAN.
  norm: VQGAN uses BatchNorm. Under a sharded step running statistics per device are the trap (each device
  would normalise by its own shard, so 8 devices != 1). vqgen offers
    'group' (default): GroupNorm(32), per image: no batch coupling at all, identical on any mesh;
    'batch': batch statistics of each call, computed over the GLOBAL batch inside the jitted step (so 8 devices
             == 1 device), no running averages (the discriminator is never run in inference mode);
    'none'.
StyleGAN (Karras et al. 2020; the discriminator of MaskGIT and MaskBit): conv3x3 -> LeakyReLU, then residual
blocks that each halve the resolution:
  y = LReLU(conv3x3(blur_down(LReLU(conv3x3(x)))));   skip = conv1x1(blur_down(x));   out = (y + skip) / sqrt(2)
with blur_down a depthwise [1, 3, 3, 1] x [1, 3, 3, 1] / 64 filter at stride 2 (Zhang 2019's anti-aliasing), then
conv3x3 -> LReLU -> flatten -> dense -> LReLU -> dense(1): one logit per image [B, 1]. Xavier-uniform weights.
"""

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from vqgen.tokenizers.conv import conv, group_norm

NORMS = ("group", "batch", "none")
DISCRIMINATORS = ("patchgan", "stylegan")
leaky_relu = lambda x: jax.nn.leaky_relu(x, 0.2)


class BatchStatNorm(nnx.Module):
  """(x - mean) / sqrt(var + eps) * scale + bias, with mean/var over every axis but channels of THIS call."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs, eps: float = 1e-5):
    del rngs
    self.scale = nnx.Param(nnx.with_partitioning(jnp.ones, ("channels_out",))((channels,)))
    self.bias = nnx.Param(nnx.with_partitioning(jnp.zeros, ("channels_out",))((channels,)))
    self.eps = eps

  def __call__(self, x):
    axes = tuple(range(x.ndim - 1))
    mean, var = jnp.mean(x, axes), jnp.var(x, axes)
    return (x - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]


class PatchGAN(nnx.Module):
  """VQGAN's N-layer PatchGAN: images [B, H, W, C] -> patch logits [B, h, w, 1]."""

  def __init__(self, in_channels: int, *, channels: int = 64, num_layers: int = 3, norm: str = "group",
               rngs: nnx.Rngs):
    if norm not in NORMS:
      raise ValueError(f"PatchGAN norm must be one of {NORMS}, got {norm!r}.")
    if num_layers < 1:
      raise ValueError(f"PatchGAN num_layers must be >= 1, got {num_layers}.")
    init = nnx.initializers.normal(0.02)
    layer = lambda cin, cout, stride, bias: conv(cin, cout, 4, stride=stride, padding=((1, 1), (1, 1)),
                                                 use_bias=bias, kernel_init=init, rngs=rngs)
    make_norm = {"group": lambda c: group_norm(c, 32, rngs=rngs), "batch": lambda c: BatchStatNorm(c, rngs=rngs),
                 "none": lambda c: None}[norm]
    widths = [channels * min(2 ** n, 8) for n in range(num_layers + 1)]
    self.conv_in = layer(in_channels, widths[0], 2, True)
    self.convs = nnx.List([layer(widths[n - 1], widths[n], 2 if n < num_layers else 1, norm == "none")
                           for n in range(1, num_layers + 1)])
    self.norms = nnx.List([make_norm(w) for w in widths[1:]])
    self.conv_out = layer(widths[-1], 1, 1, True)

  def __call__(self, x):
    h = leaky_relu(self.conv_in(x))
    for layer, norm in zip(self.convs, self.norms):
      h = layer(h)
      h = leaky_relu(norm(h) if norm is not None else h)
    return self.conv_out(h)


def blur_downsample(x):
  """Depthwise [1, 3, 3, 1]^2 / 64 low-pass at stride 2, 'SAME' padding: [B, H, W, C] -> [B, ceil(H/2), ...]."""
  taps = jnp.array([1.0, 3.0, 3.0, 1.0], x.dtype)
  kernel = (taps[:, None] * taps[None, :]) / 64.0
  c = x.shape[-1]
  return jax.lax.conv_general_dilated(
      x, jnp.tile(kernel[:, :, None, None], (1, 1, 1, c)), (2, 2), "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)


class StyleGANBlock(nnx.Module):
  """The residual down-sampling block of the module docstring."""

  def __init__(self, cin: int, cout: int, *, rngs: nnx.Rngs):
    init = nnx.initializers.xavier_uniform()
    self.conv1 = conv(cin, cin, 3, kernel_init=init, rngs=rngs)
    self.conv2 = conv(cin, cout, 3, kernel_init=init, rngs=rngs)
    self.skip = conv(cin, cout, 1, use_bias=False, kernel_init=init, rngs=rngs)

  def __call__(self, x):
    y = leaky_relu(self.conv2(blur_downsample(leaky_relu(self.conv1(x)))))
    return (y + self.skip(blur_downsample(x))) / math.sqrt(2.0)


class StyleGANDiscriminator(nnx.Module):
  """Images [B, image_size, image_size, C] -> logits [B, 1]. `channels[0]` is the input conv's width; each further
  entry adds a block (halving the resolution) of that width."""

  def __init__(self, in_channels: int, image_size: int, *, channels: Sequence[int] = (64, 128, 256, 256),
               rngs: nnx.Rngs):
    if len(channels) < 2:
      raise ValueError(f"StyleGAN discriminator channels need the input width and >= 1 block, got {channels}.")
    init = nnx.initializers.xavier_uniform()
    self.conv_in = conv(in_channels, channels[0], 3, kernel_init=init, rngs=rngs)
    self.blocks = nnx.List([StyleGANBlock(a, b, rngs=rngs) for a, b in zip(channels[:-1], channels[1:])])
    size = image_size
    for _ in channels[1:]:
      size = -(-size // 2)
    self.conv_out = conv(channels[-1], channels[-1], 3, kernel_init=init, rngs=rngs)
    self.fc = nnx.Linear(size * size * channels[-1], channels[-1], kernel_init=init, rngs=rngs)
    self.out = nnx.Linear(channels[-1], 1, kernel_init=init, rngs=rngs)

  def __call__(self, x):
    h = leaky_relu(self.conv_in(x))
    for block in self.blocks:
      h = block(h)
    h = leaky_relu(self.conv_out(h))
    return self.out(leaky_relu(self.fc(h.reshape(len(h), -1))))
