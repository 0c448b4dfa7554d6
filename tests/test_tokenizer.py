"""Tokenizer: encode/decode agree with the forward pass; space-to-depth is an exact inverse pair; bf16 compute."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import tiny_config
from vqgen.images import make_grid
from vqgen.stages import build
from vqgen.tokenizers.conv import depth_to_space, space_to_depth
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
