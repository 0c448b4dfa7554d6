"""The cost of a step (vqgen/train/cost.py, benchmarks/train_throughput.py): XLA's FLOPs against the analytic
transformer count, SPMD normalisation, memory growing with the batch, and the largest batch within a budget."""

import os
import sys

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from vqgen import config as config_lib
from vqgen.train import cost as cost_lib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.train_throughput import Bench  # noqa: E402

CODES = "64:4x4"  # 64 codes on a 4x4 grid: sequences of 17 tokens
SMALL, LARGE = 16, 32  # batches where the activations outweigh the state


def tiny_prior():
  c = config_lib.prior_config()
  c.network.width, c.network.depth, c.network.heads = 64, 1, 4
  return c


@pytest.fixture(scope="module")
def bench():
  """A tiny MaskGIT prior on one device (the SPMD normalisation is tested on a matmul, below)."""
  return Bench.build(tiny_prior(), CODES, devices=jax.devices()[:1])


def test_xla_flops_match_the_analytic_transformer_count(bench):
  """XLA counts every op, the analytic count the matmuls only. Per example (the difference of two batches, so
  the optimizer's per-step cost cancels) XLA's count exceeds it by the elementwise ops: norms, GELU, softmax,
  residuals and the loss, of order 100 d FLOPs per token and block against 72 d^2 of matmuls: about 5% at
  width d = 64 (under 1% at the ImageNet priors' 768).
  What is left at batch 0 is the optimizer: AdamW, the EMA, the gradient norm and the non-finite guard, tens of
  FLOPs per parameter."""
  small, large = bench.cost(SMALL), bench.cost(LARGE)
  analytic_small, analytic_large = bench.analytic_flops(SMALL)["total"], bench.analytic_flops(LARGE)["total"]
  per_example = (large.flops - small.flops) / (analytic_large - analytic_small)
  assert 1.0 <= per_example <= 1.1, per_example
  per_param = (2 * small.flops - large.flops) / bench.num_params
  assert 10 <= per_param <= 60, per_param


def test_analytic_count_of_llamagen_blocks():
  """The autoregressive prior with LlamaGen's block (RMSNorm, SwiGLU: three MLP matrices, 2-D RoPE) feeds N
  tokens, not 1 + N: the analytic count follows. One batch: XLA's count is above it by the elementwise ops (about
  5%, as above) and the optimizer (about 2% at this batch)."""
  c = tiny_prior()
  c.prior.name, c.network.norm, c.network.mlp, c.network.positions = "autoregressive", "rmsnorm", "swiglu", "rope2d"
  ar = Bench.build(c, CODES, devices=jax.devices()[:1])
  ratio = ar.cost(LARGE).flops / ar.analytic_flops(LARGE)["total"]
  assert 1.0 <= ratio <= 1.15, ratio


def test_spmd_flops_are_normalised_to_the_global_batch():
  """Sharded over 8 devices XLA reports one device's program: an eighth of a data-parallel matmul's FLOPs.
  StepCost.flops is per device x devices (the prior's step: every device also runs the whole optimizer update on
  its replica of the parameters, which is counted once per device, as it is paid)."""
  mesh = jax.make_mesh((8,), ("data",))
  rows = NamedSharding(mesh, P("data"))
  matmul = jax.jit(lambda x, w: x @ w, in_shardings=(rows, NamedSharding(mesh, P())), out_shardings=rows)
  x, w = jax.ShapeDtypeStruct((64, 32), jnp.float32), jax.ShapeDtypeStruct((32, 16), jnp.float32)
  sharded = cost_lib.step_cost(matmul, x, w)
  single = cost_lib.step_cost(jax.jit(lambda x, w: x @ w), x, w)
  assert (single.num_devices, sharded.num_devices) == (1, 8)
  assert single.flops_per_device == 2 * 64 * 32 * 16 == 8 * sharded.flops_per_device == sharded.flops


def test_memory_grows_with_the_batch(bench):
  """Peak bytes per device: the state (parameters, Adam moments, EMA: 4 x 4 bytes per parameter, replicated)
  and the activations, which grow with the batch."""
  small, large = bench.cost(SMALL), bench.cost(LARGE)
  assert small.peak_bytes >= 16 * bench.num_params
  assert large.peak_bytes > small.peak_bytes
  assert large.temp_bytes > small.temp_bytes


def test_largest_batch_fits_and_its_double_does_not(bench):
  """A budget halfway between the memory of batches 16 and 32: the search starts from 16 and compiles the batch
  where the line through those two points meets the budget, and its neighbour."""
  peak = lambda b: bench.cost(b).peak_bytes
  budget = (peak(SMALL) + peak(LARGE)) / 2  # compiled already
  b = bench.largest_batch(budget, start=SMALL)
  assert SMALL <= b < LARGE and peak(b) <= budget < peak(b + 1)
  assert 2 * b >= LARGE and peak(LARGE) > budget  # the double is no smaller than a batch that does not fit


@pytest.mark.parametrize("peak, budget, expected", [
    (lambda b: 100 + 10 * b, 470, 37), (lambda b: 100 + 10 * b, 105, 0), (lambda b: 100 + b * b, 10**4, 99),
    (lambda b: 100 + 10 * b + 50 * (b > 40), 1000, 85), (lambda b: 1, 10, 4096)])
def test_largest_batch_search(peak, budget, expected):
  """Exact on affine, convex and stepped memory curves, capped at the limit."""
  calls = []
  assert cost_lib.largest_batch(lambda b: calls.append(b) or peak(b), budget, start=32, limit=4096) == expected
  assert len(calls) <= 16


def test_peak_flops_and_mfu():
  assert cost_lib.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
  assert cost_lib.peak_flops("NVIDIA H100 PCIe") == 756e12
  assert cost_lib.peak_flops("TPU v5 lite") == 197e12
  assert cost_lib.peak_flops("cpu") is None
  assert cost_lib.mfu(989e12, 2.0, 4, 989e12) == pytest.approx(0.125)
  assert cost_lib.mfu(1e12, 1.0, 1, None) is None


def test_transformer_flops_convention():
  """PaLM's 6N + 12 L n d per token, times the tokens: the terms by hand for a small case."""
  f = cost_lib.transformer_flops(batch=2, seq_len=3, width=8, depth=5, mlp_hidden=32, vocab=10)
  assert f["dense"] == 2 * 6 * 3 * 5 * (4 * 64 + 2 * 8 * 32)
  assert f["attention"] == 2 * 12 * 5 * 9 * 8
  assert f["head"] == 2 * 6 * 3 * 8 * 10
  assert f["total"] == f["dense"] + f["attention"] + f["head"]
