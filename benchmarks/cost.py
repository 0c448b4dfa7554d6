"""The cost of the ImageNet-256 recipes at their real width, from compilation alone (nothing runs; fine on a CPU).

  python benchmarks/cost.py [--accelerators=8] [--memory_gb=80] [--dtypes=float32,bfloat16] [--recipes=a,b]
      [--out=benchmarks/results/cost_imagenet]

Each recipe's train step is compiled for one accelerator's share of the paper's batch (config.data.batch_size /
--accelerators, data parallel: every device holds the whole state and its rows of the batch) and costed by XLA
(vqgen/train/cost.py): parameters, FLOPs per step for the paper's global batch (one device's program x
accelerators), memory per device (arguments + outputs + temporaries - donated aliases), whether that fits
--memory_gb, and the largest batch per device that does (--largest: the line through two compiled batches, or
the exact search). The priors are costed on random
codes of the tokenizer recipe's vocabulary and grid (1024 codes, 16x16); LPIPS-VGG16 has random weights of the
real layout (no weights file needed; the same FLOPs and memory). `--dtypes` costs each recipe in these compute
dtypes (config.model.compute_dtype / config.network.compute_dtype; parameters and optimizer stay float32).
On a CPU the compiled program is XLA:CPU's: an accelerator's fusions, layouts and collectives differ, so the
memory is an estimate for a GPU, and the data-parallel gradient all-reduce is not in it.
Prints a table and writes OUT.{md,json}.
"""

import json
import os
import sys
import time

# LLVM's passes off (nothing runs): the same HLO, FLOPs and memory, compiled 1.5-4x faster. Before JAX starts.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks.train_throughput import Bench, command_line, random_lpips  # noqa: E402
from vqgen import config as config_lib  # noqa: E402

IMAGENET_CODES = "1024:16x16"  # configs/tokenizer/maskgit_vqgan_imagenet.py: 1024 codes, 256 px / 16
RECIPES = ("configs/tokenizer/maskgit_vqgan_imagenet.py:data=synthetic",
           "configs/tokenizer/vit_vqgan_imagenet.py:data=synthetic",
           "configs/prior/maskgit_imagenet.py", "configs/prior/ar_imagenet.py", "configs/prior/diffusion_imagenet.py")

LARGEST_NOTE = {
    "linear": "where the line through the memory compiled at the batch per device and at its double meets the "
              "budget (memory is affine in the batch: state + batch x activations; --largest=search compiles the "
              "exact value).",
    "search": "the largest whose compiled step fits, found by compiling (vqgen/train/cost.py, largest_batch).",
    "none": "not searched (--largest=none)."}

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_list("recipes", list(RECIPES), "Config specs (path[:variant]) to cost.")
  flags.DEFINE_integer("accelerators", 8, "The papers' accelerators: batch per device = global batch / this.")
  flags.DEFINE_float("memory_gb", 80.0, "Memory per device (1e9 bytes) the step must fit.")
  flags.DEFINE_list("dtypes", ["float32"], "Compute dtypes to cost each recipe in.")
  flags.DEFINE_enum("largest", "linear", ["linear", "search", "none"], "The largest batch per device: where the "
                    "line through the memory compiled at the paper's batch and its double meets the budget (two "
                    "compilations), the exact search (cost.largest_batch: about four), or none.")
  flags.DEFINE_string("out", os.path.join(ROOT, "benchmarks/results/cost_imagenet"), "Results path, no extension.")


def linear_largest(bench: Bench, per_device: int, budget: float) -> int:
  """The batch per device where the line through the memory compiled at `per_device` and twice that meets the
  budget: memory is affine in the batch to within a few MB (state + batch x activations per example)."""
  a, b = bench.cost(per_device).peak_bytes, bench.cost(2 * per_device).peak_bytes
  return max(0, int(per_device + (budget - a) * per_device // (b - a)))


def cost_recipe(spec: str, dtype: str, accelerators: int, budget: float, largest_method: str) -> dict:
  c = config_lib.load_config(os.path.join(ROOT, spec))
  section = c.model if c.stage == "tokenizer" else c.network
  section.compute_dtype = dtype
  per_device = c.data.batch_size // accelerators
  start = time.perf_counter()
  bench = Bench.build(c, IMAGENET_CODES if c.stage == "prior" else "", devices=jax.devices()[:1])
  cost = bench.cost(per_device)
  analytic = bench.analytic_flops(per_device)
  largest = {"linear": lambda: linear_largest(bench, per_device, budget), "none": lambda: None,
             "search": lambda: bench.largest_batch(budget, start=per_device)}[largest_method]()
  row = {"config": spec, "stage": c.stage, "compute_dtype": dtype, "params": bench.num_params,
         "params_by_part": bench.params_by_part,
         "global_batch": c.data.batch_size, "per_device_batch": per_device,
         "flops_per_step": cost.flops * accelerators, "flops_per_example": cost.flops / per_device,
         "analytic_flops_per_step": analytic["total"] * accelerators if analytic else None,
         "tokens_per_example": bench.tokens_per_example, "peak_bytes_per_device": cost.peak_bytes,
         "state_and_batch_bytes": cost.argument_bytes, "temp_bytes": cost.temp_bytes,
         "fits": cost.peak_bytes <= budget, "largest_batch_per_device": largest, "largest_method": largest_method,
         "memory_by_batch": {b: s.peak_bytes for b, s in sorted(bench.costs.items())},
         "random_lpips": random_lpips(c), "compile_s": cost.compile_s,
         "wall_s": time.perf_counter() - start}
  print(json.dumps({k: v for k, v in row.items() if k != "memory_by_batch"}), flush=True)
  return row


def table(rows: list, budget_gb: float, largest: str) -> list:
  lines = ["| config | dtype | parameters | batch / device | FLOPs / step | FLOPs / example | XLA / analytic | "
           f"memory / device | fits {budget_gb:g} GB | largest batch / device ({largest}) |",
           "|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
  for r in rows:
    ratio = f"{r['flops_per_step'] / r['analytic_flops_per_step']:.3f}" if r["analytic_flops_per_step"] else "-"
    largest = "-" if r["largest_batch_per_device"] is None else str(r["largest_batch_per_device"])
    parts = r["params_by_part"]
    params = f"{r['params'] / 1e6:.1f}M" + ("" if len(parts) < 2 else
                                            " (" + " + ".join(f"{k} {v / 1e6:.1f}M" for k, v in parts.items()) + ")")
    lines.append(f"| `{r['config']}` | {r['compute_dtype']} | {params} | {r['per_device_batch']} | "
                 f"{r['flops_per_step']:.3g} | {r['flops_per_example']:.3g} | {ratio} | "
                 f"{r['peak_bytes_per_device'] / 1e9:.1f} GB | {'yes' if r['fits'] else 'no'} | {largest} |")
  return lines


def write(rows: list, budget: float, complete: bool) -> str:
  """The table so far as OUT.md / OUT.json (rewritten after every recipe: a long run leaves what it has done)."""
  device = jax.devices()[0]
  lines = [f"Compiled, never run, on {device.device_kind} ({jax.default_backend()}, {os.cpu_count()} cores), jax "
           f"{jax.__version__}: XLA's cost and memory analyses of one device's train step (forward, backward, "
           f"optimizer, parameter EMA) at the paper's batch over {FLAGS.accelerators} accelerators, data parallel.",
           "", f"Command: `{command_line()}`" + ("" if complete else " (still running: the rows done so far)"),
           ""] + table(rows, FLAGS.memory_gb, FLAGS.largest) + [
           "", f"FLOPs / step: for the paper's global batch (one device's program x {FLAGS.accelerators}); XLA "
           "counts every op, the analytic count (priors) the transformer's matmuls, 6N + 12 L n d per token "
           "(vqgen/train/cost.py). Memory / device: arguments (state, batch) + outputs + temporaries - donated "
           "aliases, XLA:CPU's buffer assignment: an estimate for a GPU, whose fusions and layouts differ, without "
           f"the runtime's overhead nor the gradient all-reduce; fits: at most {FLAGS.memory_gb:g}e9 bytes. "
           f"Largest batch / device: {LARGEST_NOTE[FLAGS.largest]} Priors on random codes of the tokenizer's "
           f"vocabulary and grid ({IMAGENET_CODES}); tokenizers on synthetic 256x256 images, with their StyleGAN "
           "discriminator, and LPIPS-VGG16 with random weights in the real layout (the weights file is not here; "
           "the same FLOPs and memory)."]
  text = "\n".join(lines)
  os.makedirs(os.path.dirname(FLAGS.out), exist_ok=True)
  with open(FLAGS.out + ".md", "w") as f:
    f.write("# The cost of the ImageNet-256 recipes\n\n" + text + "\n")
  with open(FLAGS.out + ".json", "w") as f:
    json.dump({"command": command_line(), "complete": complete, "device_kind": device.device_kind,
               "backend": jax.default_backend(), "accelerators": FLAGS.accelerators, "memory_budget_bytes": budget,
               "rows": rows}, f, indent=2)
  return text


def main(_):
  budget = FLAGS.memory_gb * 1e9
  rows = []
  for spec in FLAGS.recipes:
    for dtype in FLAGS.dtypes:
      rows.append(cost_recipe(spec, dtype, FLAGS.accelerators, budget, FLAGS.largest))
      write(rows, budget, complete=False)
  print(write(rows, budget, complete=True))


if __name__ == "__main__":
  define_flags()
  app.run(main)
