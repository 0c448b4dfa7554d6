"""Training cost and throughput of any config (tokenizer or prior): FLOPs, memory, images/s, MFU.

  python benchmarks/train_throughput.py [--config=configs/demo.py[:variant]] [--config.key=value ...]
      [--codes=1024:16x16] [--steps=60] [--batch_size=... | --per_device_batch=...] [--compile_only]
      [--memory_gb=80] [--peak_tflops=...] [--out=benchmarks/results/NAME]

Costs, from the compiled train step alone (vqgen/train/cost.py; nothing runs, so a real-width model can be costed
on a CPU with --compile_only):
  FLOPs per step      XLA's cost analysis of the step for the whole global batch (forward, backward, optimizer);
                      for a prior also the analytic transformer count (6N + 12 L n d per token) and their ratio
  memory per device   XLA's memory analysis: arguments + outputs + temporaries - donated aliases
  largest batch       the largest batch per device whose compiled memory fits --memory_gb (default: the
                      accelerator's memory, 80 GB on a CPU); --batch_multiple sets its granularity, 0 skips it
Timings, unless --compile_only: three measurements of the same jitted, sharded step after compilation and warm-up:
  compute   the step on one fixed device batch (no input pipeline): the model's own speed, hence images/s,
            tokens/s (priors) and MFU = FLOPs per step / (step time x devices x peak), the peak bf16 rate of
            the device kind (n/a on a CPU unless --peak_tflops is given);
  data      the Grain pipeline alone (next batch + host-to-device global array);
  loop      the real training loop (pipeline feeding the step, asynchronous dispatch).
Data share of step time: data / loop, what the loop would wait if fetching never overlapped the step (an upper
bound); measured slowdown: 1 - compute / loop (can read 0 or below within timing noise). --measure=compute skips
the other two.

A prior needs its tokenizer's vocabulary and code grid only: `--codes=V:HxW` trains it on random codes (V codes,
an H x W grid) instead of loading the tokenizer in config.tokenizer_workdir. A tokenizer whose perceptual loss is
LPIPS-VGG16 without a weights file gets a VGG16 of random weights in the real layout: the same FLOPs and memory.
Prints a table and writes OUT.{md,json} (default benchmarks/results/train_throughput[_<config>]), quoting the
command line.
"""

import dataclasses
import json
import os
import platform
import shlex
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from flax import nnx  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from vqgen import config as config_lib  # noqa: E402
from vqgen.nn.transformer import swiglu_hidden  # noqa: E402
from vqgen.priors.heads import Factorization  # noqa: E402
from vqgen.stages import PriorStage, TokenizerStage, build, get_stage  # noqa: E402
from vqgen.tokenizers.perceptual_networks import VGG16LPIPS  # noqa: E402
from vqgen.train import cost as cost_lib  # noqa: E402
from vqgen.train import sharding as sharding_lib  # noqa: E402
from vqgen.train.step import build_training  # noqa: E402

DEFAULT_CONFIG = os.path.join(ROOT, "configs/demo.py")
DEFAULT_MEMORY_GB = 80.0  # an 80 GB accelerator (A100 / H100), the budget where the device's is unknown


class SyntheticCodesStage(PriorStage):
  """The prior stage over random codes of `codebook_size` entries of `code_shape` (h, w) or (h, w, D), with no
  tokenizer: a prior's cost depends on its vocabulary and code shape only."""

  def __init__(self, config, codebook_size: int, code_shape: tuple, num_sequences: int = 4096):
    self.config, self.codebook_size, self.code_shape = config, codebook_size, tuple(code_shape)
    self.num_tokens = int(np.prod(code_shape))
    rng = np.random.default_rng(config.seed)
    self.train_codes = {"codes": rng.integers(0, codebook_size, (num_sequences, *code_shape), dtype=np.int32),
                        "labels": rng.integers(0, max(config.prior.num_classes, 1), num_sequences, dtype=np.int32)}


class RandomLPIPSTokenizerStage(TokenizerStage):
  """The tokenizer stage with an LPIPS-VGG16 of random weights in the real layout (no weights file)."""

  def perceptual_network(self):
    if self._perceptual is None:
      self._perceptual = nnx.split(VGG16LPIPS(rngs=nnx.Rngs(0)))
    return self._perceptual


def parse_codes(spec: str) -> tuple[int, tuple[int, ...]]:
  """'1024:16x16' -> (1024, (16, 16)); '256:7x7x4' -> (256, (7, 7, 4)): stacked codes, D per position."""
  vocab, _, grid = spec.partition(":")
  try:
    shape = tuple(int(x) for x in grid.split("x"))
    if len(shape) not in (2, 3) or min(shape) < 1:
      raise ValueError
    return int(vocab), shape
  except ValueError:
    raise ValueError(f"--codes={spec!r}: expected VOCABULARY:HxW or VOCABULARY:HxWxD (D stacked codes per "
                     "position), e.g. 1024:16x16 or 256:8x8x4.") from None


def random_lpips(c) -> bool:
  """Whether `c` asks for LPIPS-VGG16 without naming its weights (the stand-in VGG16 is used)."""
  return (c.stage == "tokenizer" and c.loss.perceptual_weight > 0 and c.loss.perceptual_network == "lpips_vgg16"
          and not c.loss.perceptual_weights)


def make_stage(c, codes: str = ""):
  """The config's stage: checked by validate(), except for what costing does without (a trained tokenizer for a
  prior given --codes, LPIPS weights files)."""
  if c.stage == "prior" and not (codes or c.tokenizer_workdir):
    raise ValueError("A prior config needs config.tokenizer_workdir (a trained tokenizer) or --codes=V:HxW "
                     "(random codes of V entries on an H x W grid), e.g. --codes=1024:16x16.")
  checked = c.copy_and_resolve_references()
  if codes and c.stage == "prior":
    checked.tokenizer_workdir = checked.tokenizer_workdir or "(synthetic codes)"
  if random_lpips(c):
    checked.loss.perceptual_weight = 0.0  # skips the weights-file check only; the stand-in VGG16 is used
  config_lib.validate(checked)
  if c.stage == "prior" and codes:
    return SyntheticCodesStage(c, *parse_codes(codes))
  return RandomLPIPSTokenizerStage(c) if random_lpips(c) else get_stage(c)


@dataclasses.dataclass
class Bench:
  """A config's stage, mesh and jitted train step, and the costs of its compiled step at any batch."""
  config: object
  stage: object
  mesh: object
  training: object
  example: dict  # one per-process row of a batch: the shapes and dtypes of the step's input
  costs: dict = dataclasses.field(default_factory=dict)  # {global batch: StepCost}: each compiled once

  @classmethod
  def build(cls, c, codes: str = "", devices=None):
    """`codes`: --codes (priors); `devices`: the devices of the mesh (default all)."""
    stage = make_stage(c, codes)
    mesh = sharding_lib.make_mesh(c.mesh.data, c.mesh.fsdp, c.mesh.model, devices)
    training = build_training(c, stage, mesh)
    example = next(iter(stage.train_dataset(1, 0, 1)))
    return cls(c, stage, mesh, training, example)

  @property
  def devices_per_batch(self) -> int:
    """Devices the batch is split over (data x fsdp): global batch = per-device batch x this."""
    return sharding_lib.batch_divisor(self.mesh)

  @property
  def num_params(self) -> int:
    return self.training.spec.num_params()

  @property
  def params_by_part(self) -> dict:
    """{top-level parameter key: parameters}, e.g. a GAN tokenizer's tokenizer and discriminator."""
    return {k: sum(x.size for x in jax.tree.leaves(v)) for k, v in self.training.spec.abstract_params.items()}

  @property
  def tokens_per_example(self) -> int | None:
    """Code tokens per training example of a prior (None for a tokenizer)."""
    return self.stage.num_tokens if self.config.stage == "prior" else None

  def cost(self, global_batch: int) -> cost_lib.StepCost:
    """XLA's cost of the step at `global_batch` (compiled, not run; remembered)."""
    if global_batch in self.costs:
      return self.costs[global_batch]
    sharding = sharding_lib.batch_sharding(self.mesh)
    batch = {k: jax.ShapeDtypeStruct((global_batch,) + np.shape(v)[1:], np.asarray(v).dtype, sharding=sharding)
             for k, v in self.example.items()}
    t = self.training
    self.costs[global_batch] = cost_lib.step_cost(t.jitted, cost_lib.abstract(t.state), batch,
                                                  cost_lib.abstract(jax.random.key(1)), cost_lib.abstract(t.frozen))
    return self.costs[global_batch]

  def analytic_flops(self, global_batch: int) -> dict | None:
    """The analytic transformer count of a prior's step (cost.transformer_flops); None for a tokenizer."""
    c = self.config
    if c.stage != "prior":
      return None
    n, p = c.network, c.prior
    gated = n.mlp == "swiglu"
    vocab = Factorization(self.stage.codebook_size, n.head, n.head_groups)
    common = dict(width=n.width, mlp_hidden=swiglu_hidden(n.width, n.mlp_ratio) if gated else n.mlp_ratio * n.width,
                  gated_mlp=gated, conditioned=build.time_conditioned(p))
    if p.name == "rq_transformer":  # spatial: [class, positions 1 .. T-1], no head; depth: T rows of D, the head
      positions, depth = self.stage.code_shape[0] * self.stage.code_shape[1], self.stage.num_tokens // (
          self.stage.code_shape[0] * self.stage.code_shape[1])
      parts = [cost_lib.transformer_flops(batch=global_batch, seq_len=positions, depth=n.depth, vocab=0, **common),
               cost_lib.transformer_flops(batch=global_batch * positions, seq_len=depth, depth=n.depth_layers,
                                          vocab=vocab.groups * vocab.base, **common)]
      return {k: parts[0][k] + parts[1][k] for k in parts[0]}
    # Sequences: [class, codes] for every prior but the autoregressive one, which never feeds its last code.
    seq_len = self.stage.num_tokens + (0 if p.name == "autoregressive" else 1)
    return cost_lib.transformer_flops(batch=global_batch, seq_len=seq_len, depth=n.depth,
                                      vocab=vocab.groups * vocab.base, **common)

  def largest_batch(self, budget_bytes: float, multiple: int = 1, start: int = 1) -> int:
    """The largest batch per device whose compiled step fits `budget_bytes` per device (cost.largest_batch)."""
    return cost_lib.largest_batch(lambda b: self.cost(b * self.devices_per_batch).peak_bytes, budget_bytes,
                                  start=start, multiple=multiple)


def timed(fn, n):
  start = time.perf_counter()
  out = None
  for _ in range(n):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / n


def measure(bench: Bench, global_batch: int, steps: int, which: tuple) -> tuple[dict, float]:
  """{measurement: seconds per step} for `which` of compute / data / loop, and the first step's seconds. The
  step is the executable the cost analysis compiled: compiled once."""
  executable, frozen, mesh = bench.cost(global_batch).executable, bench.training.frozen, bench.mesh
  step = lambda state, batch, rng: executable(state, batch, rng, frozen)
  data_iter = iter(bench.stage.train_dataset(sharding_lib.per_process_batch_size(global_batch, mesh),
                                             jax.process_index(), jax.process_count()))
  rng = jax.random.key(1)
  fixed = sharding_lib.global_batch(next(data_iter), mesh)
  start = time.perf_counter()
  state, metrics = step(bench.training.state, fixed, rng)  # donates the initial state
  jax.block_until_ready(metrics)
  first_s = time.perf_counter() - start
  for _ in range(3):
    state, metrics = step(state, fixed, rng)
  holder = {"state": state}

  def compute():
    holder["state"], m = step(holder["state"], fixed, rng)
    return m

  def data():
    return sharding_lib.global_batch(next(data_iter), mesh)

  def loop():
    holder["state"], m = step(holder["state"], data(), rng)
    return m

  fns = {"compute": compute, "data": data, "loop": loop}
  return {name: timed(fns[name], steps) for name in which}, first_s


def measured_peak_bytes() -> int | None:
  """The accelerator's peak bytes in use so far (None on CPUs, which keep no such statistic)."""
  stats = jax.devices()[0].memory_stats()
  return (stats or {}).get("peak_bytes_in_use")


def fmt_flops(x: float) -> str:
  return f"{x:.3g}"


def fmt_gb(n: float) -> str:
  return f"{n / 1e9:.2f} GB"


FLAGS = flags.FLAGS


def define_flags():
  """The command line (defined when run as a script, so that importing this module defines no flags)."""
  config_flags.DEFINE_config_file("config", DEFAULT_CONFIG, "Config file (get_config), with ':variant'.",
                                  lock_config=True)
  flags.DEFINE_string("codes", "", "Prior configs: train on random codes VOCABULARY:HxW (e.g. 1024:16x16) "
                      "instead of loading config.tokenizer_workdir's tokenizer.")
  flags.DEFINE_integer("steps", 60, "Timed steps per measurement.")
  flags.DEFINE_integer("batch_size", None, "Global batch (default: config.data.batch_size).")
  flags.DEFINE_integer("per_device_batch", None, "Batch per device (global = this x data x fsdp devices).")
  flags.DEFINE_list("measure", ["compute", "data", "loop"], "Which timings: compute, data, loop.")
  flags.DEFINE_bool("compile_only", False, "Costs from compilation only: no step runs, no timings.")
  flags.DEFINE_float("memory_gb", None, "Memory budget per device for the largest batch (default: the "
                     f"accelerator's, else {DEFAULT_MEMORY_GB:g}).")
  flags.DEFINE_integer("batch_multiple", 1, "Granularity of the largest-batch search; 0 skips the search.")
  flags.DEFINE_float("peak_tflops", None, "Peak TFLOP/s per device for MFU (default: the device kind's bf16 "
                     "peak, unknown on CPUs).")
  flags.DEFINE_string("out", None, "Results path without extension (default benchmarks/results/"
                      "train_throughput[_<config name>]).")


def command_line() -> str:
  return "python " + " ".join(shlex.quote(os.path.relpath(a, ROOT) if i == 0 else a)
                              for i, a in enumerate(sys.argv))


def main(_):
  if FLAGS.compile_only:  # LLVM's passes off: the same HLO, FLOPs and memory, compiled 1.5-4x faster
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
  c = FLAGS.config
  config_path = FLAGS["config"].config_filename
  name = os.path.splitext(os.path.basename(config_path.partition(":")[0]))[0]
  out = FLAGS.out or os.path.join(ROOT, "benchmarks/results",
                                  "train_throughput" if config_path == DEFAULT_CONFIG else f"train_throughput_{name}")
  bench = Bench.build(c, FLAGS.codes)
  per_device = FLAGS.per_device_batch
  b = per_device * bench.devices_per_batch if per_device else FLAGS.batch_size or c.data.batch_size
  sharding_lib.per_process_batch_size(b, bench.mesh)  # divisible: fail before compiling
  n_dev, device = jax.device_count(), jax.devices()[0]
  peak = FLAGS.peak_tflops * 1e12 if FLAGS.peak_tflops else cost_lib.peak_flops(device.device_kind)
  budget = FLAGS.memory_gb * 1e9 if FLAGS.memory_gb else cost_lib.device_memory_bytes(device) or DEFAULT_MEMORY_GB * 1e9

  cost = bench.cost(b)
  analytic = bench.analytic_flops(b)
  largest = bench.largest_batch(budget, FLAGS.batch_multiple, start=b // bench.devices_per_batch) \
      if FLAGS.batch_multiple else None
  times, first_s = ({}, None) if FLAGS.compile_only else measure(bench, b, FLAGS.steps, tuple(FLAGS.measure))
  t = times.get("compute")
  tokens = bench.tokens_per_example
  util = cost_lib.mfu(cost.flops, t, n_dev, peak) if t else None
  measured = None if FLAGS.compile_only else measured_peak_bytes()

  rows = [("parameters", f"{bench.num_params:,}"),
          ("FLOPs per step, XLA (global batch)", fmt_flops(cost.flops)),
          ("FLOPs per example, XLA", fmt_flops(cost.flops / b))]
  if analytic:
    rows += [("FLOPs per step, analytic transformer", fmt_flops(analytic["total"])),
             ("XLA / analytic", f"{cost.flops / analytic['total']:.3f}")]
  if t:
    rows += [("ms / step (compute)", f"{t * 1e3:.1f}"), ("images / s", f"{b / t:.3g}")]
    if tokens:
      rows.append(("tokens / s", f"{b * tokens / t:.3g}"))
    rows.append(("MFU", f"{util:.1%}" if util is not None else "n/a (no peak FLOP/s known for this device; "
                 "--peak_tflops)"))
  rows.append(("peak memory per device, XLA estimate", fmt_gb(cost.peak_bytes)))
  if measured:
    rows.append(("peak memory per device, measured (allocator)", fmt_gb(measured)))
  if largest is not None:
    rows.append((f"largest batch per device within {budget / 1e9:.0f} GB (compiled; granularity "
                 f"{FLAGS.batch_multiple})", str(largest)))

  header = (f"Config `{os.path.relpath(config_path, ROOT)}`{f' on random codes {FLAGS.codes}' if FLAGS.codes else ''}, "
            f"global batch {b} ({b // bench.devices_per_batch} per device), {n_dev} x {device.device_kind} "
            f"({jax.default_backend()}), {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}; "
            f"jax {jax.__version__}; "
            + ("compile only (no step was run)" if FLAGS.compile_only else
               f"{FLAGS.steps} timed steps each after 4 warm-up steps (the first {first_s:.2f} s)")
            + f"; step compiled in {cost.compile_s:.1f} s for the cost analysis."
            + (" LPIPS-VGG16 with random weights (same FLOPs and memory)." if random_lpips(c) else ""))
  lines = [header, "", f"Command: `{command_line()}`", "", "| quantity | value |", "|---|---:|"]
  lines += [f"| {k} | {v} |" for k, v in rows]
  if len(times) > 1:
    lines += ["", "| measurement | ms / step | images / s |", "|---|---:|---:|"]
    labels = {"compute": "compute (step on a fixed batch)", "data": "data (pipeline alone)",
              "loop": "loop (pipeline + step)"}
    lines += [f"| {labels[k]} | {v * 1e3:.1f} | {b / v:.3g} |" for k, v in times.items()]
  share = slowdown = None
  if {"data", "loop", "compute"} <= set(times):
    share, slowdown = times["data"] / times["loop"], 1.0 - times["compute"] / times["loop"]
    lines += ["", f"Data share of step time (upper bound on waiting for data): {share:.1%} (data / loop); "
              f"measured slowdown of the loop over the bare step: {slowdown:+.1%} (1 - compute / loop)."]
  lines += ["", "FLOPs: XLA's cost analysis of the compiled step (per device x devices: the global batch), every "
            "op it counts (matmuls, elementwise, optimizer); the analytic count is the transformer's matmuls only "
            "(vqgen/train/cost.py). Memory: XLA's buffer assignment (arguments + outputs + temporaries - donated "
            "aliases), without the runtime's overhead. MFU: against the device kind's dense bf16 peak "
            "(vqgen/train/cost.py, PEAK_FLOPS) whatever the compute dtype."
            + (" On a CPU the compiled program is XLA:CPU's: an accelerator's fusion and layouts differ, so its "
               "memory is an estimate for GPUs." if jax.default_backend() == "cpu" else "")]
  text = "\n".join(lines)
  print(text)
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out + ".md", "w") as f:
    f.write("# Training cost and throughput\n\n" + text + "\n")
  with open(out + ".json", "w") as f:
    json.dump({"config": os.path.relpath(config_path, ROOT), "command": command_line(), "codes": FLAGS.codes or None,
               "batch_size": b, "per_device_batch": b // bench.devices_per_batch, "devices": n_dev,
               "device_kind": device.device_kind, "backend": jax.default_backend(), "params": bench.num_params,
               "flops_per_step": cost.flops, "flops_per_step_analytic": analytic, "peak_bytes_per_device": cost.peak_bytes,
               "measured_peak_bytes": measured, "memory_budget_bytes": budget, "largest_batch_per_device": largest,
               "compile_only": FLAGS.compile_only, "first_step_s": first_s, "peak_flops": peak,
               "ms_per_step": {k: v * 1e3 for k, v in times.items()},
               "images_per_s": {k: b / v for k, v in times.items()},
               "tokens_per_s": b * tokens / t if t and tokens else None, "mfu": util,
               "data_share": share, "loop_slowdown": slowdown, "random_lpips": random_lpips(c)}, f, indent=2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
