"""What a training step costs: FLOPs and memory from XLA's compiled program, an analytic FLOP count of the prior
transformer, the accelerators' peak FLOP rates (MFU) and the largest batch that fits a memory budget. Everything
here needs compilation only, never execution: a real-width model can be costed on a CPU.

XLA's figures are per device. Under SPMD (`jax.jit` with shardings over n devices) the compiled module is the
program ONE device runs, so `cost_analysis()["flops"]` is per device: data-parallel over 8 devices, a step's
FLOPs read 1/8 of the single-device count (checked in tests/test_cost.py). `StepCost.flops` is normalised to the
whole global batch: per-device FLOPs x devices. A computation replicated over the devices is counted once per
device, as it is paid: with replicated parameters, every device runs the whole optimizer update (AdamW, EMA,
gradient norm: about 30 FLOPs per parameter), negligible at real width (a prior's matmuls are 6 FLOPs per
parameter per token). Memory (`memory_analysis()`) is per device too, which is what has to fit.
"""

import dataclasses
import time
from typing import Any, Callable

import jax

# Peak dense bf16 FLOP/s per chip, matched by substring of `device.device_kind`, first match wins. Sources: NVIDIA
# H100 and H200 datasheets (BF16 Tensor Core 1,979 TFLOPS SXM, 1,513 PCIe, "with sparsity": half is dense),
# NVIDIA A100 datasheet (312 dense), Google Cloud TPU system architecture pages (v4 275, v5e 197, v5p 459,
# Trillium v6e 918). A CPU has no entry: its MFU is n/a unless the peak is given.
PEAK_FLOPS = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("GH200", 989e12), ("A100", 312e12),
              ("TPU v4", 275e12), ("TPU v5 lite", 197e12), ("TPU v5e", 197e12), ("TPU v5p", 459e12),
              ("TPU v5", 459e12), ("TPU v6 lite", 918e12), ("TPU v6e", 918e12))


def peak_flops(device_kind: str) -> float | None:
  """Peak dense bf16 FLOP/s of one chip of this kind (PEAK_FLOPS), None when unknown (CPUs)."""
  return next((peak for name, peak in PEAK_FLOPS if name.lower() in device_kind.lower()), None)


def device_memory_bytes(device) -> int | None:
  """The memory an accelerator lets XLA allocate (`memory_stats()["bytes_limit"]`), None on CPUs."""
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  return (stats or {}).get("bytes_limit")


def mfu(flops_per_step: float, step_s: float, num_devices: int, peak: float | None) -> float | None:
  """Model FLOPs utilisation: FLOPs per step / (step time x devices x peak FLOP/s per device)."""
  return None if not peak else flops_per_step / (step_s * num_devices * peak)


@dataclasses.dataclass
class StepCost:
  """XLA's analysis of one compiled step. Bytes are per device; `flops` is for the global batch."""
  flops_per_device: float
  num_devices: int
  argument_bytes: int
  output_bytes: int
  alias_bytes: int
  temp_bytes: int
  compile_s: float
  executable: Any = dataclasses.field(default=None, repr=False, compare=False)  # the compiled step, callable

  @property
  def flops(self) -> float:
    return self.flops_per_device * self.num_devices

  @property
  def peak_bytes(self) -> int:
    """Live bytes of the step on one device: arguments + outputs + temporaries - outputs aliased to donated
    arguments (counted once). XLA's buffer assignment; the runtime's own overhead (allocator fragmentation,
    library workspaces, the CUDA context) comes on top."""
    return self.argument_bytes + self.output_bytes + self.temp_bytes - self.alias_bytes


def abstract(tree):
  """Arrays -> ShapeDtypeStructs with the same shardings: what `lower` needs, with no data."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
                      tree)


def step_cost(jitted, *args) -> StepCost:
  """Lowers and compiles `jitted(*args)` (arrays or ShapeDtypeStructs: nothing runs) and reads XLA's cost and
  memory analyses; the device count is that of the compiled program's input shardings."""
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  compile_s = time.perf_counter() - start
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older JAX: one dict per program
    analysis = analysis[0]
  memory = compiled.memory_analysis()
  devices = set()
  for sharding in jax.tree.leaves(compiled.input_shardings):
    devices |= set(sharding.device_set)
  return StepCost(flops_per_device=float(analysis.get("flops", 0.0)), num_devices=max(len(devices), 1),
                  argument_bytes=memory.argument_size_in_bytes, output_bytes=memory.output_size_in_bytes,
                  alias_bytes=memory.alias_size_in_bytes, temp_bytes=memory.temp_size_in_bytes,
                  compile_s=compile_s, executable=compiled)


def transformer_flops(*, batch: int, seq_len: int, width: int, depth: int, mlp_hidden: int, vocab: int,
                      gated_mlp: bool = False, conditioned: bool = False) -> dict:
  """Matmul FLOPs of one training step (forward + backward) of the prior transformer, for `batch` sequences.

  Convention (PaLM, Chowdhery et al. 2022, App. B; Chinchilla's): 2 FLOPs per multiply-add, backward = 2 x
  forward, so a weight matrix applied to T tokens costs 6 T (its size). Per sequence of n tokens, width d, MLP
  hidden h, L blocks:
    dense      6 n L (4 d^2 + k d h)   qkv 3d^2, output d^2, MLP k = 2 matrices (3 when gated: SwiGLU)
    attention  12 L n^2 d              scores QK^T and the weighted sum of V, 2 n^2 d each, x 3; the full n x n
                                       product also when causal (the masked product is computed)
    head       6 n d V                 the output projection to V logits, applied to all n positions
    condition  6 L 6 d^2 + 6 2 d^2     adaLN modulation (6d outputs per block) and the time MLP (2 d x d), once per
                                       sequence, not per token (time-conditioned diffusion only)
  i.e. PaLM's "6N + 12 L n d" per token with N the per-token matmul parameters (embedding lookups are gathers:
  none). Not counted: biases, norms, activations, softmax, the loss, the optimizer (O(parameters) per step, not
  O(tokens x parameters)). Returns the four terms and their `total`."""
  k = 3 if gated_mlp else 2
  per_sequence = {
      "dense": 6 * seq_len * depth * (4 * width ** 2 + k * width * mlp_hidden),
      "attention": 12 * depth * seq_len ** 2 * width,
      "head": 6 * seq_len * width * vocab,
      "condition": (6 * depth * 6 * width ** 2 + 6 * 2 * width ** 2) if conditioned else 0,
  }
  out = {name: float(batch * f) for name, f in per_sequence.items()}
  out["total"] = sum(out.values())
  return out


def largest_batch(peak_bytes: Callable[[int], int], budget: float, *, start: int = 1, multiple: int = 1,
                  limit: int = 1 << 16) -> int:
  """The largest batch b (a multiple of `multiple`, at most `limit`) with peak_bytes(b) <= budget, assuming the
  peak grows with the batch; 0 when not even `multiple` fits.

  A step's memory is close to affine in the batch (state + batch x activations per example), so the search
  probes where the straight line through the last two measured points meets the budget: from `start` (halved
  while it does not fit), once doubled, then extrapolated until a batch fails; inside the bracket [fits, fails]
  it probes the interpolated batch and its neighbour (false position), and halves the bracket when that did not
  close it. Affine memory takes 4 evaluations (each one compilation when peak_bytes compiles the step); any
  growing memory at most about 3 log2(b / multiple)."""
  top = limit // multiple * multiple
  down = lambda x: int(x) // multiple * multiple
  peaks = {}

  def fits(b):
    if b > top:
      return False
    if b not in peaks:
      peaks[b] = peak_bytes(b)
    return peaks[b] <= budget

  def crossing(a, b):
    """Where the line through the peaks measured at batches a and b meets the budget (None unless rising)."""
    slope = (peaks[b] - peaks[a]) / (b - a)
    return a + (budget - peaks[a]) / slope if slope > 0 else None

  lo, hi, prev = min(top, max(multiple, down(start))), None, None
  while not fits(lo):
    lo, hi = down(lo // 2), lo
    if not lo:
      return 0
  while hi is None:  # extend: double once, then follow the line
    if lo == top:
      return top
    guess = crossing(prev, lo) if prev else None
    probe = min(top, 2 * lo if guess is None else max(down(guess), lo + multiple))
    if fits(probe):
      prev, lo = lo, probe
    else:
      hi = probe
  while hi - lo > multiple:  # fits(lo), not fits(hi)
    guess = crossing(lo, hi)
    probe = min(max(down(guess), lo + multiple), hi - multiple)
    if fits(probe):
      lo, neighbour = probe, probe + multiple
      if neighbour < hi and not fits(neighbour):
        hi = neighbour
    else:
      hi, neighbour = probe, probe - multiple
      if neighbour > lo and fits(neighbour):
        lo = neighbour
    if hi - lo > multiple:
      mid = down((lo + hi) // 2)
      lo, hi = (mid, hi) if fits(mid) else (lo, mid)
  return lo
