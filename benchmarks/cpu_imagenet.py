"""The five ImageNet-256 recipes at real width on this machine's CPU: one table of step time, images/s, tokens/s
and achieved GFLOP/s beside the rate of a plain float32 matmul (the practical peak of the CPU).

  python benchmarks/cpu_imagenet.py [--run]

--run first measures each recipe with benchmarks/train_throughput.py (float32, one CPU device, synthetic data, 3 timed
steps; about 15 minutes on 2 cores; run it on an idle machine), writing benchmarks/results/cpu_<name>.{md,json};
without it, the table is rebuilt from those files. Writes benchmarks/results/cpu_imagenet.md.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks/results")
TOKENIZER, PRIOR = ["--per_device_batch=1"], ["--codes=1024:16x16", "--per_device_batch=4"]
RECIPES = {  # name: (label, config, flags)
    "maskgit_vqgan": ("maskgit_vqgan_imagenet (+ StyleGAN D + LPIPS-VGG16)",
                      "configs/tokenizer/maskgit_vqgan_imagenet.py:data=synthetic", TOKENIZER),
    "vit_vqgan": ("vit_vqgan_imagenet (Small, + StyleGAN D + LPIPS-VGG16)",
                  "configs/tokenizer/vit_vqgan_imagenet.py:data=synthetic", TOKENIZER),
    "maskgit": ("maskgit_imagenet (24 x 768)", "configs/prior/maskgit_imagenet.py", PRIOR),
    "ar": ("ar_imagenet (LlamaGen-B)", "configs/prior/ar_imagenet.py", PRIOR),
    "diffusion": ("diffusion_imagenet (MD4, 20 x 768)", "configs/prior/diffusion_imagenet.py", PRIOR),
}


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
  """The rate of one jitted n x n float32 matmul."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  f = jax.jit(lambda a, b: a @ b)
  a = jnp.ones((n, n), jnp.float32)
  f(a, a).block_until_ready()
  start = time.perf_counter()
  for _ in range(repeats):
    f(a, a).block_until_ready()
  return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--run", action="store_true", help="measure the recipes first (slow)")
  args = parser.parse_args()
  if args.run:
    for name, (_, config, flags) in RECIPES.items():
      subprocess.run([sys.executable, "benchmarks/train_throughput.py", f"--config={config}", *flags, "--steps=3",
                      "--measure=compute", "--batch_multiple=0", f"--out=benchmarks/results/cpu_{name}"],
                     cwd=ROOT, check=True)
  peak = matmul_gflops()
  lines = ["# The ImageNet-256 recipes at real width on this CPU", "",
           "Float32, one XLA:CPU device, synthetic data, 3 timed steps after warm-up, `--measure=compute` (the step "
           "alone). GFLOP/s = XLA's FLOPs per step / step time, beside its share of the rate of a jitted 2048 x 2048 "
           f"float32 matmul on the same machine ({peak:.0f} GFLOP/s when this table was written). Accelerator "
           "figures: `bash benchmarks/gpu.sh`. Command: `python benchmarks/cpu_imagenet.py --run` (on an idle "
           "machine; without --run the table is rebuilt from benchmarks/results/cpu_*.json).", "",
           "| recipe | params | batch | FLOPs / step | s / step | images / s | tokens / s | GFLOP/s | of the matmul "
           "rate | memory (XLA) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for name, (label, _, _) in RECIPES.items():
    with open(os.path.join(RESULTS, f"cpu_{name}.json")) as f:
      d = json.load(f)
    seconds = d["ms_per_step"]["compute"] / 1000
    gflops = d["flops_per_step"] / seconds / 1e9
    tokens = "-" if d.get("tokens_per_s") is None else f"{d['tokens_per_s']:.3g}"
    lines.append(f"| {label} | {d['params'] / 1e6:.1f}M | {d['batch_size']} | {d['flops_per_step']:.3g} | "
                 f"{seconds:.1f} | {d['images_per_s']['compute']:.3g} | {tokens} | {gflops:.1f} | "
                 f"{gflops / peak:.0%} | {d['peak_bytes_per_device'] / 1e9:.2f} GB |")
  lines += ["", "The measurements' own commands are in benchmarks/results/cpu_<name>.md."]
  with open(os.path.join(RESULTS, "cpu_imagenet.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
