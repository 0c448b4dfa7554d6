"""What verified checkpoints cost: the SHA-256 digest of a saved step (vqgen.train.checkpoint) against the demo
tokenizer's training step, and against the step budget between two saves.

  python benchmarks/checkpoint_digest.py [--config=configs/demo.py] [--steps=30] [--repeats=7]

The digest runs in Orbax's background commit thread, so the training loop does not wait for it unless the next save
comes first; the share below is the worst case, as if it ran on the training thread. Writes
benchmarks/results/checkpoint_digest.{md,json}. Run it on an idle machine.
"""

import argparse
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import write_results  # noqa: E402
from vqgen import config as config_lib  # noqa: E402
from vqgen.stages import TokenizerStage  # noqa: E402
from vqgen.train import sharding as sharding_lib  # noqa: E402
from vqgen.train.checkpoint import Checkpointer, file_digests  # noqa: E402
from vqgen.train.step import build_training  # noqa: E402


def median_seconds(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return sorted(times)[len(times) // 2]


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--config", default="configs/demo.py")
  parser.add_argument("--steps", type=int, default=30, help="Training steps timed (after 3 warm-up steps).")
  parser.add_argument("--repeats", type=int, default=7, help="Digests timed.")
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/checkpoint_digest"))
  args = parser.parse_args()

  config = config_lib.load_config(os.path.join(ROOT, args.config))
  stage = TokenizerStage(config)
  mesh = sharding_lib.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.model)
  training = build_training(config, stage, mesh, jax.random.key(0))
  state, rng = training.state, jax.random.key(1)
  batches = iter(stage.train_dataset(config.data.batch_size, 0, 1))
  for _ in range(3):  # compile and warm up
    state, _ = training.step(state, sharding_lib.global_batch(next(batches), mesh), rng)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(args.steps):
    state, _ = training.step(state, sharding_lib.global_batch(next(batches), mesh), rng)
  jax.block_until_ready(state)
  step_s = (time.perf_counter() - start) / args.steps

  with tempfile.TemporaryDirectory() as tmp:
    ckpt = Checkpointer(os.path.join(tmp, "checkpoints"))
    ckpt.save(1, state, config={"stage": "tokenizer"})
    ckpt.wait()
    folder = ckpt.step_dir(1)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)
    digest_s = median_seconds(lambda: file_digests(folder), args.repeats)
    ckpt.close()

  every = config.train.checkpoint_every
  budget_share = digest_s / (every * step_s)
  payload = {"config": args.config, "platform": platform.processor() or platform.machine(),
             "devices": str(jax.devices()[0]), "step_ms": 1e3 * step_s, "checkpoint_bytes": size,
             "digest_ms": 1e3 * digest_s, "checkpoint_every": every, "digest_per_step": digest_s / step_s,
             "share_of_budget_between_saves": budget_share,
             "command": f"python benchmarks/checkpoint_digest.py --config={args.config} --steps={args.steps} "
                        f"--repeats={args.repeats}"}
  table = "\n".join([
      f"# Checkpoint digest cost ({args.config}, {payload['devices']})", "",
      f"`{payload['command']}`", "",
      "| step (ms) | checkpoint (MB) | digest (ms) | digest / step | saves every | share of the steps between saves |",
      "|---:|---:|---:|---:|---:|---:|",
      f"| {1e3 * step_s:.1f} | {size / 1e6:.2f} | {1e3 * digest_s:.1f} | {digest_s / step_s:.2f}x | {every} | "
      f"{100 * budget_share:.3f}% |", "",
      "The digest runs in Orbax's commit thread; the share is its cost as if it stalled training."])
  write_results(args.out, table, payload)
  assert np.isfinite(budget_share)


if __name__ == "__main__":
  main()
