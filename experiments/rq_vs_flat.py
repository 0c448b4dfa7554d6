"""RQ-Transformer vs flattening, at equal compute over one residual tokenizer's stacked codes (RQ-VAE's claim,
Lee et al. 2022 Sec. 4: the spatial + depth factorisation models [T, D] stacks better and samples faster than one
transformer over the T x D flattened codes).

  python experiments/rq_vs_flat.py                                   # trains configs/tokenizer/rvq_fashion_mnist.py
  python experiments/rq_vs_flat.py --tokenizer=runs/rvq --steps=2400
  python experiments/rq_vs_flat.py --tokenizer=runs/rvq --quick --out=/tmp/rq      # 20 steps, 100 samples: a check
  python experiments/rq_vs_flat.py --tokenizer=runs/rvq --rows=rq --workdir=runs/rq2  # one row; the table keeps the
                                                     # other rows of an earlier run with the same tokenizer and budget

Rows: `flat`, the autoregressive prior (configs/prior/ar_fashion_mnist.py) over the codes flattened to one row of
w x D codes per grid row (T D slots, network.depth layers), and `rq`, the RQ-Transformer (configs/prior/
rq_fashion_mnist.py) with `--rq_depth` spatial layers over the T positions and `--rq_depth_layers` depth layers
over each position's D codes. The default split, 8 + 2 against 4 at D = 4, gives both the same layer-slots per
sequence (8 T + 2 T D = 4 T D); the table reports the XLA FLOPs of one training step per sequence to show it.
Both report the exact likelihood of the same codes (bits per code), so the validation NLLs compare directly.
Sampling: each prior's own sampler with its config's guidance (2), scored like every prior run (1000 class-balanced
samples vs the Fashion-MNIST test split). Writes experiments/results/rq_vs_flat[_TAG].{md,json,png}.
"""

import argparse
import json
import os
import shutil
import time

import curves_lib as lib
import jax
import matplotlib.image as mpimg
from flax import nnx

from vqgen import config as config_lib
from vqgen.stages import PriorStage, run

RVQ_TOKENIZER = os.path.join(lib.ROOT, "configs", "tokenizer", "rvq_fashion_mnist.py")


def tokenizer_workdir(args) -> str:
  """--tokenizer (checked: a tokenizer run with stacked codes), else configs/tokenizer/rvq_fashion_mnist.py trained
  in (or resumed from) WORKDIR/tokenizer."""
  if args.tokenizer:
    path = lib.check_workdir(args.tokenizer, "tokenizer")
  else:
    path = os.path.join(os.path.abspath(args.workdir), "tokenizer")
    run(config_lib.load_config(f"{RVQ_TOKENIZER}:steps={args.tokenizer_steps}"), path)
  if config_lib.load_workdir_config(path).quantizer.name not in ("residual", "grouped"):
    raise lib.UsageError(f"{args.tokenizer} has one code per position: this comparison needs stacked codes (a "
                         "residual or grouped tokenizer, e.g. configs/tokenizer/rvq_fashion_mnist.py)")
  return path


def step_cost(config) -> tuple[float, int]:
  """XLA's FLOPs of one training step's loss and gradient per sequence (compiled for a batch of 8), and the
  number of parameters."""
  stage = PriorStage(config)
  model = stage.build_model(nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  codes = stage.train_codes["codes"][:8].reshape(8, -1)
  batch = {"codes": jax.numpy.asarray(codes), "label": jax.numpy.asarray(stage.train_codes["labels"][:8])}
  grad = jax.jit(jax.grad(lambda p: nnx.merge(graphdef, p, rest).loss(batch["codes"], batch["label"],
                                                                   jax.random.key(0))[0]))
  cost = grad.lower(params).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost["flops"]) / 8, sum(x.size for x in jax.tree.leaves(params))


def train(name: str, spec: str, workdir: str, seed: int, tokenizer: str) -> dict:
  config = config_lib.load_config(spec)
  with config.unlocked():
    config.seed = seed
  flops, num_params = step_cost(config)
  start = time.perf_counter()
  results = run(config, workdir)
  n = config.network
  layers = f"{n.depth} spatial + {n.depth_layers} depth" if config.prior.name == "rq_transformer" else f"{n.depth}"
  return {"row": name, "tokenizer": tokenizer, "prior": config.prior.name, "spec": os.path.relpath(spec, lib.ROOT), "layers": layers,
          "width": n.width, "steps": config.train.steps, "batch_size": config.data.batch_size, "seed": seed,
          "flops_per_sequence": flops, "num_params": num_params, "minutes": (time.perf_counter() - start) / 60, "workdir": workdir, **results}


def merged(rows, out):
  """`rows` after the rows of OUT.json with other names and the same tokenizer and budget: rows trained by separate
  commands (`--rows=flat`, `--rows=rq --workdir=...`, even on other machines) end in one table."""
  if not os.path.exists(out + ".json"):
    return rows
  with open(out + ".json") as f:
    earlier = json.load(f)
  same = lambda r: all(r.get(k, rows[0][k]) == rows[0][k] for k in ("tokenizer", "steps", "batch_size", "width",
                                                                     "seed"))
  names = {r["row"] for r in rows}
  return [r for r in earlier if r["row"] not in names and same(r)] + rows


def write(rows, out, tokenizer):
  rows = merged(rows, out)
  lines = ["# RQ-Transformer vs flattening at equal compute", "", f"Command: `{lib.command()}`. Tokenizer "
           f"`{os.path.relpath(tokenizer, lib.ROOT) if tokenizer.startswith(lib.ROOT) else tokenizer}` "
           f"(stacked codes, D per position). Each prior: {rows[0]['steps']} steps at batch {rows[0]['batch_size']}, "
           f"width {rows[0]['width']}, seed {rows[0]['seed']}. {lib.floors_text(rows[0])}. `GFLOP/seq` is XLA's "
           "count of one training step (loss and gradient) per sequence; `ms/image` the evaluation's sampling with "
           "decoding at batch 250 on whatever else the machine ran.", ""]
  header = (["row", "layers", "params", "GFLOP/seq", "val. bits/code (exact)"] + [lib.HEADERS[m] for m in lib.METRICS]
            + ["NFE", "ms/image", "minutes"])
  body = [[r["row"], r["layers"], f"{r['num_params'] / 1e6:.2f}M", f"{r['flops_per_sequence'] / 1e9:.2f}",
           f"{r['val_bits_per_token']:.3f}"] + lib.cells(dict(r, **lib.fd_ratios(r)))
          + [str(r["sample_forward_passes"]), f"{r['sample_ms_per_image']:.1f}", f"{r['minutes']:.1f}"] for r in rows]
  lib.write(out, lines + lib.table(header, body, numeric_from=2), rows)
  fig, axes = lib.figure(len(rows), width=5.0, height=5.0)
  for ax, r in zip(axes, rows):
    ax.imshow(mpimg.imread(os.path.join(r["workdir"], "samples.png")), cmap="gray")
    ax.set_title(f"{r['row']}: FD {lib.by_judges(r, 'sample_fd', '{:.1f}')}, {r['val_bits_per_token']:.2f} bits/code",
                 fontsize=9)
    ax.axis("off")
  lib.save(fig, out, "samples, one row per class")


def main(args):
  tokenizer = tokenizer_workdir(args)
  common = f"tokenizer={tokenizer},steps={args.steps},batch_size={args.batch_size},width={args.width}," \
           f"num_samples={args.num_samples}"
  cases = {"flat": f"{lib.ROOT}/configs/prior/ar_fashion_mnist.py:{common},depth={args.flat_depth}",
           "rq": f"{lib.ROOT}/configs/prior/rq_fashion_mnist.py:{common},depth={args.rq_depth},"
                 f"depth_layers={args.rq_depth_layers}"}
  out = lib.outputs(args, "rq_vs_flat")
  rows = []
  for name in lib.choices(args.rows, list(cases), "row"):
    rows.append(train(name, cases[name], os.path.join(os.path.abspath(args.workdir), name + (
        f"_{args.tag}" if args.tag else "")), args.seed, tokenizer))
    shutil.copy(os.path.join(rows[-1]["workdir"], "samples.png"), f"{out}_{name}.png")
    write(rows, out, tokenizer)  # after every row: an interrupted comparison keeps its rows


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--tokenizer", default="", help="a trained residual / grouped tokenizer workdir")
  parser.add_argument("--tokenizer_steps", type=int, default=1500, help="when training the RVQ tokenizer")
  parser.add_argument("--rows", default="flat,rq")
  parser.add_argument("--steps", type=int, default=2400)
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--width", type=int, default=128)
  parser.add_argument("--flat_depth", type=int, default=4)
  parser.add_argument("--rq_depth", type=int, default=8)
  parser.add_argument("--rq_depth_layers", type=int, default=2)
  parser.add_argument("--seed", type=int, default=0, help="training seed (config.seed)")
  parser.add_argument("--num_samples", type=int, default=1000)
  parser.add_argument("--out", default=lib.RESULTS)
  parser.add_argument("--tag", default="")
  parser.add_argument("--workdir", default=os.path.join(lib.ROOT, "runs", "rq_vs_flat"))
  parser.add_argument("--quick", action="store_true", help="20 training steps, 100 samples (checks the script)")
  lib.main_guard(parser, main, quick=dict(steps=20, num_samples=100))
