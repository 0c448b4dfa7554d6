"""Quantizer statistics are the same whether the batch lives on 1 device or is split over 8."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from vqgen.quantizers import BSQ, LFQ, VQ, build_quantizer
from vqgen.train import sharding as sharding_lib

CASES = {
    "vq_ema_dead_codes": lambda: VQ(dim=8, codebook_size=64, learning="ema", dead_code_threshold=0.2,
                                    kmeans_init=True, rngs=nnx.Rngs(0)),
    "vq_rotation_cosine": lambda: VQ(dim=8, codebook_size=64, gradient="rotation", cosine=True,
                                     rngs=nnx.Rngs(0)),
    "lfq_exact": lambda: LFQ(256, dim=8, chunk=64, rngs=nnx.Rngs(0)),
    "bsq": lambda: BSQ(dim=8, num_bits=8, group_size=4, rngs=nnx.Rngs(0)),
    "residual_vq": lambda: build_quantizer("residual", quantizer="vq", num_quantizers=3, dim=8, codebook_size=32,
                                           learning="ema", rngs=nnx.Rngs(0)),
}


def run(make, z, devices):
  mesh = sharding_lib.make_mesh(devices=devices)
  model = make()
  graphdef, state = nnx.split(model)

  @jax.jit
  def step(state, z):
    m = nnx.merge(graphdef, state)
    out = m(z, train=True)
    return out, nnx.state(m)

  z = jax.device_put(z, sharding_lib.batch_sharding(mesh))
  state = jax.device_put(state, sharding_lib.replicated(mesh))
  return jax.device_get(step(state, z))


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_vs_eight_devices(name):
  z = jax.random.normal(jax.random.key(0), (256, 8))
  (out1, state1), (out8, state8) = run(CASES[name], z, jax.devices()[:1]), run(CASES[name], z, jax.devices())
  np.testing.assert_array_equal(out1.indices, out8.indices)
  for key in out1.losses:
    np.testing.assert_allclose(out1.losses[key], out8.losses[key], rtol=1e-5, err_msg=key)
  for key in out1.metrics:
    np.testing.assert_allclose(out1.metrics[key], out8.metrics[key], rtol=1e-5, err_msg=key)
  as_array = lambda x: jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x
  for a, b in zip(jax.tree.leaves(state1), jax.tree.leaves(state8)):  # EMA statistics, codebooks, rng state
    np.testing.assert_allclose(np.asarray(as_array(a), np.float64), np.asarray(as_array(b), np.float64),
                               rtol=1e-5, atol=1e-6)
