"""Rate and perception: reconstruction quality against bits per image, and what each rate costs the prior.

  python experiments/rate_perception.py --workdir=runs/rate_perception [--grids=7,14] [--quantizers=fsq,lfq,bsq]
      [--bits=10,12,14,16] [--objectives=mse,vqgan] [--seeds=0] [--steps=1500] [--num_images=1000] [--train_only]

Every point trains the conv tokenizer of configs/tokenizer/vqgan_fashion_mnist.py (the demo's network, batch 128)
at one code grid (7: 4x4 patches folded into channels, 7x7 codes; 14: 2x2 patches, 14x14 codes), one quantizer at
one vocabulary and one objective, for --steps steps, each seed into <workdir>/<grid>_<quantizer>_<bits>_<objective>_s
<seed> (a finished run is reused, an interrupted one resumes). Quantizers, as their configs/tokenizer/ files set
them:
  fsq  levels from the FSQ paper's table (quantizers/fsq.py, RECOMMENDED_LEVELS): 2^10 (8,5,5,5) = 1000 codes,
       2^12 (7,5,5,5,5) = 4375, 2^14 (8,8,8,6,5) = 15360, 2^16 (8,8,8,5,5,5) = 64000; the latent has one channel
       per level;
  lfq  2^bits codes, one latent channel per bit (no projection), entropy 0.1, commitment 0.25; the entropy penalty
       exact up to --lfq_exact_bits bits, beyond it the grouped bound over two groups of bits (the exact codebook
       term streams tokens x codes every step: at 2^14 on 7x7 codes ~45 min of a 2-core CPU per run,
       docs/results.md "Codebook scaling");
  bsq  16-channel latents projected to `bits` bits on the unit sphere, the grouped entropy over two groups of
       bits/2 (configs/tokenizer/bsq_fashion_mnist.py: 10 bits in groups of 5).
Objectives: mse (L2 only: loss.reconstruction=l2, no perceptual, no discriminator) and vqgan (the file's L1 + 3.0
perceptual + 0.1 adaptive hinge PatchGAN, the discriminator from steps/3).

Each point is scored on N test images: test PSNR, SSIM and codebook usage over the whole test split (the run's
metrics.json); the reconstruction FD of both judges over their real floors (N training images) and the
LPIPS-style distance on the contrastive encoder (evaluation/samples.py; gan_regimes.py scores the same way);
bits per image = tokens x log2(vocabulary); and the prior's cost at that rate: its sequence length (tokens per
image) and the measured train-step time of configs/prior/maskgit_fashion_mnist.py (the demo prior, its batch 32)
on random codes of that vocabulary and grid (benchmarks/train_throughput.py's Bench: compiled once, then
--prior_steps timed steps on one fixed batch after 4 warm-up steps), with XLA's FLOPs of that step; each
(vocabulary, grid) is timed once and kept in <workdir>/prior_cost.json (delete it to time again). Whether a run
settled: PSNR on the N images and FD / floor at each checkpoint the run kept (steps/3, 2 steps/3, steps), and its
last two logged training losses and MSEs.
Writes experiments/results/rate_perception.{md,json} and rate_perception.png (FD / floor of each judge against bits
per image, one line per quantizer, objective and grid).
"""

import argparse
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "experiments"))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import ticker  # noqa: E402

import curves_lib as lib  # noqa: E402
from benchmarks.train_throughput import Bench, measure  # noqa: E402
from vqgen import config as config_lib  # noqa: E402
from vqgen import data as data_lib  # noqa: E402
from vqgen.evaluation.samples import JUDGES, judge_key  # noqa: E402
from vqgen.quantizers import RECOMMENDED_LEVELS  # noqa: E402
from vqgen.stages import TokenizerStage, load_run  # noqa: E402
from vqgen.stages.classifier import sample_scorer  # noqa: E402
from vqgen.train import writers  # noqa: E402
from vqgen.train.checkpoint import step_folders  # noqa: E402

VQGAN = os.path.join(ROOT, "configs", "tokenizer", "vqgan_fashion_mnist.py")
PRIOR = os.path.join(ROOT, "configs", "prior", "maskgit_fashion_mnist.py")
GRIDS = {7: 4, 14: 2}  # code grid side: model.patch_size (space-to-depth before the encoder; channel_multipliers (1,))
QUANTIZERS = ("fsq", "lfq", "bsq")
BITS = (10, 12, 14, 16)
BSQ_DIM = 16  # configs/tokenizer/bsq_fashion_mnist.py
OBJECTIVES = {  # name: (label, overrides of configs/tokenizer/vqgan_fashion_mnist.py)
    "mse": ("MSE only", {"loss.reconstruction": "l2", "loss.perceptual_weight": 0.0, "loss.adversarial_weight": 0.0,
                         "discriminator.name": "none"}),
    "vqgan": ("VQGAN (L1 + 3 perceptual + 0.1 adaptive PatchGAN)", {}),
}
FD_KEYS = [judge_key("recon_fd_over_floor", j) for j in JUDGES]


def quantizer(name: str, bits: int, lfq_exact_bits: int):
  """config.quantizer of `name` at about 2^bits codes, as its configs/tokenizer/ file sets it."""
  if name == "fsq":
    return config_lib.quantizer_config("fsq", levels=RECOMMENDED_LEVELS[bits])
  if name == "lfq":
    exact = bits <= lfq_exact_bits
    return config_lib.quantizer_config("lfq", codebook_size=2**bits, entropy_mode="exact" if exact else "grouped",
                                       group_size=1 if exact else bits // 2)
  return config_lib.quantizer_config("bsq", dim=BSQ_DIM, num_bits=bits, group_size=bits // 2)


def point_config(grid: int, name: str, bits: int, objective: str, steps: int, seed: int, lfq_exact_bits: int):
  """configs/tokenizer/vqgan_fashion_mnist.py at `steps` (discriminator from steps/3) with the point's grid,
  quantizer and objective; logs and checkpoints at the file's cadence (100, 500) or 10 and 3 times a shorter run,
  so that every run keeps checkpoints at steps/3, 2 steps/3 and steps."""
  c = config_lib.load_config(f"{VQGAN}:steps={steps},start={steps // 3}")
  with c.unlocked():
    c.quantizer = quantizer(name, bits, lfq_exact_bits)
  c.model.patch_size = GRIDS[grid]
  lib.override(c, OBJECTIVES[objective][1])
  c.train.log_every = max(1, min(c.train.log_every, steps // 10))
  c.train.checkpoint_every = max(1, min(c.train.checkpoint_every, steps // 3))
  c.seed = seed
  return c


def folder_name(grid: int, name: str, bits: int, objective: str, seed: int) -> str:
  return f"{grid}_{name}_{bits}_{objective}_s{seed}"


def training_speed(folder: str) -> float | None:
  """Seconds per training step after compilation: the loop's clock (metrics.jsonl `uptime`) between its first and
  last logged rows of the last segment; None when fewer than two were logged."""
  rows = [r for r in writers.read_rows(os.path.join(folder, "metrics.jsonl")) if "uptime" in r]
  for i in range(len(rows) - 1, 0, -1):  # the last segment: a resumed loop's clock starts again at 0
    if rows[i]["uptime"] < rows[i - 1]["uptime"]:
      rows = rows[i:]
      break
  if len(rows) < 2 or rows[-1]["step"] == rows[0]["step"]:
    return None
  return (rows[-1]["uptime"] - rows[0]["uptime"]) / (rows[-1]["step"] - rows[0]["step"])


def last_losses(folder: str, count: int = 2) -> list[dict]:
  """The last `count` logged training rows: step, loss and the pixel MSE of the training batches."""
  rows = [r for r in writers.read_rows(os.path.join(folder, "metrics.jsonl")) if "loss" in r]
  return [{"step": r["step"], "loss": r["loss"], "mse": r.get("mse")} for r in rows[-count:]]


class PriorCost:
  """The demo prior's train step (configs/prior/maskgit_fashion_mnist.py) on random codes of a vocabulary and grid:
  ms per step after compilation and XLA's FLOPs per step, measured once per (vocabulary, grid) and kept in a file."""

  def __init__(self, path: str, steps: int):
    self.path, self.steps = path, steps
    self.known = writers.read_json(path) if os.path.exists(path) else {}

  def __call__(self, vocabulary: int, grid: int) -> dict:
    codes = f"{vocabulary}:{grid}x{grid}"
    if codes not in self.known or self.known[codes]["timed_steps"] < self.steps:
      print(f"== prior step on random codes {codes}", flush=True)
      c = config_lib.load_config(PRIOR)
      bench = Bench.build(c, codes, devices=jax.devices()[:1])
      batch = c.data.batch_size
      cost = bench.cost(batch)
      times, first_s = measure(bench, batch, self.steps, ("compute",))
      self.known[codes] = {"ms_per_step": times["compute"] * 1e3, "flops_per_step": cost.flops,
                           "batch_size": batch, "params": bench.num_params, "sequence_length": bench.tokens_per_example,
                           "timed_steps": self.steps, "first_step_s": first_s, "compile_s": cost.compile_s,
                           "device": jax.devices()[0].device_kind}
      print(f"  {self.known[codes]['ms_per_step']:.1f} ms / step, {cost.flops:.3g} FLOPs / step", flush=True)
      os.makedirs(os.path.dirname(self.path), exist_ok=True)
      writers.write_json(self.path, self.known)
    return self.known[codes]


def relative(path: str) -> str:
  """`path` relative to the repository when it lies inside it (the command line is run from there)."""
  path = os.path.abspath(path)
  return os.path.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--grids", default="7,14", help=f"code grid sides, of {list(GRIDS)}")
  parser.add_argument("--quantizers", default=",".join(QUANTIZERS), help=f"comma-separated subset of {QUANTIZERS}")
  parser.add_argument("--bits", default=",".join(map(str, BITS)), help=f"log2 vocabulary, of {BITS}")
  parser.add_argument("--objectives", default=",".join(OBJECTIVES),
                      help=f"comma-separated subset of {list(OBJECTIVES)}")
  parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
  parser.add_argument("--steps", type=int, default=1500)
  parser.add_argument("--lfq_exact_bits", type=int, default=12, help="LFQ's entropy is exact up to this many bits, "
                      "the grouped bound (two groups) beyond")
  parser.add_argument("--num_images", type=int, default=1000, help="test images scored per point")
  parser.add_argument("--prior_steps", type=int, default=5, help="timed prior train steps per (vocabulary, grid)")
  parser.add_argument("--train_only", action="store_true", help="train the points, write no results")
  parser.add_argument("--out", default=os.path.join(ROOT, "experiments", "results", "rate_perception"))
  args = parser.parse_args()
  try:
    grids = [int(g) for g in lib.choices(args.grids, [str(g) for g in GRIDS], "grids")]
    names = lib.choices(args.quantizers, QUANTIZERS, "quantizers")
    bits_list = [int(b) for b in lib.choices(args.bits, [str(b) for b in BITS], "bits")]
    objectives = lib.choices(args.objectives, OBJECTIVES, "objectives")
    seeds = lib.numbers(args.seeds, "seeds")
  except lib.UsageError as e:
    parser.error(str(e))
  points = [(g, q, b, o) for g in grids for q in names for b in bits_list for o in objectives]
  start = time.perf_counter()
  wall = {}
  for point in points:
    for seed in seeds:
      folder = os.path.join(args.workdir, folder_name(*point, seed))
      began = time.perf_counter()
      fresh = not os.path.exists(os.path.join(folder, "metrics.json"))
      lib.trained(folder, point_config(*point, args.steps, seed, args.lfq_exact_bits))
      if fresh:
        wall[folder] = time.perf_counter() - began
  train_s = time.perf_counter() - start
  if args.train_only:
    return
  scorer = sample_scorer()
  test = data_lib.FashionMNIST("test").images[:args.num_images].astype(np.float32) / 255.0
  floors = scorer.judged(scorer.train_images[:args.num_images], args.num_images)
  prior_cost = PriorCost(os.path.join(args.workdir, "prior_cost.json"), args.prior_steps)

  def scored(folder: str, step: int | None = None) -> dict:
    """PSNR on the N images, LPIPS-style distance and each judge's reconstruction FD (and / floor) of the
    tokenizer of `folder` at its newest checkpoint or at `step`."""
    _, scorer.tokenizer, _ = load_run(folder, TokenizerStage, step=step)
    recon = scorer.reconstruct(test)
    out = {"psnr_n": float(10 * np.log10(1.0 / np.mean(np.square(recon - test)))), "lpips": scorer.lpips(test, recon)}
    for judge, (fd, _, _) in scorer.judged(recon, args.num_images).items():
      out[judge_key("recon_fd", judge)] = fd
      out[judge_key("recon_fd_over_floor", judge)] = fd / floors[judge][0]
    return out

  rows = []
  for grid, name, bits, objective in points:
    per_seed, settle = [], None
    for seed in seeds:
      folder = os.path.join(args.workdir, folder_name(grid, name, bits, objective, seed))
      metrics = writers.read_json(os.path.join(folder, "metrics.json"))
      point = {"psnr": metrics["test_psnr"], "ssim": metrics["test_ssim"], "usage": metrics["codebook_usage"],
               **scored(folder)}
      seconds = training_speed(folder)
      point["ms_per_train_step"] = seconds * 1e3 if seconds else float("nan")
      per_seed.append(point)
      if seed == seeds[0]:  # did it settle: the kept checkpoints before the last, and the last logged losses
        kept = step_folders(os.path.join(folder, "checkpoints"))
        settle = {"checkpoints": [{"step": s, **scored(folder, s)} for s in kept[:-1]] +
                  [{"step": kept[-1], **{k: point[k] for k in ("psnr_n", "lpips", *FD_KEYS)}}],
                  "last_losses": last_losses(folder)}
    vocabulary = metrics["codebook_size"]
    tokens = grid * grid
    row = {"grid": grid, "quantizer": name, "bits": bits, "vocabulary": vocabulary, "objective": objective,
           "objective_label": OBJECTIVES[objective][0],
           "bits_per_image": tokens * math.log2(vocabulary), "sequence_length": tokens, "seeds": seeds,
           "workdir": relative(os.path.join(args.workdir, folder_name(grid, name, bits, objective, seeds[0]))),
           "settle": settle}
    for key in per_seed[0]:
      values = [p[key] for p in per_seed]
      row[key], row[key + "_sd"] = float(np.mean(values)), float(np.std(values))
    cost = prior_cost(vocabulary, grid)
    row.update({"prior_ms_per_step": cost["ms_per_step"], "prior_flops_per_step": cost["flops_per_step"],
                "prior_params": cost["params"], "prior_batch_size": cost["batch_size"]})
    rows.append(row)
    print(f"{grid}x{grid} {name} 2^{bits} {objective}: {row['bits_per_image']:.0f} bits, PSNR {row['psnr']:.2f} dB, "
          "FD / floor " + ", ".join(f"{j} {row[judge_key('recon_fd_over_floor', j)]:.1f}x" for j in JUDGES)
          + f", prior {row['prior_ms_per_step']:.0f} ms / step", flush=True)

  command = (f"python experiments/rate_perception.py --workdir={relative(args.workdir)} --grids={args.grids} "
             f"--quantizers={args.quantizers} --bits={args.bits} --objectives={args.objectives} --seeds={args.seeds} "
             f"--steps={args.steps} --num_images={args.num_images}"
             + (f" --lfq_exact_bits={args.lfq_exact_bits}" if args.lfq_exact_bits != 12 else "")
             + (f" --prior_steps={args.prior_steps}" if args.prior_steps != 5 else "")
             + (f" --out={relative(args.out)}" if relative(args.out) != "experiments/results/rate_perception" else ""))
  pm = lambda r, k, f: f.format(r[k]) + (f" +- {f.format(r[k + '_sd'])}" if len(seeds) > 1 else "")
  label = lambda r: f"{r['quantizer']} {r['objective']} {r['grid']}x{r['grid']}"
  lines = ["# Rate and perception: reconstruction vs bits per image, and the prior's cost", "",
           f"`{command}` ({time.strftime('%Y-%m-%d')}; {os.cpu_count()}-core {jax.default_backend().upper()}; "
           f"training {train_s / 60:.1f} min for {len(wall)} new runs, scoring "
           f"{(time.perf_counter() - start - train_s) / 60:.1f} "
           f"min). The conv tokenizer of configs/tokenizer/vqgan_fashion_mnist.py (64 channels, 2 residual blocks) "
           f"with 4x4 patches folded into channels (7x7 codes) or 2x2 (14x14 codes), {args.steps} steps at batch 128; "
           f"the VQGAN objective's discriminator from step {args.steps // 3}. FSQ levels from the FSQ paper's table "
           f"(codes: 1000, 4375, 15360, 64000); LFQ's entropy exact up to 2^{args.lfq_exact_bits}, the grouped "
           f"bound (two groups) beyond; BSQ 16 latent channels, two entropy groups of bits/2 (its entropy ramp, x3 -> "
           f"x1 over 2000 steps, the quantizer's default, ends where the run does or later). PSNR, SSIM and usage "
           f"over the 10k test split (the run's metrics.json); {args.num_images} test images reconstructed for "
           f"LPIPS-style (contrastive encoder's maps) and the FD against the test split over the real floor "
           f"({args.num_images} training images): classifier {floors['classifier'][0]:.3f}, contrastive "
           f"{floors['contrastive'][0]:.3f}. Bits / image = tokens x log2(codes). Prior: "
           f"configs/prior/maskgit_fashion_mnist.py on random codes of that vocabulary and grid, batch "
           f"{rows[0]['prior_batch_size']}, ms per train step after compilation (mean of {args.prior_steps} steps on "
           f"one fixed batch, "
           f"{jax.devices()[0].device_kind}; a busy machine inflates it; XLA's FLOPs of the step do not vary); its "
           "sequence is [class, codes]. Tokenizer ms / step: the run's own clock after compilation."
           + (f" Mean +- standard deviation over seeds {args.seeds}." if len(seeds) > 1 else ""), "",
           "| grid | quantizer | codes | bits / image | objective | PSNR dB | SSIM | usage | FD / floor, classifier | "
           "FD / floor, contrastive | LPIPS-style | sequence length | prior ms / step | prior GFLOP / step | "
           "tokenizer ms / step |", "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    lines.append(f"| {r['grid']}x{r['grid']} | {r['quantizer']} | {r['vocabulary']} (2^{r['bits']}) | "
                 f"{r['bits_per_image']:.0f} | {r['objective']} | {pm(r, 'psnr', '{:.2f}')} | "
                 f"{pm(r, 'ssim', '{:.3f}')} | "
                 f"{pm(r, 'usage', '{:.1%}')} | {pm(r, 'recon_fd_over_floor', '{:.1f}')}x | "
                 f"{pm(r, 'recon_fd_over_floor_contrastive', '{:.1f}')}x | {pm(r, 'lpips', '{:.4f}')} | "
                 f"{r['sequence_length']} | {r['prior_ms_per_step']:.0f} | {r['prior_flops_per_step'] / 1e9:.1f} | "
                 f"{r['ms_per_train_step']:.0f} |")
  lines += ["", "Did the runs settle? (first seed) PSNR on the scored images and FD / floor (classifier, contrastive) "
            "at each checkpoint the run kept, and the last two logged training losses (the VQGAN objective's loss "
            "changes scale when the discriminator starts; its training MSE is comparable):", "",
            "| point | checkpoints: step PSNR dB (FD / floor cls, con) | last two logged: step loss (train MSE) | "
            "change over the last third |", "|---|---|---|---|"]
  for r in rows:
    s = r["settle"]
    ck = s["checkpoints"]
    text = "; ".join(f"{c['step']}: {c['psnr_n']:.2f} ({c['recon_fd_over_floor']:.1f}x, "
                     f"{c['recon_fd_over_floor_contrastive']:.1f}x)" for c in ck)
    losses = "; ".join(f"{x['step']}: {x['loss']:.4g}" + (f" ({x['mse']:.4g})" if x["mse"] is not None else "")
                       for x in s["last_losses"])
    change = (f"PSNR {ck[-1]['psnr_n'] - ck[-2]['psnr_n']:+.2f} dB, FD / floor "
              f"{ck[-1]['recon_fd_over_floor'] - ck[-2]['recon_fd_over_floor']:+.1f}x, "
              f"{ck[-1]['recon_fd_over_floor_contrastive'] - ck[-2]['recon_fd_over_floor_contrastive']:+.1f}x"
              if len(ck) > 1 else "one checkpoint kept: unknown")
    lines.append(f"| {label(r)} 2^{r['bits']} | {text} | {losses} | {change} |")
  lines += ["", f"![reconstruction FD over the real floor against bits per image]({os.path.basename(args.out)}.png)"]
  fig, axes = lib.figure(2)
  for key in dict.fromkeys((r["quantizer"], r["objective"], r["grid"]) for r in rows):
    line = sorted((r for r in rows if (r["quantizer"], r["objective"], r["grid"]) == key),
                  key=lambda r: r["bits_per_image"])
    for ax, judge in zip(axes, JUDGES):
      metric = judge_key("recon_fd_over_floor", judge)
      ax.errorbar([r["bits_per_image"] for r in line], [r[metric] for r in line],
                  yerr=[r[metric + "_sd"] for r in line] if len(seeds) > 1 else None, marker="o", ms=4, capsize=3,
                  ls="-" if key[1] == "mse" else "--", label=f"{key[0]} {key[1]} {key[2]}x{key[2]}")
  rates = [r["bits_per_image"] for r in rows]
  low, high = min(rates) / 1.15, max(rates) * 1.15
  for ax, judge in zip(axes, JUDGES):
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ax.xaxis.set_major_locator(ticker.FixedLocator([v for v in (250, 500, 1000, 2000, 4000) if low <= v <= high]
                                                   or sorted({round(v) for v in rates})))
    ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel("bits per image")
    ax.set_ylabel("reconstruction FD / real floor")
    ax.set_title(f"{judge} judge")
  axes[0].legend(fontsize=7)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  lib.save(fig, args.out)
  lib.write(args.out, lines, {"command": command, "rows": rows, "floors": {j: floors[j][0] for j in JUDGES},
                              "prior_costs": prior_cost.known, "train_wall_s": wall})


if __name__ == "__main__":
  main()
