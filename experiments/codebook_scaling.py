"""The FSQ paper's codebook-scaling study (Mentzer et al. 2023, Fig. 3) at Fashion-MNIST scale.

  python experiments/codebook_scaling.py --quick          # 2^6, 2^10, 2^14 x 8 quantizers, 300 steps each
  python experiments/codebook_scaling.py                  # 2^6 .. 2^14 (every 2 bits), 1500 steps each
  python experiments/codebook_scaling.py --bits 8,10 --quantizers fsq,vq --steps 500
  python experiments/codebook_scaling.py --quick --resume      only the cells not yet in the results file

The same encoder/decoder and the same budget (steps x batch 128) for every quantizer: plain VQ, VQ + rotation
trick (gradient codebook, and EMA codebook as the peer library pairs it), VQ + EMA + dead-code restarts (k-means
init), SimVQ, FSQ (levels from the paper's table), LFQ and BSQ; and the codebook-learning methods of the papers
(issue 16), each with its source's settings: OptVQ (Sinkhorn assignment), CVQ (cosine codes, closest anchors),
stochastic code sampling (temperature 0.1), TIQ's orthogonal regulariser (weight 10 over 1024 sampled codes),
codebook diversity (weight 0.1), the straightened STE (affine codebook lr 10 + synchronised commitment 0.2; and
alternating codebook steps, lr 50, momentum 0.9), VQGAN-LC (a frozen codebook of k-means centres of the
perceptual network's patch features and a trained projector; the centres are computed once per size into
runs/codebook_scaling/, from the cached perceptual network) and FSQ with TAAE's noise dropout (p = 0.5). The network is the demo's (4x4 patches folded
into channels, 7x7 codes) slimmed to 32 channels and one residual block (NETWORK): it reaches 21.4 dB with FSQ in
1500 steps (experiments/results/fsq_usage.md) at a fifth of the demo's step time, which is what makes the
40-run full grid fit in a few hours of this 2-core CPU. Cells run smallest codebook first, so an interrupted grid
has every quantizer at the sizes it reached; `--resume` finishes it. Measures test PSNR (all 10k test images), codebook usage over the test split
and perplexity. Writes experiments/results/codebook_scaling{,_quick}.md, .json and two PNG plots.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vqgen import config as config_lib  # noqa: E402
from vqgen.data import FashionMNIST  # noqa: E402
from vqgen.stages.classifier import perceptual_network  # noqa: E402
from vqgen.stages.feature_codebook import fit_feature_codebook, write_feature_codebook  # noqa: E402
from vqgen.stages import run  # noqa: E402
from vqgen.quantizers import RECOMMENDED_LEVELS  # noqa: E402

LATENT_DIM = 16  # encoder output channels for the quantizers that project (VQ family, BSQ)
NETWORK = {"channels": 32, "num_res_blocks": 1}
QUANTIZERS = "vq,vq_rotation,vq_rotation_ema,vq_ema_dead,simvq,fsq,lfq,bsq"
PAPER_METHODS = "optvq,cvq,vq_sample,vq_orthogonal,vq_diversity,vq_straightened,vq_alternating,vqgan_lc,fsq_noise"
LC_FEATURES = 64  # FashionPerceptual's last tap: VQGAN-LC's feature dimension here


def quantizer(name: str, bits: int):
  k = 2**bits
  vq = dict(dim=LATENT_DIM, codebook_size=k)
  table = {
      "vq": lambda: config_lib.quantizer_config("vq", **vq),
      "vq_rotation": lambda: config_lib.quantizer_config("vq", gradient="rotation", **vq),
      "vq_rotation_ema": lambda: config_lib.quantizer_config("vq", gradient="rotation", learning="ema", **vq),
      "vq_ema_dead": lambda: config_lib.quantizer_config("vq", learning="ema", dead_code_threshold=0.1,
                                                         kmeans_init=True, **vq),
      "simvq": lambda: config_lib.quantizer_config("vq", simvq=True, **vq),
      "optvq": lambda: config_lib.quantizer_config("vq", assignment="optimal_transport", **vq),
      "cvq": lambda: config_lib.quantizer_config("vq", cosine=True, cvq_anchor="closest", **vq),
      "vq_sample": lambda: config_lib.quantizer_config("vq", assignment="sample", sample_temperature=0.1, **vq),
      "vq_orthogonal": lambda: config_lib.quantizer_config("vq", orthogonal_weight=10.0, orthogonal_max_codes=1024,
                                                           **vq),
      "vq_diversity": lambda: config_lib.quantizer_config("vq", diversity_weight=0.1, **vq),
      "vq_straightened": lambda: config_lib.quantizer_config("vq", affine_lr=10.0, sync_nu=0.2, **vq),
      "vq_alternating": lambda: config_lib.quantizer_config("vq", learning="alternating", **vq),
      "vqgan_lc": lambda: config_lib.quantizer_config("vq", feature_dim=LC_FEATURES, **vq),
      "fsq": lambda: config_lib.quantizer_config("fsq", levels=RECOMMENDED_LEVELS[bits]),
      "fsq_noise": lambda: config_lib.quantizer_config("fsq", levels=RECOMMENDED_LEVELS[bits], noise_dropout=0.5),
      # The exact codebook entropy streams N x K soft assignments per step: beyond 2^12 codes that is hours of
      # this CPU, so larger LFQs use the grouped bound (two groups, as MaskBit factorises).
      "lfq": lambda: config_lib.quantizer_config("lfq", codebook_size=k, entropy_mode="exact" if bits <= 12
                                                 else "grouped", group_size=1 if bits <= 12 else bits // 2),
      "bsq": lambda: config_lib.quantizer_config("bsq", dim=LATENT_DIM, num_bits=bits,
                                                 group_size=max(g for g in range(1, 8) if bits % g == 0)),
  }
  return table[name]()


PAPER = ("FSQ paper (ImageNet, MaskGIT tokenizers): VQ codebook usage falls below 50% beyond 2^11 codes and VQ "
         "never uses more than ~2^10 codes; FSQ usage stays near 100% and keeps growing (more than 2^15 of 2^16 "
         "used). Reconstruction improves with codebook size for FSQ, while VQ saturates.")


def feature_codebook(workdir: str, codebook_size: int) -> str:
  """VQGAN-LC's codebook of this size (k-means centres of 300k patch features of the cached perceptual network),
  computed once into workdir; returns its path."""
  path = os.path.join(workdir, f"feature_codebook_{codebook_size}.npy")
  if not os.path.exists(path):
    centres, _, _ = fit_feature_codebook(perceptual_network(), FashionMNIST("train").images, codebook_size)
    write_feature_codebook(path, centres)
  return path


def write(rows, out, steps, quick):
  """Table (md), rows (json) and the two plots (png) of the runs so far."""
  lines = [f"# Codebook scaling on Fashion-MNIST ({'quick' if quick else 'full'} grid)", "",
           f"Demo encoder/decoder slimmed to {NETWORK['channels']} channels and {NETWORK['num_res_blocks']} "
           f"residual block (7x7 codes), {steps} steps at batch 128 for every run; PSNR over all 10k "
           "test images; usage = codes used at least once on the test split. LFQ's entropy penalty is exact up to "
           "2^12 codes and the grouped bound (two groups of bits) beyond. Command: "
           f"`python experiments/codebook_scaling.py{' --quick' if quick else ''}`.", "",
           "| quantizer | codes | test PSNR (dB) | usage | codes used | perplexity | minutes |",
           "|---|---:|---:|---:|---:|---:|---:|"]
  lines += [f"| {r['quantizer']} | 2^{r['bits']}"
            + (f" ({r['codebook_size']})" if r["codebook_size"] != 2**r["bits"] else "") + f" | {r['test_psnr']:.2f} | {r['codebook_usage']:.1%} | "
            f"{r['codebook_usage'] * r['codebook_size']:.0f} | {r['codebook_perplexity']:.0f} | "
            f"{r['minutes']:.1f} |" for r in rows]
  names = list(dict.fromkeys(r["quantizer"] for r in rows))
  sizes = sorted({r["bits"] for r in rows})
  cell = {(r["quantizer"], r["bits"]): r for r in rows}
  for key, title, fmt in (("codebook_usage", "Usage", "{:.1%}"), ("test_psnr", "Test PSNR (dB)", "{:.2f}")):
    lines += ["", f"{title} by codebook size:", "", "| codes | " + " | ".join(names) + " |",
              "|---|" + "---:|" * len(names)]
    lines += [f"| 2^{b} | " + " | ".join(fmt.format(cell[n, b][key]) if (n, b) in cell else "" for n in names)
              + " |" for b in sizes]
  lines += ["", "Paper's findings for comparison: " + PAPER]
  with open(out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  for key, label, fname in (("codebook_usage", "codebook usage (test split)", "usage"),
                            ("test_psnr", "test PSNR (dB)", "psnr")):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = plt.get_cmap("tab20").colors
    for i, name in enumerate(dict.fromkeys(r["quantizer"] for r in rows)):
      pts = [(r["bits"], r[key]) for r in rows if r["quantizer"] == name]
      ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name, color=colors[i % len(colors)],
              linestyle="--" if name in PAPER_METHODS.split(",") else "-")
    ax.set_xlabel("log2 codebook size")
    ax.set_ylabel(label)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), title="dashed: issue 16",
              title_fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(f"{out}_{fname}.png", dpi=100)
    plt.close(fig)
  with open(out + ".json", "w") as f:
    json.dump(rows, f, indent=2)
  print("\n".join(lines), flush=True)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--bits", default="")
  parser.add_argument("--quantizers", default=QUANTIZERS + "," + PAPER_METHODS)
  parser.add_argument("--steps", type=int, default=0)
  parser.add_argument("--resume", action="store_true", help="keep the rows of an earlier (interrupted) run of "
                      "the same grid and run only the missing cells")
  parser.add_argument("--workdir", default=os.path.join(ROOT, "runs", "codebook_scaling"))
  args = parser.parse_args()
  bits_list = [int(b) for b in args.bits.split(",")] if args.bits else ([6, 10, 14] if args.quick else
                                                                       [6, 8, 10, 12, 14])
  steps = args.steps or (300 if args.quick else 1500)
  suffix = "_quick" if args.quick else ""
  out = os.path.join(ROOT, "experiments", "results", "codebook_scaling" + suffix)
  rows = []
  if args.resume and os.path.exists(out + ".json"):
    with open(out + ".json") as f:
      rows = [r for r in json.load(f) if r["steps"] == steps]
  done = {(r["quantizer"], r["bits"]) for r in rows}
  for bits in bits_list:
    for name in args.quantizers.split(","):
      if (name, bits) in done:
        continue
      c = config_lib.load_config(os.path.join(ROOT, "configs/demo.py"))
      c.quantizer = quantizer(name, bits)
      if c.quantizer.get("feature_dim", 0):
        c.model.feature_codebook = feature_codebook(args.workdir, 2**bits)
      for key, value in NETWORK.items():
        c.model[key] = value
      c.train.steps = steps
      c.train.checkpoint_every = steps
      c.train.log_every = max(steps // 5, 1)
      config_lib.validate(c)
      start = time.perf_counter()
      results = run(c, os.path.join(args.workdir, f"{name}_{bits}{suffix}"))
      rows.append({"quantizer": name, "bits": bits, "codebook_size": results["codebook_size"],
                   "steps": steps, "minutes": (time.perf_counter() - start) / 60,
                   **{k: results[k] for k in ("test_psnr", "codebook_usage", "codebook_perplexity")}})
      print(rows[-1], flush=True)
      write(rows, out, steps, args.quick)  # after every run: an interrupted grid keeps its rows

  write(rows, out, steps, args.quick)


if __name__ == "__main__":
  main()
