"""Which losses make a sharp tokenizer? MSE only, + perceptual, + perceptual + adversarial, conv and ViT.

  python experiments/tokenizer_losses.py --workdir=runs/tokenizer_losses [--rows=conv_mse,conv_perceptual,...]

Every row trains a Fashion-MNIST tokenizer at the demo tokenizer's compute (1500 steps at batch 128, FSQ
(8, 5, 5, 5) codes on a 7x7 grid) with `vqgen.stages.run` into <workdir>/<row> (a finished row is reused; an
interrupted one resumes), then scores it: test PSNR / SSIM / codebook usage (the run's own evaluation) and the
Frechet distance of the reconstructions of N training images against the test split on the sample-metric
network (the blur-sensitive one: experiments/results/degradation_ladder.md), beside the real-vs-real floor.
Writes experiments/results/tokenizer_losses.{md,json,png} (the PNG: the same test images reconstructed by each
row).
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from vqgen import config as config_lib  # noqa: E402
from vqgen import data as data_lib  # noqa: E402
from vqgen import images as images_lib  # noqa: E402
from vqgen.stages import TokenizerStage, load_run, run  # noqa: E402
from vqgen.stages.classifier import default_workdir, sample_scorer  # noqa: E402

VQGAN = "configs/tokenizer/vqgan_fashion_mnist.py"
VIT = "configs/tokenizer/vit_vqgan_fashion_mnist.py"
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


def train(name: str, spec: str, workdir: str, steps: int = 0) -> tuple[dict, float]:
  """(the run's metrics.json, minutes spent training now; 0 when it had finished before)."""
  folder = os.path.join(workdir, name)
  if os.path.exists(os.path.join(folder, "metrics.json")):
    with open(os.path.join(folder, "metrics.json")) as f:
      return json.load(f), 0.0
  path, _, variant = spec.partition(":")
  if steps:  # a shorter run: the discriminator still starts at a third of it
    gan = "adversarial=0" not in variant.split(",")
    variant = ",".join(v for v in (variant, f"steps={steps}", f"start={steps // 3}" if gan else "") if v)
  config = config_lib.load_config(os.path.join(ROOT, path) + (f":{variant}" if variant else ""))
  start = time.perf_counter()
  print(f"== {name}: {spec}", flush=True)
  results = run(config, folder)
  minutes = (time.perf_counter() - start) / 60
  with open(os.path.join(folder, "minutes.json"), "w") as f:
    json.dump({"minutes": minutes}, f)
  return results, minutes


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {list(ROWS)} and of the "
                      f"tuning rows {list(TUNING)}")
  parser.add_argument("--steps", type=int, default=0, help="train this many steps instead (a quicker, partial "
                      "comparison; its results go to <out>_<steps>steps)")
  parser.add_argument("--num_images", type=int, default=2000, help="training images reconstructed for the FD")
  parser.add_argument("--out", default=os.path.join(ROOT, "experiments", "results", "tokenizer_losses"))
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
    metrics, minutes = train(name, spec, args.workdir, args.steps)
    minutes_file = os.path.join(args.workdir, name, "minutes.json")
    if not minutes and os.path.exists(minutes_file):
      with open(minutes_file) as f:
        minutes = json.load(f)["minutes"]
    _, tokenizer, _ = load_run(os.path.join(args.workdir, name), TokenizerStage)
    scorer = sample_scorer(tokenizer)
    floors = scorer.floors(args.num_images)
    rows.append({"row": name, "label": label, "config": spec, "psnr": metrics["test_psnr"],
                 "ssim": metrics["test_ssim"], "usage": metrics["codebook_usage"], "recon_fd": floors["recon_fd"],
                 "real_fd_floor": floors["real_fd_floor"], "minutes": minutes})
    strips.append(np.clip(np.asarray(tokenizer(test)[0]), 0, 1))
    print(f"{label}: PSNR {rows[-1]['psnr']:.2f} dB, recon FD {rows[-1]['recon_fd']:.2f}", flush=True)

  command = (f"python experiments/tokenizer_losses.py --workdir={args.workdir} --rows={args.rows}"
             + (f" --steps={args.steps}" if args.steps else ""))
  base = {r["row"][:r["row"].index("_")]: r for r in rows if r["row"].endswith("_mse")}
  title = f"{args.steps} steps (a partial run)" if args.steps else "the demo tokenizer's compute"
  lines = [f"# Tokenizer losses at {title}", "",
           f"`{command} --num_images={args.num_images}` ({time.strftime('%Y-%m-%d')}; 2-core CPU). Reconstruction "
           f"FD: {args.num_images} training images reconstructed, against the 10k test split, on the sample-metric "
           f"network (`{os.path.relpath(default_workdir(), os.path.expanduser('~'))}` under ~; blur-sensitive: "
           "degradation_ladder.md). Minutes: training and evaluation on this machine.", "",
           "| tokenizer | PSNR dB | SSIM | recon FD | FD / MSE-only | FD / real floor | usage | minutes |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    ref = base.get(r["row"][:r["row"].index("_")])
    ratio = f"{ref['recon_fd'] / r['recon_fd']:.2f}x lower" if ref and ref is not r else ""
    lines.append(f"| {r['label']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['recon_fd']:.2f} | {ratio} | "
                 f"{r['recon_fd'] / r['real_fd_floor']:.1f}x | {100 * r['usage']:.0f}% | {r['minutes']:.1f} |")
  lines += ["", f"![test images, then each row's reconstructions]({os.path.basename(args.out)}.png)", "",
            "Rows of the PNG: the test images, then " + ", ".join(r["label"] for r in rows) + "."]
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(args.out + ".json", "w") as f:
    json.dump({"command": command, "num_images": args.num_images, "rows": rows}, f, indent=2)
  images_lib.save_png(args.out + ".png", images_lib.make_grid(np.concatenate(strips), rows=len(strips)), scale=3)
  print("\n".join(lines))


if __name__ == "__main__":
  main()
