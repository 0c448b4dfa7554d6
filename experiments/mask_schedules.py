"""MaskGIT's decoding mask schedules against the number of decoding steps T (Chang et al. 2022, Fig. 8's
schedules study) at Fashion-MNIST scale, on one trained MaskGIT prior.

  python experiments/mask_schedules.py --prior=runs/demo/prior                  # 4 schedules x T = 4 .. 32
  python experiments/mask_schedules.py --prior=DIR --seeds=0,1,2                # mean +- std over sampling seeds
  python experiments/mask_schedules.py --prior=DIR --steps=32 --resume          # adds T = 32 to the results file
  python experiments/mask_schedules.py --prior=DIR --schedules=cosine,arccos,exp --steps=8,16
  python experiments/mask_schedules.py --prior=DIR --quick --out=/tmp/curves    # 2 schedules x 3 T, 200 samples
  python experiments/mask_schedules.py --tokenizer=DIR                          # trains the MaskGIT prior first

The prior is loaded once and sampled at every (schedule, T) with only `sampling.mask_schedule` and
`sampling.steps` changed (the training schedule, guidance and choice temperature stay the run's), as `python -m
vqgen.sample --workdir=DIR --metrics --seed=S --mask_schedule=.. --steps=..` would. Schedules
(vqgen/priors/schedules.py) give the fraction still masked after progress r: cosine cos(pi r / 2), linear 1 - r,
square 1 - r^2 (the `power` schedule), log -log2(r) / log2(N), and arccos, exp. Without --prior, the MaskGIT of
configs/prior/maskgit_fashion_mnist.py (+ --variant) is trained in WORKDIR/maskgit over --tokenizer, or over the
demo tokenizer (configs/demo.py, trained first in WORKDIR/tokenizer). Writes experiments/results/
mask_schedules[_TAG].md, .json and .png (FD, recall and class accuracy against T, one line per schedule).
"""

import argparse
import os

import curves_lib as lib
from vqgen.evaluation.samples import JUDGES, judge_key
from vqgen.priors.schedules import MASK_SCHEDULES

ALIASES = {"square": "power"}  # MaskGIT's name for 1 - r^2 (power with exponent 2, the default)
NAME = "mask_schedules"


def prior_workdir(args) -> str:
  if args.prior:
    return args.prior
  tokenizer = lib.tokenizer_workdir(args.tokenizer, args.workdir)
  return lib.train_prior("maskgit", tokenizer, os.path.join(os.path.abspath(args.workdir), "maskgit"),
                         args.variant, steps=args.train_steps)["workdir"]


def write(points, sweep, out, args):
  rows = lib.aggregate(points, by=("schedule", "T"))
  schedules = list(dict.fromkeys(r["schedule"] for r in rows))
  steps = sorted({r["T"] for r in rows})
  cell = {(r["schedule"], r["T"]): r for r in rows}
  lines = ["# MaskGIT decoding schedules against the number of decoding steps", "",
           f"Command: `{lib.command()}`.", "", f"Prior {sweep.describe()}.", "",
           lib.floors_text(rows[0]) + f". Sampling seeds {', '.join(map(str, rows[0]['seeds']))}"
           + (" (mean +- std)" if rows[0]["n"] > 1 else "") + ".", "",
           "Fraction of the codes still masked after progress r (priors/schedules.py): cosine cos(pi r / 2), "
           "linear 1 - r, square 1 - r^2 (`power`), log -log2(r) / log2(N), arccos arccos(r) / (pi / 2), exp "
           "1 - 2^(-log2(N) (1 - r)); only the decoding schedule changes, the prior was trained with "
           f"`{sweep.config.prior.mask_schedule}`."]
  for judge in JUDGES:  # (points scored before the contrastive judge lack its FD)
    fd = judge_key("sample_fd", judge)
    if any(f"{fd}_mean" in r for r in rows):
      lines += ["", f"FD by the {judge} judge by schedule (columns) and decoding steps T (rows):", ""]
      lines += lib.table(["T"] + schedules, [[str(t)] + [lib.spread(cell[s, t], fd) if (s, t) in cell else ""
                                                         for s in schedules] for t in steps])
  lines += ["", "Every score:", ""]
  lines += lib.table(["schedule", "T"] + [lib.HEADERS[m] for m in lib.METRICS] + ["ms/image"],
                     [[r["schedule"], str(r["T"])] + [lib.spread(r, m) for m in lib.METRICS]
                      + [f"{r['ms_per_image']:.1f}"] for r in rows], numeric_from=1)
  lib.write(out, lines, {"command": lib.command(), "prior": sweep.workdir, "points": points, "summary": rows})
  fig, axes = lib.figure(3, 4.6, 3.8)
  for s in schedules:
    line = [r for r in rows if r["schedule"] == s]
    ts = [r["T"] for r in line]
    lib.curve(axes[0], ts, line, "sample_fd", s)
    lib.curve(axes[1], ts, line, "recall", s)
    lib.curve(axes[2], ts, line, "class_accuracy", s, scale=100)
  lib.floor_lines(axes[0], rows[0])
  for ax, label in zip(axes, ("Frechet distance (classifier features)", "recall (k = 3)", "class accuracy (%)")):
    ax.set_xlabel("decoding steps T")
    ax.set_ylabel(label)
    ax.set_xticks(steps)
  axes[0].legend(fontsize=8)
  lib.save(fig, out, f"MaskGIT mask schedules, {rows[0]['num_samples']} samples per point, prior "
                     f"{os.path.join(*sweep.workdir.split(os.sep)[-2:])}")


def main(args):
  names = lib.choices(args.schedules, list(MASK_SCHEDULES) + list(ALIASES), "mask schedule")
  steps = lib.numbers(args.steps, "--steps")
  seeds = lib.numbers(args.seeds, "--seeds")
  if min(steps) < 1:
    raise lib.UsageError(f"--steps must be >= 1, got {args.steps}")
  sweep = lib.Sweep(prior_workdir(args), args.num_samples, args.batch_size, family="maskgit")
  out = lib.outputs(args, NAME)
  points = [p for p in lib.earlier_points(args, out, lambda data, p: data.get("prior"))
            if sweep.drew(p, swept=("steps", "schedule"))]
  for name in names:
    for t in steps:
      for seed in seeds:
        if any((p["schedule"], p["T"], p["seed"]) == (name, t, seed) for p in points):
          continue
        row = sweep.score(seed, mask_schedule=ALIASES.get(name, name), steps=t)
        points.append({**row, "schedule": name, "T": t})
    write(points, sweep, out, args)  # after every schedule: an interrupted sweep keeps its curves


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--prior", default="", help="a trained MaskGIT prior workdir (default: train one)")
  parser.add_argument("--tokenizer", default="", help="without --prior: the tokenizer to train it over "
                      "(default: the demo's, trained first)")
  parser.add_argument("--train_steps", type=int, default=0, help="without --prior: training steps (0 = the "
                      "config's)")
  parser.add_argument("--variant", default="", help="without --prior: key=value,... of the prior config")
  parser.add_argument("--schedules", default="cosine,linear,square,log")
  parser.add_argument("--steps", default="4,8,12,16,24,32", help="decoding steps T")
  parser.add_argument("--quick", action="store_true", help="cosine and linear at T = 4, 8, 16, 200 samples")
  parser.add_argument("--resume", action="store_true", help="keep the points of the results file drawn from the "
                      "same prior with the same samples and sampler, and draw only the missing (schedule, T, seed)")
  lib.add_common_args(parser, NAME)
  lib.main_guard(parser, main, quick=dict(schedules="cosine,linear", steps="4,8,16", num_samples=200))
