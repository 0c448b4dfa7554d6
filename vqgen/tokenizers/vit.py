"""ViT encoder and decoder (ViT-VQGAN, Yu et al. 2022): images <-> a grid of low-dimensional latents.

Encoder: p x p patches -> linear embedding -> transformer (pre-norm blocks, vqgen/nn/transformer.py) -> linear
projection to the quantizer's `dim` per patch. Decoder: linear from `dim` -> transformer -> linear to the p*p*C
pixels of each patch, unfolded (depth-to-space). ViT-VQGAN's factorised, l2-normalised codes are the quantizer's
business: VQ(codebook_dim=32, cosine=True) projects to 32 dimensions and matches by cosine (any other quantizer
works too). Positions: learned or fixed 2-D sine-cosine over the patch grid.
The interface matches the conv networks (tokenizers/conv.py): images in [-1, 1], and the decoder's
`features` / `last_layer` / `to_pixels` split used by VQGAN's adaptive weight.
"""

import jax.numpy as jnp
from flax import nnx

from vqgen.nn.transformer import Transformer, dense
from vqgen.tokenizers.conv import depth_to_space, space_to_depth


def patch_transformer(image_size: int, patch_size: int, width: int, depth: int, heads: int, mlp_ratio: int,
                      positions: str, rngs: nnx.Rngs, dtype) -> Transformer:
  """The transformer over the (image_size / patch_size)^2 patch grid, no prefix slot."""
  if image_size % patch_size:
    raise ValueError(f"ViT image_size {image_size} must be divisible by patch_size {patch_size}.")
  return Transformer(width=width, depth=depth, heads=heads, grid=(image_size // patch_size,) * 2, prefix=0,
                     mlp_ratio=mlp_ratio, positions=positions, dtype=dtype, rngs=rngs)


class ViTEncoder(nnx.Module):
  """Images [B, H, W, C] in [-1, 1] -> latents [B, H / p, W / p, out_dim]."""

  def __init__(self, in_channels: int, out_dim: int, *, image_size: int, patch_size: int, width: int, depth: int,
               heads: int, mlp_ratio: int = 4, positions: str = "learned", rngs: nnx.Rngs, dtype=jnp.float32):
    self.transformer = patch_transformer(image_size, patch_size, width, depth, heads, mlp_ratio, positions, rngs,
                                         dtype)
    self.patch_size, self.grid = patch_size, self.transformer.grid
    self.embed = dense(in_channels * patch_size**2, width, ("channels_in", "embed"), rngs=rngs, dtype=dtype)
    self.proj = dense(width, out_dim, ("embed", "channels_out"), rngs=rngs, dtype=dtype)

  def __call__(self, x):
    b = len(x)
    h = self.embed(space_to_depth(x, self.patch_size).reshape(b, -1, x.shape[-1] * self.patch_size**2))
    return self.proj(self.transformer(h)).reshape(b, *self.grid, -1)


class ViTDecoder(nnx.Module):
  """Latents [B, h, w, in_dim] -> images [B, h * p, w * p, out_channels] (unbounded, ~[-1, 1])."""

  def __init__(self, in_dim: int, out_channels: int, *, image_size: int, patch_size: int, width: int, depth: int,
               heads: int, mlp_ratio: int = 4, positions: str = "learned", rngs: nnx.Rngs, dtype=jnp.float32):
    self.transformer = patch_transformer(image_size, patch_size, width, depth, heads, mlp_ratio, positions, rngs,
                                         dtype)
    self.patch_size, self.grid = patch_size, self.transformer.grid
    self.embed = dense(in_dim, width, ("channels_in", "embed"), rngs=rngs, dtype=dtype)
    self.out = dense(width, out_channels * patch_size**2, ("embed", "channels_out"), rngs=rngs, dtype=dtype)

  def features(self, z):
    """Everything before the last layer: the transformer's output per patch [B, h, w, width]."""
    b = len(z)
    return self.transformer(self.embed(z.reshape(b, -1, z.shape[-1]))).reshape(b, *self.grid, -1)

  @property
  def last_layer(self) -> nnx.Module:
    return self.out

  def to_pixels(self, out):
    return depth_to_space(out, self.patch_size)

  def __call__(self, z):
    return self.to_pixels(self.last_layer(self.features(z)))
