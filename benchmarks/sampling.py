"""Sampling speed of the three priors: sequential forward passes (NFE) and ms per image at batch 1 and 64.

  python benchmarks/sampling.py [--repeats=3] [--batches=1,64]

Networks are the prior configs' (configs/prior/*_fashion_mnist.py defaults: the demo size) over 7x7 codes of
1000 entries; timing does not depend on the weights, so untrained networks are used. Each row: one jitted `prior.sample` call per batch, after compilation,
best of --repeats; tokens only (the tokenizer's decode is timed once, separately). Prints a table and writes
benchmarks/results/sampling.{md,json}.
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
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from vqgen import config as config_lib  # noqa: E402
from vqgen.stages import build  # noqa: E402

CASES = [("maskgit", "MaskGIT T=4", dict(steps=4)), ("maskgit", "MaskGIT T=8", dict(steps=8)),
         ("maskgit", "MaskGIT T=16", dict(steps=16)),
         ("autoregressive", "AR, KV cache", dict(use_cache=True)),
         ("autoregressive", "AR, no cache", dict(use_cache=False)),
         ("diffusion", "masked diffusion, 32 steps", dict(steps=32)),
         ("diffusion", "masked diffusion, 128 steps", dict(steps=128))]
CONFIGS = {"maskgit": "maskgit_fashion_mnist.py", "autoregressive": "ar_fashion_mnist.py",
           "diffusion": "diffusion_fashion_mnist.py"}


def best_time(fn, repeats):
  jax.block_until_ready(fn())  # compile + warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return min(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--batches", default="1,64")
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/sampling"))
  args = parser.parse_args()
  rows = []
  for name, label, kwargs in CASES:
    c = config_lib.load_config(os.path.join(ROOT, "configs/prior", CONFIGS[name]) + ":tokenizer=unused")
    prior = build.prior(c, 1000, (7, 7), nnx.Rngs(0))
    graphdef, state = nnx.split(prior)
    nfe = prior.forward_passes(**kwargs)
    for batch in [int(b) for b in args.batches.split(",")]:
      labels = jnp.arange(batch) % 10
      sample = jax.jit(lambda s, r, y: nnx.merge(graphdef, s).sample(r, y, **kwargs))
      seconds = best_time(lambda: sample(state, jax.random.key(0), labels), args.repeats)
      rows.append({"sampler": label, "batch": batch, "nfe": nfe, "ms_per_batch": 1000 * seconds,
                   "ms_per_image": 1000 * seconds / batch,
                   "network": f"width {c.network.width}, depth {c.network.depth}"})
      print(rows[-1], flush=True)
  tok = build.tokenizer(config_lib.load_config(os.path.join(ROOT, "configs/demo.py")), nnx.Rngs(0))
  graph_t, state_t = nnx.split(tok)
  decode = jax.jit(lambda s, x: nnx.merge(graph_t, s).decode(x))
  decode_ms = 1000 * best_time(lambda: decode(state_t, jnp.zeros((64, 7, 7), jnp.int32)), args.repeats) / 64

  device = f"{jax.devices()[0].device_kind} ({platform.machine()}, {os.cpu_count()} cores)"
  lines = ["# Sampling speed of the priors", "", f"Device: {device}. Network: {rows[0]['network']}, 7x7 codes "
           "of 1000 entries, class-conditional. NFE = sequential network evaluations per batch (guidance off). "
           f"Tokens only; decoding 64 images with the demo tokenizer adds {decode_ms:.2f} ms/image. "
           "Command: `python benchmarks/sampling.py`.", "",
           "| sampler | batch | NFE | ms / batch | ms / image |", "|---|---:|---:|---:|---:|"]
  lines += [f"| {r['sampler']} | {r['batch']} | {r['nfe']} | {r['ms_per_batch']:.1f} | {r['ms_per_image']:.2f} |"
            for r in rows]
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(args.out + ".json", "w") as f:
    json.dump({"device": device, "decode_ms_per_image": decode_ms, "rows": rows}, f, indent=2)
  print("\n".join(lines))


if __name__ == "__main__":
  main()
