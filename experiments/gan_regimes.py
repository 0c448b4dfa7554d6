"""Which adversarial regime sharpens a Fashion-MNIST tokenizer without grain? Arms from the references, side by side.

  python experiments/gan_regimes.py --workdir=runs/gan_regimes [--arms=mse,perceptual,recipe,...] [--seeds=0]

Every arm trains the demo tokenizer (FSQ (8, 5, 5, 5), 7x7 codes, batch 128) with one objective for --steps steps
(default 1500, the demo's), each seed into <workdir>/<arm>_s<seed> (a finished run is reused, an interrupted one
resumes), then is scored on N test images: PSNR and SSIM, the reconstruction FD of both judges over their real
floors (evaluation/samples.py; the ladder they pass: experiments/results/degradation_ladder.md), the LPIPS-style
distance on the contrastive encoder, sharpness (mean |Laplacian| of the reconstructions over the originals': 1 is
as sharp as the data) and grain (RMS of the reconstructions where the original pixel is exactly 0, the background).
The G/D balance over training (D accuracy, adversarial gradient share at the decoder's last layer, logits, the
adaptive weight) comes from each run's metrics.jsonl. Writes experiments/results/gan_regimes.{md,json} and
gan_regimes.png (the same test images reconstructed by each arm) and gan_regimes_balance.png.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

import curves_lib as lib  # noqa: E402
from vqgen import config as config_lib  # noqa: E402
from vqgen import data as data_lib  # noqa: E402
from vqgen import images as images_lib  # noqa: E402
from vqgen.evaluation.samples import JUDGES, judge_key  # noqa: E402
from vqgen.stages import TokenizerStage, load_run  # noqa: E402
from vqgen.stages.classifier import sample_scorer  # noqa: E402
from vqgen.train import writers  # noqa: E402

VQGAN = os.path.join(ROOT, "configs", "tokenizer", "vqgan_fashion_mnist.py")
NO_GAN = {"loss.adversarial_weight": 0.0, "discriminator.name": "none"}
CONSTANT_D = {"discriminator.optimizer.end_learning_rate_factor": 1.0}
ARMS = {  # name: (label, overrides of configs/tokenizer/vqgan_fashion_mnist.py; the discriminator starts at steps/3)
    "mse": ("MSE only", {**NO_GAN, "loss.reconstruction": "l2", "loss.perceptual_weight": 0.0}),
    "perceptual": ("L1 + 3 perceptual", NO_GAN),
    "recipe": ("+ 0.1 adaptive hinge PatchGAN (the recipe)", {}),
    "clipped": ("recipe, D sees clipped images", {"loss.discriminator_input": "clipped"}),
    "adaptive_r1": ("0.3 adaptive, R1 1, clipped, constant D lr", {
        "loss.adversarial_weight": 0.3, "loss.r1_gamma": 1.0, "loss.lecam_weight": 0.0,
        "loss.discriminator_input": "clipped", **CONSTANT_D}),
    "maskgit": ("MaskGIT: fixed 0.1 NS StyleGAN, R1 10, clipped", {
        "loss.adaptive_weight": False, "loss.gan_loss": "non_saturating", "loss.adversarial_weight": 0.1,
        "loss.r1_gamma": 10.0, "loss.lecam_weight": 0.0, "loss.discriminator_input": "clipped",
        "discriminator.name": "stylegan", "discriminator.stylegan_channels": (32, 64, 128, 128),
        "discriminator.optimizer.b1": 0.0, "discriminator.optimizer.b2": 0.99, **CONSTANT_D}),
    "maskbit": ("MaskBit: fixed 0.02 hinge PatchGAN, LeCam", {
        "loss.adaptive_weight": False, "loss.adversarial_weight": 0.02, "loss.discriminator_input": "clipped",
        **CONSTANT_D}),
}
BALANCE = ("gan/d_accuracy", "gan/grad_share", "gan/real_logits", "gan/fake_logits", "gan/adaptive_weight")


def arm_config(name: str, steps: int, seed: int):
  c = lib.override(config_lib.load_config(f"{VQGAN}:steps={steps},start={steps // 3}"), ARMS[name][1])
  c.seed = seed
  return c


def sharpness_and_grain(recon: np.ndarray, real: np.ndarray) -> tuple[float, float]:
  """(mean |Laplacian| of recon / that of real, RMS of recon where real is exactly 0)."""
  lap = lambda x: np.mean(np.abs(np.stack([ndimage.laplace(im[..., 0]) for im in x])))
  return float(lap(recon) / lap(real)), float(np.sqrt(np.mean(np.square(recon[real == 0]))))


def balance(folder: str) -> dict:
  """{metric: (steps, values)} of the G/D balance from the run's training rows."""
  rows = [r for r in writers.read_rows(os.path.join(folder, "metrics.jsonl")) if "gan/d_accuracy" in r]
  return {m: ([r["step"] for r in rows], [r[m] for r in rows]) for m in BALANCE if rows and m in rows[0]}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {list(ARMS)}")
  parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
  parser.add_argument("--steps", type=int, default=1500)
  parser.add_argument("--num_images", type=int, default=1000, help="test images scored per arm")
  parser.add_argument("--train_only", action="store_true", help="train the arms, write no results")
  parser.add_argument("--out", default=os.path.join(ROOT, "experiments", "results", "gan_regimes"))
  args = parser.parse_args()
  arms = lib.choices(args.arms, ARMS, "arms")
  seeds = lib.numbers(args.seeds, "seeds")
  start = time.perf_counter()
  for name in arms:
    for seed in seeds:
      lib.trained(os.path.join(args.workdir, f"{name}_s{seed}"), arm_config(name, args.steps, seed))
  if args.train_only:
    return
  scorer = sample_scorer()
  test = data_lib.FashionMNIST("test").images[:args.num_images].astype(np.float32) / 255.0
  floors = scorer.judged(scorer.train_images[:args.num_images], args.num_images)
  rows, strips, curves = [], [test[:10]], {}
  for name in arms:
    per_seed = []
    for seed in seeds:
      folder = os.path.join(args.workdir, f"{name}_s{seed}")
      metrics = writers.read_json(os.path.join(folder, "metrics.json"))
      _, tokenizer, _ = load_run(folder, TokenizerStage)
      scorer.tokenizer = tokenizer
      recon = scorer.reconstruct(test)
      sharp, grain = sharpness_and_grain(recon, test)
      point = {"psnr": metrics["test_psnr"], "ssim": metrics["test_ssim"], "lpips": scorer.lpips(test, recon),
               "sharpness": sharp, "grain": grain}
      for judge, (fd, _, _) in scorer.judged(recon, args.num_images).items():
        point[judge_key("recon_fd", judge)] = fd
        point[judge_key("recon_fd_over_floor", judge)] = fd / floors[judge][0]
      per_seed.append(point)
      if seed == seeds[0]:
        strips.append(recon[:10])
        curves[name] = balance(folder)
    row = {"arm": name, "label": ARMS[name][0], "seeds": seeds}
    for key in per_seed[0]:
      values = [p[key] for p in per_seed]
      row[key], row[key + "_sd"] = float(np.mean(values)), float(np.std(values))
    rows.append(row)
    print(f"{name}: PSNR {row['psnr']:.2f} dB, recon FD / floor " + ", ".join(
        f"{j} {row[judge_key('recon_fd_over_floor', j)]:.1f}x" for j in JUDGES), flush=True)
  real_ref = {"sharpness": 1.0, "grain": 0.0}
  command = (f"python experiments/gan_regimes.py --workdir={args.workdir} --arms={args.arms} --seeds={args.seeds} "
             f"--steps={args.steps} --num_images={args.num_images}")
  pm = lambda r, k, f: f"{f.format(r[k])}" + (f" +- {f.format(r[k + '_sd'])}" if len(seeds) > 1 else "")
  lines = ["# Adversarial regimes for a sharp Fashion-MNIST tokenizer", "",
           f"`{command}` ({time.strftime('%Y-%m-%d')}; 2-core CPU; scoring {time.perf_counter() - start:.0f} s). "
           f"FSQ (8, 5, 5, 5) on 7x7 codes, {args.steps} steps at batch 128, the discriminator from step "
           f"{args.steps // 3}. {args.num_images} test images reconstructed; FD against the 10k test split over the "
           f"real floor ({args.num_images} training images): classifier {floors['classifier'][0]:.3f}, contrastive "
           f"{floors['contrastive'][0]:.3f}. Sharpness: mean |Laplacian| over the originals' (1 = as sharp); grain: "
           f"RMS on the originals' exactly-0 background (0 = clean)." +
           (f" Mean +- standard deviation over seeds {args.seeds}." if len(seeds) > 1 else ""), "",
           "| arm | PSNR dB | SSIM | LPIPS-style | FD / floor, classifier | FD / floor, contrastive | sharpness | "
           "grain |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    lines.append(f"| {r['label']} | {pm(r, 'psnr', '{:.2f}')} | {pm(r, 'ssim', '{:.3f}')} | "
                 f"{pm(r, 'lpips', '{:.4f}')} | {pm(r, 'recon_fd_over_floor', '{:.1f}')}x | "
                 f"{pm(r, 'recon_fd_over_floor_contrastive', '{:.1f}')}x | {pm(r, 'sharpness', '{:.2f}')} | "
                 f"{pm(r, 'grain', '{:.4f}')} |")
  lines += ["", "G/D balance over the adversarial phase (first seed; mean of the logged rows after the start):", "",
            "| arm | D accuracy | adversarial gradient share | real / fake logits | adaptive weight |",
            "|---|---:|---:|---:|---:|"]
  for name in arms:
    b = curves[name]
    if not b:
      continue
    late = lambda m: float(np.mean([v for s, v in zip(*b[m]) if s > args.steps // 3])) if m in b else float("nan")
    lines.append(f"| {ARMS[name][0]} | {late('gan/d_accuracy'):.2f} | {late('gan/grad_share'):.3f} | "
                 f"{late('gan/real_logits'):.2f} / {late('gan/fake_logits'):.2f} | {late('gan/adaptive_weight'):.2g} |")
  lines += ["", f"![test images, then each arm's reconstructions]({os.path.basename(args.out)}.png)", "",
            f"![G/D balance]({os.path.basename(args.out)}_balance.png)"]
  images_lib.save_png(args.out + ".png", images_lib.make_grid(np.concatenate(strips), rows=len(strips)), scale=3)
  fig, axes = lib.figure(3)
  for name in arms:
    b = curves[name]
    for ax, metric in zip(axes, ("gan/d_accuracy", "gan/grad_share", "gan/real_logits")):
      if metric in b:
        ax.plot(*b[metric], label=name)
        ax.set_title(metric)
  axes[1].set_yscale("log")
  axes[0].legend(fontsize=7)
  lib.save(fig, args.out + "_balance")
  lib.write(args.out, lines, {"command": command, "rows": rows, "real_reference": real_ref,
                              "floors": {j: floors[j][0] for j in JUDGES}})
  print("\n".join(lines))


if __name__ == "__main__":
  main()
