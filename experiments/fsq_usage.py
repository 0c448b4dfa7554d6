"""What raises FSQ codebook usage on Fashion-MNIST? Capacity, training length, normalisation before FSQ.

  python experiments/fsq_usage.py            # 1500 steps per variant (~8 min each on 2 CPU cores)
  python experiments/fsq_usage.py --quick    # 300 steps per variant

Trains the demo tokenizer (FSQ (8, 5, 5, 5), 7x7 codes) in several variants, each for the same number of
steps at batch 128, and measures test PSNR, codebook usage over the whole test split and perplexity. Writes
experiments/results/fsq_usage.md and fsq_usage.png.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vqgen import config as config_lib  # noqa: E402
from vqgen.stages import run  # noqa: E402

VARIANTS = {
    "demo (64 ch, 2 res blocks)": {},
    "+ layernorm before FSQ": {"model.pre_quant_norm": "layernorm"},
    "smaller (32 ch, 1 res block)": {"model.channels": 32, "model.num_res_blocks": 1},
    "a third of the steps": {"train.steps": "third"},
}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--workdir", default=os.path.join(ROOT, "runs", "fsq_usage"))
  parser.add_argument("--out", default=os.path.join(ROOT, "experiments", "results", "fsq_usage"))
  parser.add_argument("--only", default="", help="comma-separated variant numbers (1-based) to (re)run; the "
                      "other rows are kept from an earlier results file")
  args = parser.parse_args()
  steps = 300 if args.quick else 1500
  only = {int(i) for i in args.only.split(",")} if args.only else set(range(1, len(VARIANTS) + 1))
  previous = {}
  if os.path.exists(args.out + ".json"):
    with open(args.out + ".json") as f:
      previous = {r["variant"]: r for r in json.load(f)}
  rows = []
  for number, (name, overrides) in enumerate(VARIANTS.items(), 1):
    if number not in only:
      if name in previous:
        rows.append(previous[name])
      continue
    c = config_lib.load_config(os.path.join(ROOT, "configs/demo.py"))
    c.train.steps = steps
    for key, value in overrides.items():
      section, leaf = key.split(".")
      c[section][leaf] = steps // 3 if value == "third" else value
    c.train.checkpoint_every = c.train.steps
    workdir = os.path.join(args.workdir, name.split(" (")[0].replace(" ", "_").replace("+", "plus"))
    start = time.perf_counter()
    results = run(c, workdir)
    rows.append({"variant": name, "steps": c.train.steps, "minutes": (time.perf_counter() - start) / 60,
                 **{k: results[k] for k in ("test_psnr", "codebook_usage", "codebook_perplexity")}})
    print(rows[-1], flush=True)
    with open(args.out + ".json", "w") as f:  # written as it goes: an interrupted run keeps its rows
      json.dump(rows, f, indent=2)

  lines = [f"# FSQ codebook usage on Fashion-MNIST ({'quick' if args.quick else 'full'} run)", "",
           "FSQ (8, 5, 5, 5) = 1000 codes, 7x7 codes per image, batch 128; usage and perplexity over the 10k "
           "test images; PSNR over all test pixels in [0, 1]. Command: `python experiments/fsq_usage.py"
           f"{' --quick' if args.quick else ''}`.", "",
           "| variant | steps | test PSNR (dB) | usage | perplexity | minutes |", "|---|---:|---:|---:|---:|---:|"]
  lines += [f"| {r['variant']} | {r['steps']} | {r['test_psnr']:.2f} | {r['codebook_usage']:.1%} | "
            f"{r['codebook_perplexity']:.0f} | {r['minutes']:.1f} |" for r in rows]
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(args.out + ".json", "w") as f:
    json.dump(rows, f, indent=2)
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
  names = [r["variant"] for r in rows]
  axes[0].barh(names, [100 * r["codebook_usage"] for r in rows])
  axes[0].set_xlabel("codebook usage on test split (%)")
  axes[1].barh(names, [r["test_psnr"] for r in rows])
  axes[1].set_xlabel("test PSNR (dB)")
  axes[1].set_yticks([])
  fig.tight_layout()
  fig.savefig(args.out + ".png", dpi=100)
  plt.close(fig)
  print("\n".join(lines))


if __name__ == "__main__":
  main()
