"""The shared transformer's backbone options against their formulas: RMSNorm, SwiGLU (LlamaGen's hidden size) and
2-D rotary positions (LlamaGen's angles; attention scores that depend only on the 2-D offset)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vqgen.nn import transformer as tf


def test_rmsnorm_is_x_over_root_mean_square_times_gain():
  norm = tf.layer_norm(6, rngs=nnx.Rngs(0), dtype=jnp.float32, kind="rmsnorm")
  norm.scale[...] = jnp.arange(1.0, 7.0)
  x = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32) * 3 + 1
  expected = x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-5) * np.arange(1.0, 7.0)
  np.testing.assert_allclose(np.asarray(norm(jnp.asarray(x))), expected, rtol=1e-5)
  assert not hasattr(norm, "bias") or norm.bias is None  # no centring, no bias


def test_swiglu_block_mlp_is_w2_of_silu_w1_times_w3_with_llamagens_hidden_size():
  assert tf.swiglu_hidden(768, 4) == 2048  # LlamaGen-B: find_multiple(int(2 * 4 * 768 / 3), 256)
  assert tf.swiglu_hidden(512, 4) == 1536 and tf.swiglu_hidden(32, 4) == 96
  block = tf.Block(32, 4, 4, False, rngs=nnx.Rngs(0), dtype=jnp.float32, mlp="swiglu")
  for layer in (block.fc1, block.fc2, block.fc3):  # random biases: the formula must place them right
    layer.bias[...] = jax.random.normal(jax.random.key(layer.bias.shape[0]), layer.bias.shape)
  h = np.random.default_rng(1).normal(size=(2, 5, 32)).astype(np.float64)
  w = lambda layer: (np.asarray(layer.kernel[...], np.float64), np.asarray(layer.bias[...], np.float64))
  (w1, b1), (w2, b2), (w3, b3) = w(block.fc1), w(block.fc2), w(block.fc3)
  a = h @ w1 + b1
  expected = (a / (1 + np.exp(-a)) * (h @ w3 + b3)) @ w2 + b2
  np.testing.assert_allclose(np.asarray(block.mlp(jnp.asarray(h, jnp.float32))), expected, rtol=2e-4, atol=2e-5)
  assert w1.shape == (32, 96) and w2.shape == (96, 32)


def test_rope_2d_angles_follow_llamagen_row_then_column_frequencies():
  height, width, head_dim, prefix = 3, 4, 16, 1
  angles = tf.rope_2d(height, width, head_dim, prefix)
  assert angles.shape == (prefix + height * width, head_dim // 2)
  np.testing.assert_array_equal(angles[:prefix], 0)  # the class slot is not turned
  half = head_dim // 2
  for r in range(height):
    for c in range(width):
      row = angles[prefix + r * width + c]  # raster order
      for j in range(half // 2):
        w = 10000.0 ** (-2 * j / half)
        np.testing.assert_allclose(row[j], r * w, rtol=1e-6)
        np.testing.assert_allclose(row[half // 2 + j], c * w, rtol=1e-6)


def test_rotary_scores_depend_only_on_the_2d_offset_and_keep_norms():
  height, width, head_dim = 5, 5, 8
  angles = jnp.asarray(tf.rope_2d(height, width, head_dim, 0))
  q, k = np.random.default_rng(2).normal(size=(2, head_dim)).astype(np.float32)
  at = lambda v, r, c: tf.rotate(jnp.broadcast_to(jnp.asarray(v), (1, 1, 1, head_dim)),
                                 angles[r * width + c][None])[0, 0, 0]
  score = lambda p, s: float(jnp.dot(at(q, *p), at(k, *s)))
  np.testing.assert_allclose(float(jnp.linalg.norm(at(q, 3, 4))), np.linalg.norm(q), rtol=1e-5)
  # The same offset (+1 row, -2 columns) anywhere on the grid gives the same score ...
  same = [score((0, 2), (1, 0)), score((2, 4), (3, 2)), score((3, 3), (4, 1))]
  np.testing.assert_allclose(same, same[0], rtol=1e-4)
  # ... and rows and columns are told apart: (+1, 0) and (0, +1) differ, as do (0, +1) and (0, -1).
  assert abs(score((2, 2), (3, 2)) - score((2, 2), (2, 3))) > 1e-3
  assert abs(score((2, 2), (2, 3)) - score((2, 2), (2, 1))) > 1e-3


def test_llama_options_build_the_right_parameters_and_reject_unknown_names():
  net = tf.Transformer(width=32, depth=1, heads=4, grid=(2, 2), positions="rope2d", norm="rmsnorm", mlp="swiglu",
                       rngs=nnx.Rngs(0))
  params = nnx.state(net, nnx.Param).to_pure_dict()
  assert "positions" not in params and "bias" not in params["norm"] and "fc3" in params["blocks"][0]
  out = net(jax.random.normal(jax.random.key(0), (2, 5, 32)))
  assert out.shape == (2, 5, 32) and bool(jnp.isfinite(out).all())
  for kwargs, word in [({"norm": "batchnorm"}, "norm"), ({"mlp": "relu"}, "mlp"), ({"positions": "rope"}, "positions")]:
    with pytest.raises(ValueError, match=word):
      tf.Transformer(width=32, depth=1, heads=4, grid=(2, 2), rngs=nnx.Rngs(0), **kwargs)
  with pytest.raises(ValueError, match="divisible by 4"):
    tf.Transformer(width=24, depth=1, heads=4, grid=(2, 2), positions="rope2d", rngs=nnx.Rngs(0))
