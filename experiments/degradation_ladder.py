"""Does the sample-metric network see what people see? Frechet distance of known degradations.

  python experiments/degradation_ladder.py [--tokenizer=runs/demo/tokenizer] [--num_images=1000]

N training images, degraded (Gaussian blur sigma 0.5 / 1 / 2 px, additive Gaussian noise 0.1 / 0.2, JPEG at
quality 50 / 10, and optionally a tokenizer's reconstructions), are scored like samples against the whole test
split on the in-domain classifier's features (vqgen.stages.classifier): Frechet distance, its ratio to the
real-vs-real floor (the same N images undegraded), precision and recall (k = 3). Issue 13's bar: sigma = 1 must
score at least 10x the floor. Writes experiments/results/degradation_ladder.{md,json,png}.
"""

import argparse
import io
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402

from vqgen import images as images_lib  # noqa: E402
from vqgen.evaluation.classifier import batched_apply  # noqa: E402
from vqgen.evaluation.frechet import feature_frechet_distance, precision_recall  # noqa: E402
from vqgen.stages import TokenizerStage, load_run  # noqa: E402
from vqgen.stages.classifier import default_workdir, sample_scorer  # noqa: E402


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


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--num_images", type=int, default=1000)
  parser.add_argument("--tokenizer", default="", help="a tokenizer workdir whose reconstructions join the ladder")
  parser.add_argument("--out", default=os.path.join(ROOT, "experiments", "results", "degradation_ladder"))
  args = parser.parse_args()
  start = time.perf_counter()
  scorer = sample_scorer()
  real = scorer.train_images[:args.num_images]
  ladder = [("none (real floor)", real), ("blur sigma 0.5", blur(real, 0.5)), ("blur sigma 1", blur(real, 1.0)),
            ("blur sigma 2", blur(real, 2.0)), ("noise 0.1", noise(real, 0.1)), ("noise 0.2", noise(real, 0.2)),
            ("JPEG quality 50", jpeg(real, 50)), ("JPEG quality 10", jpeg(real, 10))]
  if args.tokenizer:
    ladder.append((f"reconstructions ({os.path.basename(os.path.normpath(args.tokenizer))})",
                   reconstruct(args.tokenizer)(real)))
  rows = []
  for name, images in ladder:
    feats = scorer.features(images)
    fd = feature_frechet_distance(feats, scorer.test_features)
    p, r = precision_recall(scorer.test_features[:len(images)], feats)
    rows.append({"degradation": name, "fd": fd, "precision": p, "recall": r,
                 "psnr": float(10 * np.log10(1 / np.mean((images - real) ** 2))) if name != ladder[0][0] else None})
  floor = rows[0]["fd"]
  for row in rows:
    row["fd_over_floor"] = row["fd"] / floor
  sigma1 = next(r for r in rows if r["degradation"] == "blur sigma 1")
  meets = sigma1["fd_over_floor"] >= 10
  command = "python experiments/degradation_ladder.py" + (f" --tokenizer={args.tokenizer}" if args.tokenizer else "")
  lines = ["# Degradation ladder on the sample-metric network", "",
           f"`{command} --num_images={args.num_images}` ({time.strftime('%Y-%m-%d')}, "
           f"{time.perf_counter() - start:.0f} s). Network: the in-domain classifier trained by the generic "
           f"trainer (`{os.path.relpath(default_workdir(), os.path.expanduser('~'))}` under ~, test accuracy "
           f"{100 * scorer.classifier_accuracy:.2f}%). {args.num_images} training images, degraded, against the "
           "10k test split.", "",
           "| degradation | PSNR dB | FD | FD / real floor | precision | recall |", "|---|---:|---:|---:|---:|---:|"]
  psnr = lambda r: "" if r["psnr"] is None else f"{r['psnr']:.1f}"
  lines += [f"| {r['degradation']} | {psnr(r)} | {r['fd']:.2f} | {r['fd_over_floor']:.1f}x | "
            f"{r['precision']:.3f} | {r['recall']:.3f} |" for r in rows]
  lines += ["", f"Issue 13's bar (blur sigma 1 >= 10x the floor): **{'met' if meets else 'NOT met'}** "
            f"({sigma1['fd_over_floor']:.1f}x).", "", f"![one image per rung]({os.path.basename(args.out)}.png)"]
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(args.out + ".json", "w") as f:
    json.dump({"command": command, "num_images": args.num_images, "rows": rows}, f, indent=2)
  strip = np.concatenate([images[:8] for _, images in ladder])
  images_lib.save_png(args.out + ".png", images_lib.make_grid(strip, rows=len(ladder)), scale=3)
  print("\n".join(lines))


if __name__ == "__main__":
  main()
