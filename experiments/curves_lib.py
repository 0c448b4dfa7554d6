"""What the sampling-curve experiments share (mask_schedules.py, guidance_sweep.py, prior_seeds.py and
prior_comparison.py): the tokenizer and priors they run on, one loaded prior sampled and scored under sampler
overrides, mean / spread over seeds, and the results files (.md, .json, .png).

A `Sweep` loads a prior workdir once (vqgen.stages.load_run) and the sample scorer once
(stages/classifier.py:sample_scorer), then samples exactly as `python -m vqgen.sample --workdir=DIR --metrics
--seed=S --<sampler flag>=...` would (same labels, key and batch size), so any point of a curve can be re-checked
with that command.
"""

import copy
import json
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vqgen import config as config_lib  # noqa: E402
from vqgen.evaluation.samples import JUDGES, judge_key  # noqa: E402
from vqgen.stages import PriorStage, build, load_run, run  # noqa: E402
from vqgen.stages.classifier import sample_scorer  # noqa: E402
from vqgen.stages.generate import Generator, balanced_labels  # noqa: E402
from vqgen.train import writers  # noqa: E402

RESULTS = os.path.join(ROOT, "experiments", "results")
# The scores a curve reports, how the tables print them and their columns' headers: the Frechet distance and its
# ratio to the tokenizer's reconstruction FD by each judge (evaluation/samples.py: results from before the
# contrastive judge lack its keys and show empty cells), then the classifier's precision, recall and class accuracy.
METRICS = {"sample_fd": "{:.2f}", "fd_over_recon": "{:.1f}x", "sample_fd_contrastive": "{:.2f}",
           "fd_over_recon_contrastive": "{:.1f}x", "precision": "{:.3f}", "recall": "{:.3f}",
           "class_accuracy": "{:.1%}"}
HEADERS = {"sample_fd": "FD", "fd_over_recon": "FD / recon FD", "sample_fd_contrastive": "FD, contrastive",
           "fd_over_recon_contrastive": "FD / recon FD, contrastive", "precision": "precision", "recall": "recall",
           "class_accuracy": "class acc."}


class UsageError(ValueError):
  """Bad command-line input; the scripts print the message through argparse."""


# --- command lines ------------------------------------------------------------------------------------------------


def add_budget_args(parser, name: str) -> None:
  """prior_comparison.py's and prior_seeds.py's options: which families, over which tokenizer, at what budget."""
  parser.add_argument("--tokenizer", default="", help="a trained tokenizer workdir (default: train the demo's)")
  parser.add_argument("--priors", default=",".join(config_lib.PRIOR_CONFIGS))
  parser.add_argument("--steps", type=int, default=2400)
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--variant", default="", help="key=value,... passed to every prior config")
  parser.add_argument("--tag", default="", help="suffix of the results files")
  parser.add_argument("--workdir", default=os.path.join(ROOT, "runs", name))


def add_common_args(parser, name: str) -> None:
  """The options every curve script takes: where its files go, how many samples, and their seeds."""
  parser.add_argument("--num_samples", type=int, default=1000, help="class-balanced samples per point")
  parser.add_argument("--seeds", default="0", help="sampling seeds (comma separated): mean +- std over them")
  parser.add_argument("--batch_size", type=int, default=0, help="sampling batch (default: the run's "
                      "config.sampling.batch_size, as vqgen.sample)")
  parser.add_argument("--out", default=RESULTS, help="folder of the results files")
  parser.add_argument("--tag", default="", help=f"suffix of the results files ({name}_TAG.md ...)")
  parser.add_argument("--workdir", default=os.path.join(ROOT, "runs", name),
                      help="where priors (and the demo tokenizer) are trained when no trained workdir is given")


def numbers(spec: str, what: str, kind=int) -> list:
  """'4,8,16' -> [4, 8, 16] (`kind` int or float), or a UsageError naming the option."""
  try:
    values = [kind(v) for v in spec.split(",") if v.strip()]
  except ValueError as e:
    raise UsageError(f"{what} must be comma-separated {'integers' if kind is int else 'numbers'}, got "
                     f"{spec!r}") from e
  if not values:
    raise UsageError(f"{what} is empty")
  return values


def choices(spec: str, allowed, what: str) -> list[str]:
  """Comma-separated names, each one of `allowed`."""
  names = [v for v in spec.split(",") if v]
  bad = [v for v in names if v not in allowed]
  if bad or not names:
    raise UsageError(f"unknown {what} {', '.join(map(repr, bad)) or '(none given)'}; choose from "
                     f"{', '.join(allowed)}")
  return names


def sampling_overrides(spec: str) -> dict:
  """'choice_temperature=6,steps=12' -> {key: value} of config.sampling keys (values parsed as int / float /
  string by the key's default)."""
  defaults = config_lib.prior_config().sampling
  out = {}
  for item in (v for v in spec.split(",") if v):
    key, sep, value = item.partition("=")
    keys = [k for k in defaults if k not in ("num_samples", "batch_size")]  # those are --num_samples, --batch_size
    if not sep or key not in keys:
      raise UsageError(f"--sampling: {item!r} is not key=value of a config.sampling key ({', '.join(keys)})")
    try:
      out[key] = type(defaults[key])(value)
    except ValueError as e:
      raise UsageError(f"--sampling: {key} takes a {type(defaults[key]).__name__}, got {value!r}") from e
  return out


def check_workdir(workdir: str, stage: str) -> str:
  """The absolute path of a finished `stage` run, or a UsageError saying what is wrong with it."""
  path = os.path.abspath(workdir)
  if not os.path.exists(os.path.join(path, "config.json")):
    raise UsageError(f"{workdir} is not a vqgen workdir (no config.json): train it first (python -m vqgen.main "
                     "--config=... --workdir=...)")
  saved = config_lib.load_workdir_config(path)
  if saved.stage != stage:
    raise UsageError(f"{workdir} holds a {saved.stage} run, not a {stage} run")
  if not os.path.isdir(os.path.join(path, "checkpoints")):
    raise UsageError(f"{workdir} has no checkpoints/: its training has not finished a checkpoint yet")
  return path


def outputs(args, name: str) -> str:
  """The results path prefix: OUT/NAME[_TAG]."""
  os.makedirs(args.out, exist_ok=True)
  return os.path.join(args.out, name + (f"_{args.tag}" if args.tag else ""))


def command() -> str:
  return "python " + " ".join([os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)] + sys.argv[1:])


# --- training -----------------------------------------------------------------------------------------------------


def tokenizer_workdir(tokenizer: str, workdir: str) -> str:
  """A trained tokenizer workdir: `tokenizer` when given, else the demo tokenizer (configs/demo.py), trained in
  (or resumed from) WORKDIR/tokenizer."""
  if tokenizer:
    return check_workdir(tokenizer, "tokenizer")
  path = os.path.join(os.path.abspath(workdir), "tokenizer")
  run(config_lib.load_config(os.path.join(ROOT, "configs", "demo.py")), path)
  return path


def check_family(name: str) -> None:
  if name not in config_lib.PRIOR_CONFIGS:
    raise UsageError(f"unknown prior {name!r}; choose from {', '.join(sorted(config_lib.PRIOR_CONFIGS))}")


def train_prior(name: str, tokenizer: str, workdir: str, variant: str = "", seed: int | None = None,
                **budget) -> dict:
  """Trains (or resumes) prior family `name` from its configs/prior/ file over `tokenizer`'s codes with
  `budget` (steps=, batch_size=: the config files' variant keys), the extra `variant` and training `seed`
  (config.seed; None keeps the file's). Returns the run's results with the budget, network and minutes."""
  check_family(name)
  spec = ",".join([f"tokenizer={tokenizer}"] + [f"{k}={v}" for k, v in budget.items() if v] + [variant])
  c = config_lib.load_config(config_lib.prior_config_path(name, spec.rstrip(",")))
  if seed is not None:
    c.seed = seed
  start = time.perf_counter()
  results = run(c, workdir)
  net = c.network
  return {"prior": name, "steps": c.train.steps, "batch_size": c.data.batch_size, "tokenizer": tokenizer,
          "network": f"width {net.width}, depth {net.depth}, {net.head} head", "seed": c.seed,
          "workdir": workdir, "sampler": settings_text(build.sampler_kwargs(c)),
          "minutes": (time.perf_counter() - start) / 60,
          "train_minutes": training_minutes(workdir), **results}


def training_minutes(workdir: str) -> float | None:
  """The training loop's own clock (metrics.jsonl `uptime`), in minutes, summed over the segments of a resumed run
  (each restarts the clock at 0): a run reused from a finished checkpoint reports its earlier training, not its
  re-evaluation. None when never logged."""
  total, last = 0.0, None
  for row in writers.read_rows(os.path.join(workdir, "metrics.jsonl")):  # (a garbled row is skipped, with a warning)
    uptime = row.get("uptime")
    if uptime is None:
      continue
    if last is not None and uptime < last:  # a new segment: the resumed loop's clock started again
      total += last
    last = uptime
  return None if last is None else (total + last) / 60


def val_nll(r: dict) -> tuple[float, str]:
  """(value, unit) of the likelihood each family reports: bits/token for AR (exact) and the diffusions (ELBO);
  MaskGIT's masked-token cross-entropy in nats, which is no likelihood."""
  if r["prior"] == "autoregressive":
    return r["val_loss"] / math.log(2), "bits/token (exact)"
  if "val_bits_per_token" in r:
    return r["val_bits_per_token"], "bits/token (ELBO)"
  return r["val_masked_nll"], "nats/masked token"


# --- sampling and scoring -----------------------------------------------------------------------------------------


class Sweep:
  """One trained prior loaded once, sampled and scored under any config.sampling overrides."""

  def __init__(self, workdir: str, num_samples: int, batch_size: int = 0, family: str = ""):
    self.workdir = check_workdir(workdir, "prior")
    self.family = config_lib.load_workdir_config(self.workdir).prior.name
    if family and self.family != family:
      raise UsageError(f"{workdir} holds a prior of family {self.family!r}, not {family!r}")
    self.config, self.prior, self.stage = load_run(self.workdir, PriorStage)
    self.num_classes = self.config.prior.num_classes
    labels = balanced_labels(num_samples, self.num_classes)
    self.labels = labels if self.num_classes else np.full_like(labels, self.prior.network.vocab.null_label)
    self.batch_size = min(batch_size or self.config.sampling.batch_size, num_samples)
    self.scorer = sample_scorer(self.stage.tokenizer, self.stage.tokenizer_config)

  def settings(self, **overrides):
    """The run's config with config.sampling overrides, validated (ConfigError names a bad value)."""
    config = copy.deepcopy(self.config)
    with config.unlocked():
      for key, value in overrides.items():
        if key not in config.sampling:
          raise UsageError(f"config.sampling has no key {key!r}")
        config.sampling[key] = value
    config_lib.validate(config)
    return config

  def score(self, seed: int = 0, **overrides) -> dict:
    """Samples `num_samples` class-balanced images with sampling seed `seed` under `overrides` and scores them:
    the sampler's settings, FD by each judge (and / recon FD), precision, recall, class accuracy, floors, NFE and
    timing."""
    config = self.settings(**overrides)
    generator = Generator(self.prior, self.stage.tokenizer, self.stage.code_shape, build.sampler_kwargs(config))
    samples = generator(self.labels, jax.random.key(seed), self.batch_size)
    scores = self.scorer.score(samples["images"], self.labels if self.num_classes else None)
    row = {"seed": seed, "workdir": self.workdir, **build.sampler_kwargs(config), **scores, **fd_ratios(scores),
           "forward_passes": samples["forward_passes"], "ms_per_image": samples["ms_per_image"],
           "compile_seconds": samples["compile_seconds"]}
    print(f"  {settings_text(overrides)} seed {seed}: FD {by_judges(row, 'sample_fd')}, P {row['precision']:.3f}, "
          f"R {row['recall']:.3f}" + (f", class acc. {row['class_accuracy']:.1%}" if self.num_classes else "")
          + f", {row['ms_per_image']:.1f} ms/image", flush=True)
    return row

  def drew(self, point: dict, swept: tuple, **overrides) -> bool:
    """Whether `point`, a row of an earlier results file, was drawn from this prior (point["workdir"]) with as
    many samples and the same sampler as `overrides` give, but for the `swept` keys: --resume keeps it."""
    mine = json.loads(json.dumps(build.sampler_kwargs(self.settings(**overrides)), default=str))
    return (point.get("workdir") == self.workdir and point.get("num_samples") == len(self.labels)
            and all(point.get(k) == v for k, v in mine.items() if k not in swept))

  def describe(self) -> str:
    """The prior in words, for the results' headers."""
    c = self.config
    return (f"`{os.path.relpath(self.workdir, ROOT) if self.workdir.startswith(ROOT) else self.workdir}`: "
            f"{self.family}, width {c.network.width}, depth {c.network.depth}, {c.train.steps} steps at batch "
            f"{c.data.batch_size}, seed {c.seed}; its sampler: {settings_text(build.sampler_kwargs(c))}")


def earlier_points(args, out: str, workdir_of) -> list[dict]:
  """With --resume, the points of OUT.json from an earlier call, each with its prior's "workdir" (files written
  before points carried it: workdir_of(data, point)); [] without --resume or file."""
  if not args.resume or not os.path.exists(out + ".json"):
    return []
  with open(out + ".json") as f:
    data = json.load(f)
  return [dict(p, workdir=p.get("workdir") or workdir_of(data, p)) for p in data.get("points", [])]


def settings_text(settings: dict) -> str:
  return ", ".join(f"{k}={v}" for k, v in settings.items()) or "defaults"


def fd_ratios(scores: dict) -> dict:
  """{fd_over_recon[_<judge>]: sample FD / tokenizer reconstruction FD} for each judge that scored `scores`."""
  fd = lambda name, judge: scores.get(judge_key(name, judge))
  return {judge_key("fd_over_recon", j): fd("sample_fd", j) / fd("recon_fd", j) for j in JUDGES
          if fd("sample_fd", j) is not None and fd("recon_fd", j) is not None}


def by_judges(row: dict, name: str, fmt: str = "{:.2f}") -> str:
  """'12.34 (contrastive 5.67)': score `name` by the classifier, then by each other judge that `row` holds."""
  others = [f"{j} {fmt.format(row[judge_key(name, j)])}" for j in JUDGES[1:]
            if row.get(judge_key(name, j)) is not None]
  return fmt.format(row[name]) + (f" ({', '.join(others)})" if others else "")


def cells(row: dict, metrics=tuple(METRICS)) -> list[str]:
  """The table cells of one scored row (one seed, not aggregated), '-' for a metric it lacks."""
  return [METRICS[m].format(row[m]) if row.get(m) is not None else "-" for m in metrics]


def trained(folder: str, config) -> dict:
  """The metrics.json of the run of `config` in `folder`, trained there first unless it finished before (an
  interrupted run resumes)."""
  path = os.path.join(folder, "metrics.json")
  if os.path.exists(path):
    return writers.read_json(path)
  print(f"== {os.path.basename(folder)}", flush=True)
  return run(config, folder)


def override(config, overrides: dict):
  """`config` with {dotted key: value} set (existing keys only), returned for chaining."""
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config


# --- mean and spread ----------------------------------------------------------------------------------------------


def aggregate(rows: list[dict], by: tuple, metrics=tuple(METRICS)) -> list[dict]:
  """One row per distinct value of the `by` keys (in first-seen order), with <metric>_mean / _std / _min / _max / _n
  over the rows (seeds) that share it and hold the metric, `n` and `seeds`; the other keys from the first such row."""
  groups = {}
  for r in rows:
    groups.setdefault(tuple(r[k] for k in by), []).append(r)
  out = []
  for group in groups.values():
    a = dict(group[0], n=len(group), seeds=[r["seed"] for r in group])
    for m in metrics:
      values = np.array([r[m] for r in group if m in r], np.float64)
      if len(values):
        a.update({f"{m}_mean": values.mean(), f"{m}_std": values.std(ddof=1) if len(values) > 1 else 0.0,
                  f"{m}_min": values.min(), f"{m}_max": values.max(), f"{m}_n": len(values)})
    out.append(a)
  return out


def spread(a: dict, metric: str, fmt: str | None = None, extremes: bool = False) -> str:
  """'mean +- std' of an aggregated metric (just the value for one seed), with the min-max range if asked; '' when
  no row held it."""
  fmt = fmt or METRICS.get(metric, "{:.3f}")
  if f"{metric}_mean" not in a:
    return ""
  text = fmt.format(a[f"{metric}_mean"])
  if a.get(f"{metric}_n", a["n"]) > 1:
    std = fmt.format(a[f"{metric}_std"]).rstrip("x")
    text += f" +- {std}"
    if extremes:
      text += f" ({fmt.format(a[f'{metric}_min'])}-{fmt.format(a[f'{metric}_max'])})"
  return text


# --- results files ------------------------------------------------------------------------------------------------


def floors_text(row: dict) -> str:
  """The floors every score sits beside (evaluation/samples.py), from any scored row."""
  nn_accuracy = row.get("contrastive_nn_accuracy")
  return (f"{row['num_samples']} class-balanced samples per point vs the {row['reference']}; real-vs-real floor FD "
          f"{by_judges(row, 'real_fd_floor')}, precision / recall {row['real_precision_floor']:.2f} / "
          f"{row['real_recall_floor']:.2f}; tokenizer reconstruction FD {by_judges(row, 'recon_fd')}, the best a "
          f"prior over these codes can expect; classifier test accuracy {row['classifier_test_accuracy']:.2%}"
          + (f", contrastive encoder 1-NN accuracy {nn_accuracy:.2%}" if nn_accuracy is not None else ""))


def table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> list[str]:
  """A Markdown table: columns from `numeric_from` on right-aligned."""
  align = ["---"] * numeric_from + ["---:"] * (len(header) - numeric_from)
  return ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"] + ["| " + " | ".join(r) + " |"
                                                                           for r in rows]


def write(out: str, lines: list[str], data) -> None:
  """OUT.md (the lines) and OUT.json (the data), and the table on the console."""
  with open(out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(out + ".json", "w") as f:
    json.dump(data, f, indent=2, default=float)
  print("\n".join(lines), flush=True)


def figure(panels: int, width: float = 5.0, height: float = 4.0):
  fig, axes = plt.subplots(1, panels, figsize=(width * panels, height), squeeze=False)
  return fig, list(axes[0])


def curve(ax, x, rows: list[dict], metric: str, label: str, scale: float = 1.0, **kwargs) -> None:
  """One line of aggregated `rows` (mean, std error bars when there are several seeds) against x."""
  y = np.array([r[f"{metric}_mean"] for r in rows]) * scale
  err = np.array([r[f"{metric}_std"] for r in rows]) * scale if rows and rows[0]["n"] > 1 else None
  ax.errorbar(x, y, yerr=err, marker="o", ms=4, capsize=3, label=label, **kwargs)


def floor_lines(ax, row: dict) -> None:
  """The reconstruction and real-vs-real FD floors as horizontal lines."""
  ax.axhline(row["recon_fd"], color="gray", ls="--", lw=1, label=f"tokenizer recon. ({row['recon_fd']:.1f})")
  ax.axhline(row["real_fd_floor"], color="gray", ls=":", lw=1, label=f"real floor ({row['real_fd_floor']:.1f})")


def save(fig, out: str, title: str = "") -> None:
  for ax in fig.axes:
    ax.grid(alpha=0.3)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(out + ".png", dpi=100)
  plt.close(fig)
  print(f"Wrote {out}.md, .json and .png", flush=True)


def main_guard(parser, main, quick: dict) -> None:
  """Parses the command line (with --quick, `quick` replaces the defaults: flags given still win) and runs
  main(args), printing UsageError and ConfigError as argparse errors (usage, message, exit 2)."""
  args = parser.parse_args()
  if args.quick:
    parser.set_defaults(**quick)
    args = parser.parse_args()
  try:
    main(args)
  except (UsageError, config_lib.ConfigError) as e:
    parser.error(str(e))
