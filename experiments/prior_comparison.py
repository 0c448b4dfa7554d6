"""The four prior families at an equal budget over the same frozen tokenizer's codes, scored alike.

  python experiments/prior_comparison.py --tokenizer=runs/demo/tokenizer          # 2400 steps each
  python experiments/prior_comparison.py --tokenizer=DIR --steps=4800 --priors=maskgit,autoregressive
  python experiments/prior_comparison.py --tokenizer=DIR --variant=width=192,depth=6 --tag=w192
  python experiments/prior_comparison.py --tokenizer=DIR --resume        # only the priors not yet in the table

Each prior is its config file (configs/prior/*_fashion_mnist.py) with the same network, batch and steps (plus
`--variant`, the config files' own `key=value` overrides); its default sampler (MaskGIT 8 steps, AR one pass per
code with the KV cache, both diffusions 32 steps; guidance 2 for all). Scores from the prior's own end-of-run
evaluation: 1000 class-balanced samples against the Fashion-MNIST test split (vqgen/evaluation/samples.py), FD by
each judge (the classifier and the contrastive encoder) beside its real-vs-real floor and the tokenizer's
reconstruction distance. Without --tokenizer the demo tokenizer
(configs/demo.py) is trained first in WORKDIR/tokenizer. Writes experiments/results/ (or --out)
prior_comparison[_TAG].md, .json and one PNG sample grid per prior (one row per class). The same comparison over
several training seeds per family: experiments/prior_seeds.py.
"""

import argparse
import json
import os
import shutil
import sys

import curves_lib as lib
from vqgen import config as config_lib


def validation(r: dict) -> str:
  """The likelihood each family reports: bits/token bounds for AR and the diffusions; MaskGIT has none."""
  value, unit = lib.val_nll(r)
  return f"{value:.3f} {unit}"


def write(rows, out, args):
  lines = ["# Priors at an equal budget over one tokenizer's codes", "",
           f"Command: `python experiments/prior_comparison.py {' '.join(sys.argv[1:])}`. Tokenizer "
           f"`{rows[0]['tokenizer']}`; every prior: {args.steps} steps at batch {rows[0]['batch_size']}, "
           f"network {rows[0]['network']}. {rows[0]['num_samples']} class-balanced samples vs the "
           f"{rows[0]['reference']}; real floor FD {lib.by_judges(rows[0], 'real_fd_floor')}, tokenizer "
           f"reconstruction FD {lib.by_judges(rows[0], 'recon_fd')}, the best a prior over these codes can expect; "
           f"real precision / recall floor {rows[0]['real_precision_floor']:.2f} / "
           f"{rows[0]['real_recall_floor']:.2f}. `minutes` is the whole run (training, validation, sampling, scoring) "
           "and `ms/image` the evaluation's sampling with decoding at batch 250, wall-clock on whatever else the "
           "machine ran: benchmarks/sampling.py is the timing.", ""]
  header = ["prior", "validation NLL"] + [lib.HEADERS[m] for m in lib.METRICS] + ["NFE", "ms/image", "minutes"]
  body = [[r["prior"], validation(r)] + lib.cells(dict(r, **lib.fd_ratios(r)))
          + [str(r["sample_forward_passes"]), f"{r['sample_ms_per_image']:.1f}", f"{r['minutes']:.1f}"] for r in rows]
  lines += lib.table(header, body, numeric_from=2)
  with open(out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(out + ".json", "w") as f:
    json.dump(rows, f, indent=2)
  print("\n".join(lines), flush=True)


def main():
  parser = argparse.ArgumentParser()
  lib.add_budget_args(parser, "prior_comparison")
  parser.add_argument("--resume", action="store_true", help="keep the rows of an earlier run with the same "
                      "tokenizer and steps and train only the missing priors")
  parser.add_argument("--out", default=lib.RESULTS, help="folder of the results files")
  args = parser.parse_args()
  for name in args.priors.split(","):
    if name not in config_lib.PRIOR_CONFIGS:
      parser.error(f"unknown prior {name!r}; choose from {sorted(config_lib.PRIOR_CONFIGS)}")
  tokenizer = lib.tokenizer_workdir(args.tokenizer, args.workdir)
  suffix = f"_{args.tag}" if args.tag else ""
  os.makedirs(args.out, exist_ok=True)
  out = os.path.join(args.out, "prior_comparison" + suffix)
  rows = []
  if args.resume and os.path.exists(out + ".json"):
    with open(out + ".json") as f:
      rows = [r for r in json.load(f) if r["steps"] == args.steps and r["tokenizer"] == tokenizer
              and r["batch_size"] == args.batch_size]
  for name in args.priors.split(","):
    if any(r["prior"] == name for r in rows):
      continue
    workdir = os.path.join(args.workdir, name + suffix)
    rows.append(lib.train_prior(name, tokenizer, workdir, args.variant, steps=args.steps,
                                batch_size=args.batch_size))
    shutil.copy(os.path.join(workdir, "samples.png"), f"{out}_{name}.png")
    write(rows, out, args)  # after every prior: an interrupted comparison keeps its rows


if __name__ == "__main__":
  main()
