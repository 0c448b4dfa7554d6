"""Sampling speed of the priors: sequential forward passes (NFE) and ms per image at batch 1 and 64.

  python benchmarks/sampling.py [--repeats=3] [--batches=1,64]
      the demo sweep: the prior configs' demo-size networks (configs/prior/*_fashion_mnist.py) over 7x7 codes of
      1000 entries, MaskGIT at T = 4 / 8 / 16, AR with and without its KV cache, masked diffusion at 32 / 128 steps
      (and at 32 with MD4's ancestral and top-p samplers and ReMDM's cap, rescale and loop remasking), uniform diffusion
      at 32 (with and without a corrector step), mask-and-replace at 50 (ancestral and purity)
  python benchmarks/sampling.py --configs=configs/prior/maskgit_imagenet.py,configs/prior/ar_imagenet.py,\
configs/prior/diffusion_imagenet.py --codes=1024:16x16 \
      --tokenizer=configs/tokenizer/maskgit_vqgan_imagenet.py:data=synthetic [--compute_dtype=bfloat16]
      each recipe's own sampler as its config sets it (steps, guidance, temperatures: build.sampler_kwargs) at its
      real width over random V-entry codes on an H x W grid, and the tokenizer's decoder on the same grid
  python benchmarks/sampling.py --configs=configs/prior/ar_fashion_mnist.py,configs/prior/rq_fashion_mnist.py:\
depth=8,depth_layers=2 --codes=256:7x7x4 --tokenizer=configs/tokenizer/rvq_fashion_mnist.py
      stacked codes (D = 4 per position): the autoregressive prior over the flattened 196 codes against the
      RQ-Transformer at equal training compute (experiments/rq_vs_flat.py's rows)

Timing does not depend on the weights, so untrained networks are used. Each row: one jitted `prior.sample` call
per batch, after compilation, best of --repeats; tokens only (the tokenizer's decode is timed once, separately).
Classifier-free guidance (scale != 1) evaluates the network on a doubled batch: the same NFE, twice the work.
--set=KEY=VALUE (repeatable) overrides a key of every prior config, --tokenizer_set=KEY=VALUE one of the tokenizer's
(gpu.sh's smoke mode: --set=network.depth=1 --tokenizer_set=model.channels=32); --compute_dtype sets both.
Prints a table and writes OUT.{md,json} (default benchmarks/results/sampling), quoting the command line.
"""

import argparse
import ast
import json
import os
import platform
import shlex
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from train_throughput import parse_codes  # noqa: E402
from vqgen import config as config_lib  # noqa: E402
from vqgen.stages import build  # noqa: E402

DEMO_CASES = [("maskgit", "MaskGIT T=4", dict(steps=4)), ("maskgit", "MaskGIT T=8", dict(steps=8)),
              ("maskgit", "MaskGIT T=16", dict(steps=16)),
              ("autoregressive", "AR, KV cache", dict(use_cache=True)),
              ("autoregressive", "AR, no cache", dict(use_cache=False)),
              ("diffusion", "masked diffusion, 32 steps", dict(steps=32)),
              ("diffusion", "masked diffusion, 128 steps", dict(steps=128)),
              ("diffusion", "masked diffusion, MD4 ancestral, 32 steps", dict(steps=32, sampler="ancestral")),
              ("diffusion", "masked diffusion, MD4 top-p 0.98, 32 steps", dict(steps=32, sampler="topp", top_p=0.98)),
              ("diffusion", "masked diffusion, ReMDM cap 0.008, 32 steps", dict(steps=32, remask="cap",
                                                                                remask_eta=0.008)),
              ("diffusion", "masked diffusion, ReMDM rescale 0.015, 32 steps", dict(steps=32, remask="rescale",
                                                                                    remask_eta=0.015)),
              ("diffusion", "masked diffusion, ReMDM loop 0.02, 32 steps", dict(steps=32, remask="loop",
                                                                                remask_eta=0.02)),
              ("uniform_diffusion", "uniform diffusion, 32 steps", dict(steps=32)),
              ("uniform_diffusion", "uniform diffusion, 32 steps + 1 corrector", dict(steps=32, corrector_steps=1)),
              ("mask_replace", "mask-and-replace, 50 steps", dict(steps=50)),
              ("mask_replace", "mask-and-replace, purity, 50 steps", dict(steps=50, strategy="purity"))]
DEMO_CONFIGS = {"maskgit": "maskgit_fashion_mnist.py", "autoregressive": "ar_fashion_mnist.py",
                "diffusion": "diffusion_fashion_mnist.py", "uniform_diffusion": "uniform_diffusion_fashion_mnist.py",
                "mask_replace": "mask_replace_fashion_mnist.py"}


def best_time(fn, repeats):
  jax.block_until_ready(fn())  # compile + warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return min(times)


def apply_overrides(c, pairs):
  """KEY=VALUE pairs (values: Python literals, else strings) onto an unlocked copy of config `c`."""
  c = c.copy_and_resolve_references()
  c.unlock()
  for pair in pairs:
    key, sep, text = pair.partition("=")
    if not sep:
      raise ValueError(f"--set={pair!r}: expected KEY=VALUE, e.g. network.depth=1.")
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    *parents, leaf = key.split(".")
    node = c
    for p in parents:
      node = node[p]
    if leaf not in node:
      raise KeyError(f"--set={pair!r}: the config has no key {key!r}.")
    node[leaf] = value
  return c


def recipe_cases(specs, overrides, compute_dtype):
  """(config, label, sampler kwargs) of each --configs spec: the sampler its config sets."""
  cases = []
  for spec in specs:
    dtype = [f"network.compute_dtype={compute_dtype}"] if compute_dtype else []
    c = apply_overrides(config_lib.load_config(os.path.join(ROOT, spec)), overrides + dtype)
    kwargs = build.sampler_kwargs(c)
    name = os.path.splitext(os.path.basename(spec.partition(":")[0]))[0]
    steps = f", {kwargs['steps']} steps" if "steps" in kwargs else ", KV cache"
    guidance = f", guidance {kwargs['guidance_scale']:g}" if kwargs["guidance_scale"] != 1.0 else ""
    cases.append((c, f"{name} ({c.prior.name}{steps}{guidance})", kwargs))
  return cases


def demo_cases():
  return [(config_lib.load_config(os.path.join(ROOT, "configs/prior", DEMO_CONFIGS[name]) + ":tokenizer=unused"),
           label, kwargs) for name, label, kwargs in DEMO_CASES]


def time_samplers(cases, codebook_size, grid, batches, repeats):
  rows = []
  for c, label, kwargs in cases:
    prior = build.prior(c, codebook_size, grid, nnx.Rngs(0))
    graphdef, state = nnx.split(prior)
    nfe = prior.forward_passes(**kwargs)
    for batch in batches:
      labels = jnp.arange(batch) % max(c.prior.num_classes, 1)
      sample = jax.jit(lambda s, r, y, g=graphdef, k=kwargs: nnx.merge(g, s).sample(r, y, **k))
      seconds = best_time(lambda: sample(state, jax.random.key(0), labels), repeats)
      rows.append({"sampler": label, "batch": batch, "nfe": nfe, "guidance": kwargs.get("guidance_scale", 1.0),
                   "ms_per_batch": 1000 * seconds, "ms_per_image": 1000 * seconds / batch,
                   "network": f"width {c.network.width}, depth {c.network.depth}, {c.network.compute_dtype}"})
      print(rows[-1], flush=True)
  return rows


def decode_time(spec, overrides, grid, repeats, batch=64):
  """ms per image of decoding a batch of codes with the tokenizer of config `spec` (with KEY=VALUE overrides)."""
  c = apply_overrides(config_lib.load_config(os.path.join(ROOT, spec)), overrides)
  tok = build.tokenizer(c, nnx.Rngs(0))
  graph_t, state_t = nnx.split(tok)
  decode = jax.jit(lambda s, x: nnx.merge(graph_t, s).decode(x))
  codes = jnp.zeros((batch, *grid), jnp.int32)
  try:
    jax.eval_shape(decode, state_t, codes)
  except Exception as e:  # noqa: BLE001 (any shape error of the decoder)
    raise ValueError(f"The tokenizer of {spec} cannot decode codes of shape {'x'.join(map(str, grid))} (--codes): "
                     f"{e}") from e
  return 1000 * best_time(lambda: decode(state_t, codes), repeats) / batch


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--configs", default="", help="comma-separated prior configs (default: the demo sweep)")
  parser.add_argument("--codes", default="1000:7x7", help="VOCABULARY:HxW (or HxWxD, stacked) of the codes sampled")
  parser.add_argument("--tokenizer", default="", help="tokenizer config whose decoder is timed "
                      "(default: configs/demo.py for the demo sweep, none with --configs)")
  parser.add_argument("--compute_dtype", default="", help="network.compute_dtype of every config, e.g. bfloat16")
  parser.add_argument("--set", action="append", default=[], help="KEY=VALUE override of every --configs config")
  parser.add_argument("--tokenizer_set", action="append", default=[], help="KEY=VALUE override of --tokenizer")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--batches", default="1,64")
  parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/sampling"))
  args = parser.parse_args()
  codebook_size, grid = parse_codes(args.codes)
  batches = [int(b) for b in args.batches.split(",")]
  if args.configs:
    cases = recipe_cases(args.configs.split(","), args.set, args.compute_dtype)
    tokenizer = args.tokenizer
  else:
    if args.set or args.tokenizer_set or args.compute_dtype:
      parser.error("--set, --tokenizer_set and --compute_dtype apply to --configs only.")
    cases, tokenizer = demo_cases(), args.tokenizer or "configs/demo.py"
  rows = time_samplers(cases, codebook_size, grid, batches, args.repeats)
  tokenizer_set = args.tokenizer_set + ([f"model.compute_dtype={args.compute_dtype}"] if args.compute_dtype else [])
  decode_ms = decode_time(tokenizer, tokenizer_set, grid, args.repeats) if tokenizer else None

  device = f"{jax.devices()[0].device_kind} ({platform.machine()}, {os.cpu_count()} cores)"
  command = "python benchmarks/sampling.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
  networks = sorted({r["network"] for r in rows})
  decoding = (f"Decoding 64 images with the tokenizer of `{tokenizer}` adds "
              f"{decode_ms:.2f} ms/image." if tokenizer else "Decoding is not timed (no --tokenizer).")
  lines = ["# Sampling speed of the priors", "",
           f"Device: {device}. Networks: {'; '.join(networks)}. Codes: {grid[0]}x{grid[1]} of {codebook_size} "
           "entries, class-conditional. NFE = sequential network evaluations per batch; guidance > 1 doubles the "
           f"batch each evaluation sees. Tokens only: {decoding} Command: `{command.strip()}`.", "",
           "| sampler | batch | NFE | guidance | ms / batch | ms / image |", "|---|---:|---:|---:|---:|---:|"]
  lines += [f"| {r['sampler']} | {r['batch']} | {r['nfe']} | {r['guidance']:g} | {r['ms_per_batch']:.1f} | "
            f"{r['ms_per_image']:.2f} |" for r in rows]
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(args.out + ".json", "w") as f:
    json.dump({"device": device, "command": command.strip(), "codes": args.codes,
               "decode_ms_per_image": decode_ms, "rows": rows}, f, indent=2)
  print("\n".join(lines))


if __name__ == "__main__":
  main()
