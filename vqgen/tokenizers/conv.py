"""Convolutional encoder and decoder in the VQGAN / MaskGIT style (residual blocks, GroupNorm, swish).

Encoder: conv_in -> per resolution level [num_res_blocks x ResBlock (each followed by self-attention at the
levels in `attention_levels`), downsampling except at the last level] -> the middle: num_res_blocks x ResBlock
(VQGAN's self-attention after the first when `mid_attention`) -> GroupNorm, activation -> 1x1 conv to the
quantizer's channels. Downsampling: a stride-2 4x4 conv (VQGAN) or 2x2 average pooling (MaskGIT's
conv_downsample=False). Decoder: the mirror image, upsampling by nearest-neighbour x2 followed by a 3x3 conv.
Activation: swish (VQGAN, MaskGIT), relu or gelu.
Self-attention (VQGAN's AttnBlock): x + proj(softmax(q k^T / sqrt(C)) v) over all positions, one head, with q, k,
v 1x1 convolutions of GroupNorm(x).
With channel_multipliers=(1, 2, 2) a 28x28 image becomes a 7x7 grid of codes.

`patch_size` p > 1 folds p x p pixel patches into channels first (space-to-depth) and unfolds them at the end
of the decoder: the networks then never run at full resolution, which is most of the cost on a CPU. Total
downsampling is p * 2^(len(channel_multipliers) - 1).

Parameters carry logical axis names (`channels_in`, `channels_out`) that config rules map onto the mesh.
"""

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

KERNEL_AXES = (None, None, "channels_in", "channels_out")


def conv(cin: int, cout: int, kernel: int, *, rngs: nnx.Rngs, stride: int = 1, dtype=jnp.float32,
         padding="SAME", use_bias: bool = True, kernel_init=nnx.initializers.lecun_normal()) -> nnx.Conv:
  return nnx.Conv(cin, cout, (kernel, kernel), strides=(stride, stride), padding=padding, dtype=dtype,
                  param_dtype=jnp.float32, rngs=rngs, use_bias=use_bias,
                  kernel_init=nnx.with_partitioning(kernel_init, KERNEL_AXES),
                  bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("channels_out",)))


def group_norm(channels: int, groups: int, *, rngs: nnx.Rngs, dtype=jnp.float32) -> nnx.GroupNorm:
  return nnx.GroupNorm(channels, num_groups=min(groups, channels), epsilon=1e-6, dtype=dtype,
                       param_dtype=jnp.float32, rngs=rngs,
                       scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), ("channels_out",)),
                       bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("channels_out",)))


ACTIVATIONS = {"swish": nnx.swish, "relu": nnx.relu, "gelu": nnx.gelu}
DOWNSAMPLES = ("conv", "avgpool")


class ResBlock(nnx.Module):
  """x + conv(act(norm(conv(act(norm(x)))))), with a 1x1 conv on the skip when channels change."""

  def __init__(self, cin: int, cout: int, groups: int, *, rngs: nnx.Rngs, dtype=jnp.float32,
               activation: str = "swish"):
    self.norm1 = group_norm(cin, groups, rngs=rngs, dtype=dtype)
    self.conv1 = conv(cin, cout, 3, rngs=rngs, dtype=dtype)
    self.norm2 = group_norm(cout, groups, rngs=rngs, dtype=dtype)
    self.conv2 = conv(cout, cout, 3, rngs=rngs, dtype=dtype)
    self.skip = conv(cin, cout, 1, rngs=rngs, dtype=dtype) if cin != cout else None
    self.act = ACTIVATIONS[activation]

  def __call__(self, x):
    h = self.conv1(self.act(self.norm1(x)))
    h = self.conv2(self.act(self.norm2(h)))
    return (self.skip(x) if self.skip is not None else x) + h


class AttnBlock(nnx.Module):
  """VQGAN's single-head spatial self-attention with a residual connection (module docstring)."""

  def __init__(self, channels: int, groups: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
    self.norm = group_norm(channels, groups, rngs=rngs, dtype=dtype)
    self.qkv = conv(channels, 3 * channels, 1, rngs=rngs, dtype=dtype)
    self.proj = conv(channels, channels, 1, rngs=rngs, dtype=dtype)

  def __call__(self, x):
    b, h, w, c = x.shape
    q, k, v = jnp.split(self.qkv(self.norm(x)).reshape(b, h * w, 3 * c), 3, axis=-1)
    logits = jnp.einsum("bqc,bkc->bqk", q, k).astype(jnp.float32) / jnp.sqrt(c)
    out = jnp.einsum("bqk,bkc->bqc", jax.nn.softmax(logits, -1).astype(v.dtype), v)
    return x + self.proj(out.reshape(b, h, w, c))


def space_to_depth(x, p: int):
  """[B, H, W, C] -> [B, H/p, W/p, p*p*C]."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // p, w // p, p * p * c)


def depth_to_space(x, p: int):
  """Inverse of space_to_depth."""
  b, h, w, c = x.shape
  x = x.reshape(b, h, w, p, p, c // (p * p)).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h * p, w * p, c // (p * p))


def _stack(cin, cout, n, groups, rngs, dtype, activation, attention: bool, mid: bool = False):
  """n ResBlocks; with `attention`, each followed by an AttnBlock; with `mid`, one AttnBlock after the first."""
  layers = []
  for i in range(n):
    layers.append(ResBlock(cin if i == 0 else cout, cout, groups, rngs=rngs, dtype=dtype, activation=activation))
    if attention or (mid and i == 0):
      layers.append(AttnBlock(cout, groups, rngs=rngs, dtype=dtype))
  return nnx.List(layers)


class Encoder(nnx.Module):
  """Images [B, H, W, C] in [-1, 1] -> latents [B, H / 2^(levels-1), W / 2^(levels-1), out_dim]."""

  def __init__(self, in_channels: int, out_dim: int, channels: int, channel_multipliers: Sequence[int],
               num_res_blocks: int, norm_groups: int, *, patch_size: int = 1, attention_levels: Sequence[int] = (),
               mid_attention: bool = False, activation: str = "swish", downsample: str = "conv",
               rngs: nnx.Rngs, dtype=jnp.float32):
    _check(activation, downsample, attention_levels, len(channel_multipliers))
    widths = [channels * m for m in channel_multipliers]
    self.patch_size, self.downsample, self.act = patch_size, downsample, ACTIVATIONS[activation]
    self.conv_in = conv(in_channels * patch_size**2, widths[0], 3, rngs=rngs, dtype=dtype)
    blocks, downs, cur = [], [], widths[0]
    for i, width in enumerate(widths):
      blocks.append(_stack(cur, width, num_res_blocks, norm_groups, rngs, dtype, activation, i in attention_levels))
      cur = width
      if i < len(widths) - 1:
        downs.append(conv(cur, cur, 4, stride=2, rngs=rngs, dtype=dtype) if downsample == "conv" else None)
    self.blocks, self.downs = nnx.List(blocks), nnx.List(downs)
    self.mid = _stack(cur, cur, num_res_blocks, norm_groups, rngs, dtype, activation, False, mid_attention)
    self.norm_out = group_norm(cur, norm_groups, rngs=rngs, dtype=dtype)
    self.conv_out = conv(cur, out_dim, 1, rngs=rngs, dtype=dtype)

  def __call__(self, x):
    h = self.conv_in(space_to_depth(x, self.patch_size) if self.patch_size > 1 else x)
    for i, stack in enumerate(self.blocks):
      for block in stack:
        h = block(h)
      if i < len(self.downs):
        h = self.downs[i](h) if self.downsample == "conv" else nnx.avg_pool(h, (2, 2), (2, 2))
    for block in self.mid:
      h = block(h)
    return self.conv_out(self.act(self.norm_out(h)))


def _check(activation, downsample, attention_levels, levels):
  if activation not in ACTIVATIONS:
    raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}.")
  if downsample not in DOWNSAMPLES:
    raise ValueError(f"downsample must be one of {DOWNSAMPLES}, got {downsample!r}.")
  if any(not 0 <= a < levels for a in attention_levels):
    raise ValueError(f"attention_levels {tuple(attention_levels)} must index the {levels} resolution levels.")


class Decoder(nnx.Module):
  """Latents [B, h, w, in_dim] -> images [B, h * 2^(levels-1), w * 2^(levels-1), out_channels] (unbounded).
  `attention_levels` index the encoder's levels (level 0 = full resolution)."""

  def __init__(self, in_dim: int, out_channels: int, channels: int, channel_multipliers: Sequence[int],
               num_res_blocks: int, norm_groups: int, *, patch_size: int = 1, attention_levels: Sequence[int] = (),
               mid_attention: bool = False, activation: str = "swish", downsample: str = "conv",
               rngs: nnx.Rngs, dtype=jnp.float32):
    del downsample  # the decoder always upsamples by nearest neighbour + conv
    _check(activation, "conv", attention_levels, len(channel_multipliers))
    widths = [channels * m for m in channel_multipliers]
    self.patch_size, self.act = patch_size, ACTIVATIONS[activation]
    cur = widths[-1]
    self.conv_in = conv(in_dim, cur, 3, rngs=rngs, dtype=dtype)
    self.mid = _stack(cur, cur, num_res_blocks, norm_groups, rngs, dtype, activation, False, mid_attention)
    blocks, ups = [], []
    for i in reversed(range(len(widths))):
      blocks.append(_stack(cur, widths[i], num_res_blocks, norm_groups, rngs, dtype, activation,
                           i in attention_levels))
      cur = widths[i]
      if i > 0:
        ups.append(conv(cur, cur, 3, rngs=rngs, dtype=dtype))
    self.blocks, self.ups = nnx.List(blocks), nnx.List(ups)
    self.norm_out = group_norm(cur, norm_groups, rngs=rngs, dtype=dtype)
    self.conv_out = conv(cur, out_channels * patch_size**2, 3, rngs=rngs, dtype=dtype)

  def features(self, z):
    """Everything before the last layer: the activations `last_layer` maps to pixels."""
    h = self.conv_in(z)
    for block in self.mid:
      h = block(h)
    for i, stack in enumerate(self.blocks):
      for block in stack:
        h = block(h)
      if i < len(self.ups):
        b, hh, ww, c = h.shape
        h = self.ups[i](jax.image.resize(h, (b, 2 * hh, 2 * ww, c), "nearest"))
    return self.act(self.norm_out(h))

  @property
  def last_layer(self) -> nnx.Module:
    """The layer whose gradients set VQGAN's adaptive weight."""
    return self.conv_out

  def to_pixels(self, out):
    """The last layer's output -> images (unfolding the patches)."""
    return depth_to_space(out, self.patch_size) if self.patch_size > 1 else out

  def __call__(self, z):
    return self.to_pixels(self.last_layer(self.features(z)))
