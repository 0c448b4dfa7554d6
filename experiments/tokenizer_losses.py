"""Which losses make a sharp tokenizer? MSE only, + perceptual, + perceptual + adversarial, conv and ViT.

  python experiments/tokenizer_losses.py --workdir=runs/tokenizer_losses [--rows=conv_mse,conv_perceptual,...]

Every row trains a Fashion-MNIST tokenizer at the demo tokenizer's compute (1500 steps at batch 128, FSQ
(8, 5, 5, 5) codes on a 7x7 grid) with `vqgen.stages.run` into <workdir>/<row> (a finished row is reused; an
interrupted one resumes), then scores it: test PSNR / SSIM / codebook usage (the run's own evaluation) and the
Frechet distance of the reconstructions of N training images against the test split by each sample-metric judge
(the classifier and the contrastive encoder, both blur-sensitive: experiments/results/degradation_ladder.md),
beside its real-vs-real floor. Then (unless --no-prior) the demo prior (configs/prior/maskgit_fashion_mnist.py)
trains on the MSE-only conv tokenizer and on the row of lowest reconstruction FD (the classifier's), in
<workdir>/prior_<row>, and their 1000 samples are scored by the same judges. Writes experiments/results/
tokenizer_losses.{md,json,png} (the PNG: the same test images reconstructed by each row) and
tokenizer_losses_samples.png (two samples per class for each prior).
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import curves_lib as lib  # noqa: E402
import numpy as np  # noqa: E402

from vqgen import config as config_lib  # noqa: E402
from vqgen import data as data_lib  # noqa: E402
from vqgen import images as images_lib  # noqa: E402
from vqgen.evaluation.samples import JUDGES, judge_key  # noqa: E402
from vqgen.stages import TokenizerStage, load_run, run  # noqa: E402
from vqgen.stages.classifier import default_workdir, sample_scorer  # noqa: E402

VQGAN = "configs/tokenizer/vqgan_fashion_mnist.py"
VIT = "configs/tokenizer/vit_vqgan_fashion_mnist.py"
PRIOR = "configs/prior/maskgit_fashion_mnist.py"  # the demo prior
ROWS = {  # name: (label, config spec relative to the repository); the objective's pixel loss is L1
    "conv_mse": ("conv, MSE only", f"{VQGAN}:pixel=l2,perceptual=0,adversarial=0"),
    "conv_perceptual": ("conv, L1 + perceptual", f"{VQGAN}:adversarial=0"),
    "conv_vqgan": ("conv, L1 + perceptual + adversarial", VQGAN),
    "vit_mse": ("ViT, MSE only", f"{VIT}:quantizer=fsq,pixel=l2,perceptual=0,adversarial=0"),
    "vit_perceptual": ("ViT, L1 + perceptual", f"{VIT}:quantizer=fsq,adversarial=0"),
    "vit_vqgan": ("ViT, L1 + perceptual + adversarial", f"{VIT}:quantizer=fsq"),
}
TUNING = {  # further rows of the 600-step tuning (experiments/results/tokenizer_tuning_600steps.md); not default
    "conv_l1_p1": ("conv, L1 + 1.0 perceptual", f"{VQGAN}:perceptual=1,adversarial=0"),
    "conv_l1_p1_a01": ("conv, L1 + 1.0 perceptual + 0.1 adversarial", f"{VQGAN}:perceptual=1"),
    "conv_l1_p1_a08": ("conv, L1 + 1.0 perceptual + 0.8 adversarial", f"{VQGAN}:perceptual=1,adversarial=0.8"),
}


def train(folder: str, spec: str) -> tuple[dict, float]:
  """Runs the config `spec` (a path relative to the repository, then `:variant`) in `folder`, or reuses the run
  that finished there before. Returns (its metrics.json, the minutes it took when it ran)."""
  minutes_file = os.path.join(folder, "minutes.json")
  if os.path.exists(os.path.join(folder, "metrics.json")):
    with open(os.path.join(folder, "metrics.json")) as f:
      metrics = json.load(f)
    minutes = 0.0
    if os.path.exists(minutes_file):
      with open(minutes_file) as f:
        minutes = json.load(f)["minutes"]
    return metrics, minutes
  print(f"== {os.path.basename(folder)}: {spec}", flush=True)
  start = time.perf_counter()
  results = run(config_lib.load_config(os.path.join(ROOT, spec)), folder)
  minutes = (time.perf_counter() - start) / 60
  with open(minutes_file, "w") as f:
    json.dump({"minutes": minutes}, f)
  return results, minutes


def with_steps(spec: str, steps: int) -> str:
  """The tokenizer spec trained for `steps` instead (the discriminator still starts at a third of the run)."""
  if not steps:
    return spec
  path, _, variant = spec.partition(":")
  gan = "adversarial=0" not in variant.split(",")
  return path + ":" + ",".join(v for v in (variant, f"steps={steps}", f"start={steps // 3}" if gan else "") if v)


def compare_priors(rows: list, workdir: str, out: str) -> list:
  """Trains the demo prior (PRIOR) on the MSE-only conv tokenizer and on the row of lowest reconstruction FD, each
  in <workdir>/prior_<row>; returns their sample scores and writes <out>_samples.png (two samples per class,
  one row per tokenizer)."""
  best = min((r for r in rows if not r["row"].endswith("_mse")), key=lambda r: r["recon_fd"], default=None)
  chosen = [r for r in rows if r["row"] == "conv_mse"] + ([best] if best else [])
  results, strips = [], []
  for r in chosen:
    folder = os.path.join(workdir, "prior_" + r["row"])
    metrics, minutes = train(folder, f"{PRIOR}:tokenizer={os.path.abspath(os.path.join(workdir, r['row']))}")
    results.append({"row": r["row"], "label": r["label"], "minutes": minutes, **judged_scores(metrics, (
        "sample_fd", "real_fd_floor", "recon_fd")), **{k: metrics[k] for k in ("precision", "recall", "class_accuracy",
                                                                             "num_samples", "val_loss")}})
    with np.load(os.path.join(folder, "samples.npz")) as f:
      images, labels = f["images"], f["labels"]
    strips.append(np.concatenate([images[labels == c][:2] for c in range(10)]))
  images_lib.save_png(out + "_samples.png", images_lib.make_grid(np.concatenate(strips), rows=len(strips)), scale=3)
  return results


def judged_scores(scores: dict, names) -> dict:
  """Scores `names` by each judge that `scores` hold (evaluation/samples.py's keys)."""
  return {judge_key(k, j): scores[judge_key(k, j)] for j in JUDGES for k in names if judge_key(k, j) in scores}


def tokenizer_cells(r: dict, ref: dict | None, judge: str) -> list[str]:
  """A tokenizer row's reconstruction FD by `judge`, FD - floor, and the MSE-only row `ref`'s FD and FD - floor
  over this row's; '-' for a row scored before the judge was."""
  fd, floor = judge_key("recon_fd", judge), judge_key("real_fd_floor", judge)
  if r.get(fd) is None:
    return ["-"] * 4
  excess = r[fd] - r[floor]
  ratios = (["", ""] if not ref or ref is r or ref.get(fd) is None else
            [f"{ref[fd] / r[fd]:.2f}x", f"{(ref[fd] - ref[floor]) / excess:.2f}x"])
  return [f"{r[fd]:.2f}", f"{excess:.2f}"] + ratios


def prior_cells(p: dict, first: dict, judge: str) -> list[str]:
  """A prior's sample FD by `judge`, the first prior's over it, and its tokenizer's reconstruction FD; '-' for a
  prior scored before the judge was."""
  fd, recon = judge_key("sample_fd", judge), judge_key("recon_fd", judge)
  if p.get(fd) is None:
    return ["-"] * 3
  return [f"{p[fd]:.2f}", f"{first[fd] / p[fd]:.2f}x" if p is not first and first.get(fd) is not None else "",
          f"{p[recon]:.2f}"]


def by_judge(headers: list[str]) -> list[str]:
  """The headers of columns given by each judge: the classifier's plain, the others' suffixed."""
  return [h if j == JUDGES[0] else f"{h}, {j}" for j in JUDGES for h in headers]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {list(ROWS)} and of the "
                      f"tuning rows {list(TUNING)}")
  parser.add_argument("--steps", type=int, default=0, help="train this many steps instead (a quicker, partial "
                      "comparison; its results go to <out>_<steps>steps)")
  parser.add_argument("--num_images", type=int, default=2000, help="training images reconstructed for the FD")
  parser.add_argument("--out", default=os.path.join(ROOT, "experiments", "results", "tokenizer_losses"))
  parser.add_argument("--prior", action=argparse.BooleanOptionalAction, default=True,
                      help="then train the demo prior on the MSE-only conv tokenizer and on the row of lowest "
                      "reconstruction FD, and compare their samples")
  args = parser.parse_args()
  if args.steps:
    args.out += f"_{args.steps}steps"
  names = [n for n in args.rows.split(",") if n]
  unknown = [n for n in names if n not in ROWS and n not in TUNING]
  if unknown:
    raise SystemExit(f"Unknown rows {unknown}; choose from {list(ROWS) + list(TUNING)}.")
  test = data_lib.FashionMNIST("test").images[:8].astype(np.float32) / 255.0
  rows, strips = [], [test]
  for name in names:
    label, spec = {**ROWS, **TUNING}[name]
    metrics, minutes = train(os.path.join(args.workdir, name), with_steps(spec, args.steps))
    _, tokenizer, _ = load_run(os.path.join(args.workdir, name), TokenizerStage)
    scorer = sample_scorer(tokenizer)
    floors = scorer.floors(args.num_images)
    rows.append({"row": name, "label": label, "config": spec, "psnr": metrics["test_psnr"],
                 "ssim": metrics["test_ssim"], "usage": metrics["codebook_usage"],
                 **judged_scores(floors, ("recon_fd", "real_fd_floor")), "minutes": minutes})
    strips.append(np.clip(np.asarray(tokenizer(test)[0]), 0, 1))
    print(f"{label}: PSNR {rows[-1]['psnr']:.2f} dB, recon FD {lib.by_judges(rows[-1], 'recon_fd')}", flush=True)

  priors = compare_priors(rows, args.workdir, args.out) if args.prior else []
  command = (f"python experiments/tokenizer_losses.py --workdir={args.workdir} --rows={args.rows}"
             + (f" --steps={args.steps}" if args.steps else "") + ("" if args.prior else " --no-prior"))
  base = {r["row"][:r["row"].index("_")]: r for r in rows if r["row"].endswith("_mse")}
  title = f"{args.steps} steps (a partial run)" if args.steps else "the demo tokenizer's compute"
  lines = [f"# Tokenizer losses at {title}", "",
           f"`{command} --num_images={args.num_images}` ({time.strftime('%Y-%m-%d')}; 2-core CPU). Reconstruction "
           f"FD: {args.num_images} training images reconstructed, against the 10k test split, by each sample-metric "
           f"judge (`{os.path.relpath(default_workdir(), os.path.expanduser('~'))}` under ~ and the contrastive "
           "encoder beside it; blur-sensitive: degradation_ladder.md). Minutes: training and evaluation on this "
           "machine.", "",
           "FD - floor is the part of the distance a tokenizer can still remove (the real floor: "
           f"{args.num_images} training images against the same split, by the same judge); the ratios are the "
           "MSE-only row's of the same backbone over this row's (above 1: this row is better); `-`: a row scored "
           "before the contrastive judge. Rows trained side by side share the 2 cores: minutes compare only runs "
           "made alone.", ""]
  header = ["tokenizer", "PSNR dB", "SSIM"] + by_judge(["recon FD", "FD - floor", "FD ratio", "(FD - floor) ratio"])
  lines += lib.table(header + ["usage", "minutes"], [
      [r["label"], f"{r['psnr']:.2f}", f"{r['ssim']:.3f}"]
      + [c for j in JUDGES for c in tokenizer_cells(r, base.get(r["row"][:r["row"].index("_")]), j)]
      + [f"{100 * r['usage']:.0f}%", f"{r['minutes']:.1f}"] for r in rows])
  lines += ["", f"![test images, then each row's reconstructions]({os.path.basename(args.out)}.png)", "",
            "Rows of the PNG: the test images, then " + ", ".join(r["label"] for r in rows) + "."]
  if priors:
    lines += ["", f"## The demo prior ({PRIOR}) on two of these tokenizers", "",
              f"{priors[0]['num_samples']} class-balanced samples against the test split, same judges; real floor "
              f"{lib.by_judges(priors[0], 'real_fd_floor')}. Minutes: prior training, sampling and scoring.", ""]
    header = ["tokenizer"] + by_judge(["sample FD", "MSE-only's FD / this", "recon FD (same N)"])
    lines += lib.table(header + ["precision", "recall", "class accuracy", "minutes"], [
        [p["label"]] + [c for j in JUDGES for c in prior_cells(p, priors[0], j)]
        + [f"{p['precision']:.3f}", f"{p['recall']:.3f}", f"{100 * p['class_accuracy']:.1f}%", f"{p['minutes']:.1f}"]
        for p in priors])
    lines += ["", f"![two samples per class, one row per tokenizer]({os.path.basename(args.out)}_samples.png)"]
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(args.out + ".json", "w") as f:
    json.dump({"command": command, "num_images": args.num_images, "rows": rows, "priors": priors}, f, indent=2)
  images_lib.save_png(args.out + ".png", images_lib.make_grid(np.concatenate(strips), rows=len(strips)), scale=3)
  print("\n".join(lines))


if __name__ == "__main__":
  main()
