"""Do the sample metrics' judges see what people see? Frechet distance of known degradations, by both judges.

  python experiments/degradation_ladder.py [--tokenizer=runs/demo/tokenizer,...] [--num_images=1000] [--draws=3]

N training images, degraded (Gaussian blur sigma 0.5 / 1 / 2 px, additive Gaussian noise 0.02 / 0.05 / 0.1 / 0.2,
JPEG at quality 50 / 10, and optionally tokenizers' reconstructions), are scored like samples against the whole test
split by each judge (evaluation/samples.py: the classifier and the contrastive encoder): Frechet distance and its
ratio to the real-vs-real floor (the same N images undegraded), precision and recall (k = 3), with PSNR, SSIM and
the LPIPS-style distance (the contrastive encoder's maps) of each rung against the clean images beside. Each
number is the mean over `draws` draws of N training images (and of the noise), +- their standard deviation.

Issue 31's bars, for every judge at N = 1000: blur sigma 0.5 >= 3x the floor, noise 0.05 >= 3x, and FD increasing
with severity along the blur, noise and JPEG rungs. Writes experiments/results/degradation_ladder.{md,json,png}.
"""

import argparse
import io
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import dm_pix  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402

from vqgen import images as images_lib  # noqa: E402
from vqgen.evaluation.classifier import batched_apply  # noqa: E402
from vqgen.evaluation.samples import JUDGES  # noqa: E402
from vqgen.stages import TokenizerStage, load_run  # noqa: E402
from vqgen.stages.classifier import sample_scorer  # noqa: E402

BARS = {"blur sigma 0.5": 3.0, "noise 0.05": 3.0}     # FD / real floor, for every judge
SERIES = (("blur sigma 0.5", "blur sigma 1", "blur sigma 2"),  # FD must increase along each
          ("noise 0.02", "noise 0.05", "noise 0.1", "noise 0.2"), ("JPEG quality 50", "JPEG quality 10"))


def blur(images, sigma):
  return np.stack([ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0), mode="reflect") for x in images])


def noise(images, std, seed=0):
  return np.clip(images + np.random.default_rng(seed).normal(0, std, images.shape), 0, 1).astype(np.float32)


def jpeg(images, quality):
  out = []
  for x in images:
    buffer = io.BytesIO()
    Image.fromarray(np.round(x[..., 0] * 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    out.append(np.asarray(Image.open(io.BytesIO(buffer.getvalue())), np.float32)[..., None] / 255)
  return np.stack(out)


def reconstruct(workdir):
  _, tokenizer, _ = load_run(workdir, TokenizerStage)
  graphdef, state = nnx.split(tokenizer)
  fn = jax.jit(lambda s, x: jnp.clip(nnx.merge(graphdef, s)(x)[0], 0.0, 1.0))
  return lambda images: batched_apply(lambda b: fn(state, b), images, 500)


def ladder(real, seed, tokenizers):
  rungs = [("none (real floor)", real)]
  rungs += [(f"blur sigma {s:g}", blur(real, s)) for s in (0.5, 1.0, 2.0)]
  rungs += [(f"noise {s:g}", noise(real, s, seed)) for s in (0.02, 0.05, 0.1, 0.2)]
  rungs += [(f"JPEG quality {q}", jpeg(real, q)) for q in (50, 10)]
  rungs += [(f"reconstructions ({name})", fn(real)) for name, fn in tokenizers]
  return rungs


def mean_sd(values):
  return float(np.mean(values)), float(np.std(values))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--num_images", type=int, default=1000)
  parser.add_argument("--draws", type=int, default=3, help="draws of N training images (and noise) to average")
  parser.add_argument("--tokenizer", default="", help="comma-separated tokenizer workdirs whose reconstructions "
                      "join the ladder")
  parser.add_argument("--out", default=os.path.join(ROOT, "experiments", "results", "degradation_ladder"))
  args = parser.parse_args()
  start = time.perf_counter()
  scorer = sample_scorer()
  workdirs = [w for w in args.tokenizer.split(",") if w]
  tokenizers = [(os.path.basename(os.path.normpath(w)), reconstruct(w)) for w in workdirs]
  pool = scorer.train_images
  raw = {}  # rung -> list over draws of {metric: value}
  for draw in range(args.draws):
    real = pool[np.random.default_rng(draw).permutation(len(pool))[:args.num_images]]
    rungs = ladder(real, draw, tokenizers)
    for name, images in rungs:
      row = {}
      for judge, (fd, p, r) in scorer.judged(images, args.num_images).items():
        row.update({f"fd/{judge}": fd, f"precision/{judge}": p, f"recall/{judge}": r})
      if name != rungs[0][0]:
        row["psnr"] = float(10 * np.log10(1 / np.mean((images - real) ** 2)))
        row["ssim"] = float(np.mean(dm_pix.ssim(jnp.asarray(real), jnp.asarray(images))))
        row["lpips"] = scorer.lpips(real, images)
      raw.setdefault(name, []).append(row)
    if draw == 0:
      strip = np.concatenate([images[:8] for _, images in rungs])
      images_lib.save_png(args.out + ".png", images_lib.make_grid(strip, rows=len(rungs)), scale=3)
  floor = {j: np.array([r[f"fd/{j}"] for r in raw["none (real floor)"]]) for j in JUDGES}
  rows = []
  for name, draws in raw.items():
    row = {"degradation": name}
    for key in draws[0]:
      row[key] = mean_sd([d[key] for d in draws])
    for j in JUDGES:
      row[f"fd_over_floor/{j}"] = mean_sd(np.array([d[f"fd/{j}"] for d in draws]) / floor[j])
    rows.append(row)
  by_name = {r["degradation"]: r for r in rows}
  checks = []
  for j in JUDGES:
    for rung, bar in BARS.items():
      ratio = by_name[rung][f"fd_over_floor/{j}"][0]
      checks.append((f"{j}: {rung} >= {bar:g}x the floor", ratio >= bar, f"{ratio:.1f}x"))
    for series in SERIES:
      fds = [by_name[s][f"fd/{j}"][0] for s in series]
      checks.append((f"{j}: FD increases along {' < '.join(series)}", all(np.diff(fds) > 0),
                     " < ".join(f"{x:.3g}" for x in fds)))
  command = (f"python experiments/degradation_ladder.py --num_images={args.num_images} --draws={args.draws}"
             + (f" --tokenizer={args.tokenizer}" if args.tokenizer else ""))
  pm = lambda v, f="{:.2f}": f"{f.format(v[0])} +- {f.format(v[1])}"
  lines = ["# Degradation ladder of the sample metrics' judges", "",
           f"`{command}` ({time.strftime('%Y-%m-%d')}, {time.perf_counter() - start:.0f} s on 2 CPU cores). "
           f"Judges (evaluation/samples.py): the classifier (test accuracy {100 * scorer.classifier_accuracy:.2f}%) "
           f"and the contrastive encoder (SimCLR, 1-NN test accuracy {100 * scorer.contrastive_accuracy:.2f}%), "
           f"each from its cache. {args.num_images} training images, degraded, against the 10k test split; mean "
           f"+- standard deviation over {args.draws} draws of the images (and the noise).", "",
           "| degradation | PSNR dB | SSIM | LPIPS-style | FD / floor, classifier | FD / floor, contrastive | "
           "precision / recall, classifier | precision / recall, contrastive |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    quality = ([pm(r["psnr"], "{:.1f}"), pm(r["ssim"], "{:.3f}"), pm(r["lpips"], "{:.4f}")] if "psnr" in r
               else ["", "", ""])
    ratios = [pm(r[f"fd_over_floor/{j}"], "{:.1f}") + "x" for j in JUDGES]
    pr = [f"{r[f'precision/{j}'][0]:.3f} / {r[f'recall/{j}'][0]:.3f}" for j in JUDGES]
    lines.append(f"| {r['degradation']} | " + " | ".join(quality + ratios + pr) + " |")
  lines += ["", "Real floors (FD of the undegraded images): " + ", ".join(
      f"{j} {pm(by_name['none (real floor)'][f'fd/{j}'], '{:.3f}')}" for j in JUDGES) + ".", "",
      "Issue 31's bars:", ""]
  lines += [f"- {text}: **{'met' if ok else 'NOT met'}** ({value})" for text, ok, value in checks]
  lines += ["", f"![one image per rung, first draw]({os.path.basename(args.out)}.png)"]
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(args.out + ".json", "w") as f:
    json.dump({"command": command, "num_images": args.num_images, "draws": args.draws, "rows": rows,
               "checks": [{"check": t, "met": bool(ok), "value": v} for t, ok, v in checks]}, f, indent=2)
  print("\n".join(lines))


if __name__ == "__main__":
  main()
