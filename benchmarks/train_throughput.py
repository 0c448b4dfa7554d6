"""Training throughput of a tokenizer config on this machine: images/s, and the share of time spent on data.

  python benchmarks/train_throughput.py [--config=configs/demo.py] [--steps=60] [--batch_size=...]

Three measurements of the same jitted, sharded train step (after compilation and warm-up):
  compute   the step on one fixed device batch (no input pipeline): the model's own speed;
  data      the Grain pipeline alone (next batch + host-to-device global array);
  loop      the real training loop (pipeline feeding the step, asynchronous dispatch).
Data share of step time: data / loop, what the loop would wait if fetching never overlapped the step (an upper
bound); measured slowdown: 1 - compute / loop (can read 0 or below within timing noise).
Prints a table and writes benchmarks/results/train_throughput.{md,json}.
"""

import argparse
import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402

from vqgen import config as config_lib  # noqa: E402
from vqgen.stages import get_stage  # noqa: E402
from vqgen.train import sharding as sharding_lib  # noqa: E402
from vqgen.train.step import build_training  # noqa: E402


def timed(fn, n):
  start = time.perf_counter()
  out = None
  for _ in range(n):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / n


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default=os.path.join(ROOT, "configs/demo.py"))
  parser.add_argument("--steps", type=int, default=60)
  parser.add_argument("--batch_size", type=int, default=None)
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/train_throughput"))
  args = parser.parse_args()

  c = config_lib.load_config(args.config)
  if args.batch_size:
    c.data.batch_size = args.batch_size
  config_lib.validate(c)
  stage = get_stage(c)
  mesh = sharding_lib.make_mesh(c.mesh.data, c.mesh.fsdp, c.mesh.model)
  training = build_training(c, stage, mesh)
  state, step = training.state, training.step
  data_iter = iter(stage.train_dataset(sharding_lib.per_process_batch_size(c.data.batch_size, mesh), 0, 1))
  rng = jax.random.key(1)
  fixed = sharding_lib.global_batch(next(data_iter), mesh)
  compile_start = time.perf_counter()
  state, metrics = step(state, fixed, rng)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - compile_start
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

  t_compute, t_data, t_loop = timed(compute, args.steps), timed(data, args.steps), timed(loop, args.steps)
  b = c.data.batch_size
  rows = [("compute (step on a fixed batch)", t_compute), ("data (pipeline alone)", t_data),
          ("loop (pipeline + step)", t_loop)]
  share, slowdown = t_data / t_loop, 1.0 - t_compute / t_loop
  header = (f"Config `{os.path.relpath(args.config, ROOT)}`, global batch {b}, {training.spec.num_params():,} parameters, "
            f"{jax.device_count()} x {jax.devices()[0].device_kind} ({jax.default_backend()}), "
            f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}; "
            f"jax {jax.__version__}; {args.steps} timed steps each; first step (compile) {compile_s:.1f} s.")
  lines = [header, "", "| measurement | ms / step | images / s |", "|---|---:|---:|"]
  lines += [f"| {name} | {t * 1e3:.1f} | {b / t:.0f} |" for name, t in rows]
  lines += ["", f"Data share of step time (upper bound on waiting for data): {share:.1%} (data / loop); "
            f"measured slowdown of the loop over the bare step: {slowdown:+.1%} (1 - compute / loop)."]
  text = "\n".join(lines)
  print(text)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out + ".md", "w") as f:
    f.write("# Training throughput\n\n" + text + "\n")
  with open(args.out + ".json", "w") as f:
    json.dump({"config": os.path.relpath(args.config, ROOT), "batch_size": b, "devices": jax.device_count(),
               "backend": jax.default_backend(), "compile_s": compile_s,
               "ms_per_step": {n: t * 1e3 for n, t in rows}, "images_per_s": {n: b / t for n, t in rows},
               "data_share": share, "loop_slowdown": slowdown}, f, indent=2)


if __name__ == "__main__":
  main()
