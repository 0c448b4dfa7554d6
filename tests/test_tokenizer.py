"""Tokenizer: encode/decode agree with the forward pass; space-to-depth is an exact inverse pair; bf16 compute."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import tiny_config
from vqgen import config as config_lib
from vqgen.images import make_grid
from vqgen.stages import build
from vqgen.tokenizers.conv import AttnBlock, depth_to_space, space_to_depth
from vqgen.tokenizers.losses import tokenizer_losses


@pytest.mark.parametrize("patch_size, mults", [(1, (1, 2, 2)), (4, (1,)), (2, (1, 2))])
def test_encode_decode_match_forward(patch_size, mults):
  config = tiny_config(**{"model.patch_size": patch_size, "model.channel_multipliers": mults})
  model = build.tokenizer(config, nnx.Rngs(0))
  images = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1))
  recon, q = model(images, train=False)
  indices = model.encode(images)
  assert indices.shape == (3, 7, 7) and indices.dtype == jnp.int32
  np.testing.assert_array_equal(np.asarray(indices), np.asarray(q.indices))
  np.testing.assert_allclose(np.asarray(model.decode(indices)), np.asarray(recon), atol=1e-5)
  assert recon.shape == images.shape


def test_space_to_depth_round_trip():
  x = jax.random.normal(jax.random.key(0), (2, 8, 12, 3))
  y = space_to_depth(x, 4)
  assert y.shape == (2, 2, 3, 48)
  np.testing.assert_array_equal(np.asarray(depth_to_space(y, 4)), np.asarray(x))
  # Channel block (i, j) of output pixel (0, 0) is input pixel (i, j): a patch is folded, not shuffled.
  np.testing.assert_array_equal(np.asarray(y[0, 0, 0].reshape(4, 4, 3)), np.asarray(x[0, :4, :4]))


def test_bfloat16_compute_keeps_float32_outputs():
  config = tiny_config(**{"model.compute_dtype": "bfloat16"})
  model = build.tokenizer(config, nnx.Rngs(0))
  images = jax.random.uniform(jax.random.key(1), (2, 28, 28, 1))
  recon, q = model(images)
  assert recon.dtype == jnp.float32 and q.quantized.dtype == jnp.float32 and q.indices.dtype == jnp.int32
  assert model.encoder.conv_in.kernel[...].dtype == jnp.float32


def test_losses_closed_form():
  x = jnp.zeros((2, 4, 4, 1))
  y = jnp.full((2, 4, 4, 1), 0.5)
  assert float(tokenizer_losses(x, y, {}, reconstruction="l2")["reconstruction"]) == 0.25
  losses = tokenizer_losses(x, y, {"commitment": 1.0}, reconstruction="l1", reconstruction_weight=2.0)
  assert losses == {"reconstruction": 1.0, "commitment": 1.0}


def test_make_grid_layout():
  images = np.stack([np.full((2, 2, 1), v) for v in (0.0, 0.5, 1.0)])
  grid = make_grid(images, rows=1, padding=1, pad_value=0.25)
  assert grid.shape == (4, 10, 1)
  assert grid[1, 1, 0] == 0.0 and grid[1, 4, 0] == 0.5 and grid[1, 7, 0] == 1.0 and grid[0, 0, 0] == 0.25


def test_attention_block_equals_a_direct_computation():
  """VQGAN's AttnBlock: x + proj(softmax(q k^T / sqrt(C)) v), q/k/v 1x1 convs of GroupNorm(x)."""
  block = AttnBlock(8, 4, rngs=nnx.Rngs(0))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 3, 8)), jnp.float32)
  h = np.asarray(block.norm(x)).reshape(2, 9, 8)
  w, b = np.asarray(block.qkv.kernel[...])[0, 0], np.asarray(block.qkv.bias[...])
  q, k, v = np.split(h @ w + b, 3, axis=-1)
  a = np.exp(q @ k.transpose(0, 2, 1) / np.sqrt(8))
  a /= a.sum(-1, keepdims=True)
  out = (a @ v) @ np.asarray(block.proj.kernel[...])[0, 0] + np.asarray(block.proj.bias[...])
  np.testing.assert_allclose(np.asarray(block(x)), np.asarray(x) + out.reshape(2, 3, 3, 8), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("overrides", [
    {"model.attention_levels": (0,), "model.mid_attention": True, "model.activation": "gelu",
     "model.downsample": "avgpool", "model.patch_size": 2, "model.channel_multipliers": (1, 2)},
    {"model.name": "vit", "model.vit_width": 16, "model.vit_depth": 1, "model.vit_heads": 2},
])
def test_network_variants_round_trip_and_split_at_the_last_layer(overrides):
  """Conv with attention / gelu / average pooling, and the ViT: codes of a 7x7 grid, encode/decode agree with
  the forward pass, and decoder.features -> last_layer -> to_pixels is the decoder."""
  config = tiny_config(**overrides)
  config_lib.validate(config)
  model = build.tokenizer(config, nnx.Rngs(0))
  x = jnp.asarray(np.random.default_rng(1).uniform(size=(2, 28, 28, 1)), jnp.float32)
  recon, q = model(x)
  assert q.indices.shape == (2, 7, 7) and recon.shape == x.shape
  np.testing.assert_allclose(np.asarray(model.decode(model.encode(x))), np.asarray(recon), rtol=1e-5, atol=1e-6)
  d = model.decoder
  np.testing.assert_allclose(np.asarray(d.to_pixels(d.last_layer(d.features(q.quantized)))),
                             np.asarray(d(q.quantized)), rtol=1e-6)
