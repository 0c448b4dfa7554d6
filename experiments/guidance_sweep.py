"""Classifier-free guidance: FD, precision, recall and class accuracy against the guidance scale and its schedule
over the sampling steps, for one or more trained priors (the guidance trade-off curves of Ho & Salimans 2022,
MUSE's guidance annealing).

  python experiments/guidance_sweep.py --priors=maskgit=runs/demo/prior                    # 8 scales x 3 schedules
  python experiments/guidance_sweep.py --priors=maskgit=DIR,ar=DIR2 --seeds=0,1,2          # mean +- std over seeds
  python experiments/guidance_sweep.py --priors=maskgit,autoregressive --tokenizer=DIR     # trains both first
  python experiments/guidance_sweep.py --priors=maskgit=DIR --quick --out=/tmp/curves      # 4 points, 200 samples
  python experiments/guidance_sweep.py --priors=maskgit=DIR,diffusion=DIR3 --resume  # adds a prior to the file
  # docs/results.md "Guidance annealing" (constant 2, linear ramps 1 -> 3, 3.5, 4, cosine 1 -> 3), 3 seeds:
  python experiments/guidance_sweep.py --priors=maskgit=DIR --seeds=0,1,2 --tag=annealing \\
      --settings=constant:2,linear:3,linear:3.5,linear:4,cosine:3
  python experiments/guidance_sweep.py ... --settings=linear:3 --sampling=choice_temperature=6 --tag=annealing_ct6
  python experiments/guidance_sweep.py ... --settings=linear:3 --sampling=steps=12 --tag=annealing_t12

Guidance (vqgen/priors/sampling.py): guided = log p_u + s (log p_c - log p_u); s = 1 is the conditional model,
s = 0 the unconditional one. Schedules: `constant` s at every step; `linear` and `cosine` ramp from 1 at the
first step to s at the last (so "linear, s = 3" is the "linear ramp 1 -> 3" of docs/results.md); at s = 1 all
three are the same sampler, drawn once. Each prior is loaded once and sampled at every (schedule, scale, seed)
with only `sampling.guidance_scale` / `sampling.guidance_schedule` (and --sampling's keys) changed, as `python -m
vqgen.sample --workdir=DIR --metrics --seed=S --guidance_scale=.. --guidance_schedule=..` would. --priors takes
NAME=WORKDIR of trained priors, or a family name (configs/prior/<family>_fashion_mnist.py, + --variant,
--train_steps) to train in WORKDIR/<family> over --tokenizer (default: the demo tokenizer, trained first).
Writes experiments/results/guidance_sweep[_TAG].md, .json and .png (FD against the scale, FD against class
accuracy, precision against recall; one line per prior and schedule).
"""

import argparse
import os

import numpy as np

import curves_lib as lib
from vqgen.evaluation.samples import JUDGES, judge_key
from vqgen.priors.sampling import GUIDANCE_SCHEDULES

NAME = "guidance_sweep"
STYLES = {"constant": "-", "linear": "--", "cosine": ":"}


def priors(args) -> dict:
  """{name: workdir}: NAME=DIR entries as given, bare family names trained over the tokenizer."""
  out, tokenizer = {}, None
  for entry in (e for e in args.priors.split(",") if e):
    name, sep, workdir = entry.partition("=")
    if not sep:
      lib.check_family(name)
      tokenizer = tokenizer or lib.tokenizer_workdir(args.tokenizer, args.workdir)
      workdir = lib.train_prior(name, tokenizer, os.path.join(os.path.abspath(args.workdir), name), args.variant,
                                steps=args.train_steps)["workdir"]
    if name in out:
      raise lib.UsageError(f"--priors names {name!r} twice")
    out[name] = lib.check_workdir(workdir, "prior")
  if not out:
    raise lib.UsageError("--priors is empty: give NAME=WORKDIR of trained priors or family names to train")
  return out


def settings(args) -> list[tuple[str, float]]:
  """(schedule, scale) pairs: --settings as listed, else every --schedules x --scales."""
  if args.settings:
    pairs = []
    for item in args.settings.split(","):
      schedule, sep, scale = item.partition(":")
      if not sep:
        raise lib.UsageError(f"--settings: {item!r} is not SCHEDULE:SCALE (e.g. linear:3)")
      pairs.append((lib.choices(schedule, GUIDANCE_SCHEDULES, "guidance schedule")[0],
                    lib.numbers(scale, "--settings scale", float)[0]))
    return pairs
  schedules = lib.choices(args.schedules, GUIDANCE_SCHEDULES, "guidance schedule")
  return [(s, g) for s in schedules for g in lib.numbers(args.scales, "--scales", float)]


def write(points, sweeps, out, args):
  rows = lib.aggregate(points, by=("prior", "schedule", "scale"))
  groups = list(dict.fromkeys((r["prior"], r["schedule"]) for r in rows))
  lines = ["# Classifier-free guidance: scale and schedule", "", f"Command: `{lib.command()}`.", ""]
  lines += [f"Prior `{name}` {sweep.describe()}." for name, sweep in sweeps.items()]
  extra = lib.settings_text(lib.sampling_overrides(args.sampling)) if args.sampling else ""
  lines += ["", lib.floors_text(rows[0]) + f" (floors of the first prior's tokenizer). Sampling seeds "
            f"{', '.join(map(str, rows[0]['seeds']))}" + (" (mean +- std)" if rows[0]["n"] > 1 else "")
            + (f"; every point also samples with {extra}" if extra else "") + ". Schedules ramp the scale "
            "from 1 at the first step to `scale` at the last; at scale 1 the three are the same sampler.", ""]
  seeds_column = rows[0]["n"] > 1
  header = ["prior", "schedule", "scale"] + (["FD per seed"] if seeds_column else []) + [
      lib.HEADERS[m] for m in lib.METRICS] + ["NFE", "ms/image"]
  body = []
  for r in rows:
    per_seed = [" / ".join(f"{p['sample_fd']:.1f}" for p in points if (p["prior"], p["schedule"], p["scale"])
                           == (r["prior"], r["schedule"], r["scale"]))] if seeds_column else []
    body.append([r["prior"], r["schedule"], f"{r['scale']:g}"] + per_seed + [lib.spread(r, m) for m in lib.METRICS]
                + [str(r["forward_passes"]), f"{r['ms_per_image']:.1f}"])
  lines += lib.table(header, body, numeric_from=2)
  for judge in JUDGES:  # (points scored before the contrastive judge lack its FD)
    fd, ratio = judge_key("sample_fd", judge), judge_key("fd_over_recon", judge)
    best = min((r for r in rows if f"{fd}_mean" in r), key=lambda r: r[f"{fd}_mean"], default=None)
    if best:
      lines += ["", f"Lowest mean FD by the {judge} judge: {best['prior']}, {best['schedule']} guidance at scale "
                f"{best['scale']:g}: FD {lib.spread(best, fd)} ({best[f'{ratio}_mean']:.1f}x the reconstruction FD), "
                f"class accuracy {best['class_accuracy_mean']:.1%}."]
  lib.write(out, lines, {"command": lib.command(), "priors": {k: s.workdir for k, s in sweeps.items()},
                         "points": points, "summary": rows})
  fig, axes = lib.figure(3, 4.8, 4.0)
  for prior, schedule in groups:  # a colour per prior and a line style per schedule (one prior: a colour each)
    line = sorted((r for r in rows if (r["prior"], r["schedule"]) == (prior, schedule)), key=lambda r: r["scale"])
    color = list(sweeps).index(prior) if len(sweeps) > 1 else list(STYLES).index(schedule)
    style = dict(color=f"C{color}", ls=STYLES[schedule])
    label = f"{prior}, {schedule}" if len(sweeps) > 1 else schedule
    lib.curve(axes[0], [r["scale"] for r in line], line, "sample_fd", label, **style)
    for ax, (x, y) in zip(axes[1:], (("class_accuracy", "sample_fd"), ("recall", "precision"))):
      xs = np.array([r[f"{x}_mean"] for r in line]) * (100 if x == "class_accuracy" else 1)
      ax.plot(xs, [r[f"{y}_mean"] for r in line], marker="o", ms=4, label=label, **style)
      for xi, r in zip(xs, line):
        ax.annotate(f"{r['scale']:g}", (xi, r[f"{y}_mean"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
  lib.floor_lines(axes[0], rows[0])
  axes[2].plot([rows[0]["real_recall_floor"]], [rows[0]["real_precision_floor"]], "k*", ms=9, label="real floor")
  for ax, (x, y) in zip(axes, (("guidance scale s", "Frechet distance"),
                               ("class accuracy (%)", "Frechet distance (points: scale)"),
                               ("recall (k = 3)", "precision (k = 3)"))):
    ax.set_xlabel(x)
    ax.set_ylabel(y)
  axes[0].legend(fontsize=7)
  axes[2].legend(fontsize=7)
  lib.save(fig, out, f"Classifier-free guidance, {rows[0]['num_samples']} samples per point")


def main(args):
  pairs, seeds = settings(args), lib.numbers(args.seeds, "--seeds")
  extra = lib.sampling_overrides(args.sampling)
  if {"guidance_scale", "guidance_schedule"} & set(extra):
    raise lib.UsageError("--sampling cannot set the guidance: use --scales / --schedules / --settings")
  if any(g < 0 for _, g in pairs):
    raise lib.UsageError("guidance scales must be >= 0")
  sweeps = {}
  for name, workdir in priors(args).items():
    sweeps[name] = lib.Sweep(workdir, args.num_samples, args.batch_size)
    if not sweeps[name].num_classes:
      raise lib.UsageError(f"prior {name!r} ({workdir}) is unconditional: there is no guidance to sweep")
    sweeps[name].settings(**extra)  # a bad --sampling value fails here, before any sampling
  out = lib.outputs(args, NAME)
  swept = ("guidance_scale", "guidance_schedule", "schedule")  # "schedule": MaskGIT's, overwritten in the points
  points = [p for p in lib.earlier_points(args, out, lambda data, p: data.get("priors", {}).get(p["prior"]))
            if p["prior"] in sweeps and sweeps[p["prior"]].drew(p, swept, **extra)]
  for name, sweep in sweeps.items():
    drawn = {}  # at scale 1 every schedule is the same sampler: drawn once per seed
    for schedule, scale in pairs:
      for seed in seeds:
        if any((p["prior"], p["schedule"], p["scale"], p["seed"]) == (name, schedule, scale, seed) for p in points):
          continue
        key = (scale, schedule if scale != 1 else "constant", seed)
        if key not in drawn:
          drawn[key] = sweep.score(seed, guidance_scale=scale, guidance_schedule=key[1], **extra)
        points.append({**drawn[key], "prior": name, "schedule": schedule, "scale": scale})
      write(points, sweeps, out, args)  # after every point's seeds: an interrupted sweep keeps its rows


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--priors", default="", help="NAME=WORKDIR of trained priors, or family names to train, "
                      "comma separated")
  parser.add_argument("--tokenizer", default="", help="for family names: the tokenizer to train them over "
                      "(default: the demo's, trained first)")
  parser.add_argument("--train_steps", type=int, default=0, help="for family names: steps (0 = the config's)")
  parser.add_argument("--variant", default="", help="for family names: key=value,... of the prior configs")
  parser.add_argument("--scales", default="0,0.5,1,1.5,2,3,4,5")
  parser.add_argument("--schedules", default=",".join(GUIDANCE_SCHEDULES))
  parser.add_argument("--settings", default="", help="SCHEDULE:SCALE,... instead of the --schedules x --scales grid")
  parser.add_argument("--sampling", default="", help="other config.sampling keys for every point, key=value,...")
  parser.add_argument("--quick", action="store_true", help="constant and linear at scales 1 and 3, 200 samples")
  parser.add_argument("--resume", action="store_true", help="keep the points of the results file drawn from the "
                      "same priors with the same samples and sampler, and draw only the missing ones")
  lib.add_common_args(parser, NAME)
  lib.main_guard(parser, main, quick=dict(schedules="constant,linear", scales="1,3", num_samples=200))
