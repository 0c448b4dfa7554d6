"""The prior comparison (experiments/prior_comparison.py) over several training seeds per family: how much of
the gap between families is the seed.

  python experiments/prior_seeds.py --tokenizer=runs/demo/tokenizer                     # 5 families x 3 seeds
  python experiments/prior_seeds.py --tokenizer=DIR --priors=maskgit,autoregressive --train_seeds=0,1,2,3,4
  python experiments/prior_seeds.py --tokenizer=DIR --steps=4800 --batch_size=32 --variant=positions=2d --tag=b32
  python experiments/prior_seeds.py --tokenizer=DIR --resume         # only the (prior, seed) runs not yet in it
  python experiments/prior_seeds.py --tokenizer=DIR --quick --out=/tmp/curves   # 2 families x 2 seeds, 100 steps

Each run is prior_comparison.py's (the family's configs/prior/ file with the same --steps, --batch_size and
--variant, its default sampler, its own end-of-run evaluation of 1000 class-balanced samples) with config.seed =
the training seed, in WORKDIR/<prior>_seed<S>[_TAG]. The seed sets the initialisation, the data order, the
dropout and the evaluation's sampling key (seed + 1), so the spread is that of the whole run. --priors takes any
family of vqgen.config.PRIOR_CONFIGS. Without --tokenizer the demo tokenizer (configs/demo.py) is trained first
in WORKDIR/tokenizer. Writes experiments/results/prior_seeds[_TAG].md (per family: mean +- std and min-max of
FD and FD / recon FD by each judge (the classifier and the contrastive encoder), precision, recall, class accuracy
and validation NLL; then every run), .json and .png (the classifier's FD and class accuracy per family: every seed,
and mean +- std).
"""

import argparse
import json
import os

import numpy as np

import curves_lib as lib

NAME = "prior_seeds"
METRICS = tuple(lib.METRICS) + ("val_nll",)


def minutes(run: dict) -> float:
  """The run's training time (the loop's clock; files from before it was recorded: the call's wall-clock)."""
  return run.get("train_minutes") or run["minutes"]


def write(runs, out, args):
  rows = lib.aggregate(runs, by=("prior",), metrics=METRICS)
  first = runs[0]
  lines = ["# Priors at an equal budget over one tokenizer's codes, several training seeds each", "",
           f"Command: `{lib.command()}`. Tokenizer `{first['tokenizer']}`; every prior: {first['steps']} steps at "
           f"batch {first['batch_size']}, network {first['network']}"
           + (f", variant `{args.variant}`" if args.variant else "") + ", its default sampler. "
           + lib.floors_text(first) + ".", "",
           "Per family: mean +- std over the training seeds (min-max in brackets).", ""]
  lines += lib.table(["prior", "seeds", "validation NLL"] + [lib.HEADERS[m] for m in lib.METRICS]
                     + ["training minutes / run"],
                     [[r["prior"], ", ".join(map(str, r["seeds"])),
                       f"{lib.spread(r, 'val_nll', '{:.3f}')} {r['val_nll_unit']}"]
                      + [lib.spread(r, m, extremes=m.startswith("sample_fd")) for m in lib.METRICS]
                      + [f"{np.mean([minutes(x) for x in runs if x['prior'] == r['prior']]):.1f}"] for r in rows],
                     numeric_from=2)
  samplers = {r["prior"]: r["sampler"] for r in runs if "sampler" in r}
  if samplers:
    lines += ["", "Samplers (each family's config at the run): " + "; ".join(f"{k}: {v}" for k, v in samplers.items())
              + "."]
  lines += ["", "Every run:", ""]
  lines += lib.table(["prior", "seed", "validation NLL"] + [lib.HEADERS[m] for m in lib.METRICS] + ["training minutes"],
                     [[r["prior"], str(r["seed"]), f"{r['val_nll']:.3f} {r['val_nll_unit']}"] + lib.cells(r)
                      + [f"{minutes(r):.1f}"] for r in runs], numeric_from=1)
  lib.write(out, lines, runs)
  fig, axes = lib.figure(2, 0.9 * len(rows) + 3, 3.8)
  x = np.arange(len(rows))
  for ax, metric, scale, label in ((axes[0], "sample_fd", 1, "Frechet distance"),
                                   (axes[1], "class_accuracy", 100, "class accuracy (%)")):
    for i, r in enumerate(rows):
      values = [p[metric] * scale for p in runs if p["prior"] == r["prior"]]
      ax.plot(np.full(len(values), i) + 0.12, values, "o", color="gray", ms=4, alpha=0.7)
    lib.curve(ax, x, rows, metric, "mean +- std over seeds", scale=scale, ls="none", color="C0")
    ax.set_xticks(x, [r["prior"] for r in rows], rotation=20, fontsize=8)
    ax.set_xlim(-0.5, len(rows) - 0.5)
    ax.set_ylabel(label)
  lib.floor_lines(axes[0], first)
  axes[0].legend(fontsize=7)
  seed_sets = sorted({tuple(r["seeds"]) for r in rows})
  seeds = (f"the training seeds {', '.join(map(str, seed_sets[0]))}" if len(seed_sets) == 1
           else "each family's training seeds (see the table)")
  lib.save(fig, out, f"{first['steps']} steps at batch {first['batch_size']}; grey: {seeds}")


def main(args):
  names = [n for n in args.priors.split(",") if n]
  for name in names or [""]:
    lib.check_family(name)
  seeds = lib.numbers(args.train_seeds, "--train_seeds")
  tokenizer = lib.tokenizer_workdir(args.tokenizer, args.workdir)
  suffix = f"_{args.tag}" if args.tag else ""
  out = lib.outputs(args, NAME)
  runs = []
  if args.resume and os.path.exists(out + ".json"):
    with open(out + ".json") as f:
      runs = [r for r in json.load(f) if (r["steps"], r["batch_size"], r["tokenizer"], r.get("variant"))
              == (args.steps, args.batch_size, tokenizer, args.variant)]
    for r in runs:  # rows written before the training time was recorded: read it from the run's log
      if r.get("train_minutes") is None and os.path.exists(os.path.join(r["workdir"], "metrics.jsonl")):
        r["train_minutes"] = lib.training_minutes(r["workdir"])
  for name in names:
    for seed in seeds:
      if any((r["prior"], r["seed"]) == (name, seed) for r in runs):
        continue
      r = lib.train_prior(name, tokenizer, os.path.join(os.path.abspath(args.workdir), f"{name}_seed{seed}{suffix}"),
                          args.variant, seed=seed, steps=args.steps, batch_size=args.batch_size)
      value, unit = lib.val_nll(r)
      runs.append(dict(r, variant=args.variant, val_nll=value, val_nll_unit=unit, **lib.fd_ratios(r)))
      write(runs, out, args)  # after every run: an interrupted comparison keeps its rows
  if not runs:
    raise lib.UsageError("no runs to report")
  write(runs, out, args)


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  lib.add_budget_args(parser, NAME)
  parser.add_argument("--train_seeds", default="0,1,2", help="config.seed of each family's runs")
  parser.add_argument("--resume", action="store_true", help="keep the runs of an earlier call with the same "
                      "tokenizer, steps, batch and variant and train only the missing ones")
  parser.add_argument("--out", default=lib.RESULTS, help="folder of the results files")
  parser.add_argument("--quick", action="store_true", help="maskgit and autoregressive, seeds 0 and 1, 100 steps, "
                      "200 samples each")
  lib.main_guard(parser, main, quick=dict(priors="maskgit,autoregressive", train_seeds="0,1", steps=100,
                                          variant="num_samples=200"))
