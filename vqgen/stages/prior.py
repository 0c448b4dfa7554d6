"""The prior stage (stage 2): codes of a frozen tokenizer in, a prior out; evaluation samples, decodes and scores
the samples."""

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vqgen import data as data_lib
from vqgen.errors import Refusal
from vqgen.priors.heads import Vocabulary
from vqgen.stages import build
from vqgen.stages.classifier import sample_scorer
from vqgen.stages.codes import cached_codes, weights_digest
from vqgen.stages.inception_reference import score_samples
from vqgen.stages.generate import Generator, balanced_labels, save_samples
from vqgen.stages.tokenizer import TokenizerStage
from vqgen.stages.workdir import load_run
from vqgen.train import sharding as sharding_lib, writers
from vqgen.train.checkpoint import step_folders


def _load_tokenizer(workdir: str, pin: dict | None) -> tuple:
  """(config, tokenizer, step) of a tokenizer run: the pinned step when there is a pin (refused, naming both
  identities, when the run no longer holds it), else the newest verified one."""
  if pin is None:
    config, (tokenizer, step), _ = load_run(workdir, TokenizerStage, with_step=True)
    return config, tokenizer, step
  steps = step_folders(os.path.join(workdir, "checkpoints"))
  if pin["step"] not in steps:
    raise Refusal(f"The tokenizer changed under this prior: it was trained on step {pin['step']} of {workdir} "
                  f"(weights {pin['weights_sha256'][:16]}), which that run no longer holds (it holds steps {steps}). "
                  "Restore the tokenizer run, or train a new prior (another --workdir) on the tokenizer as it is.")
  config, (tokenizer, step), _ = load_run(workdir, TokenizerStage, step=pin["step"], with_step=True)
  return config, tokenizer, step


class ArraySource:
  """Random access over in-memory code sequences, as a Grain data source."""

  def __init__(self, codes: np.ndarray, labels: np.ndarray):
    self.codes, self.labels = codes.reshape(len(codes), -1), labels

  def __len__(self):
    return len(self.codes)

  def __getitem__(self, i):
    return {"codes": self.codes[i], "label": self.labels[i]}


def bits_per_dim(bits_per_token: float, num_tokens: int, num_dims: int) -> float:
  """The codes' negative log-likelihood per pixel dimension: bits per token x tokens per image / (H x W x C).

  It is the rate of the codes, spread over the pixels they stand for: comparable between priors over the same
  tokenizer, but not with a pixel-space likelihood (the tokenizer's reconstruction error is not in it)."""
  return bits_per_token * num_tokens / num_dims


PIN = "tokenizer.json"  # in a prior's workdir: the tokenizer workdir, checkpoint step and weights it was trained on


def read_pin(workdir: str | None) -> dict | None:
  """The tokenizer identity a prior run recorded (None: no workdir, or a run from before pinning)."""
  path = os.path.join(workdir, PIN) if workdir else None
  if not path or not os.path.exists(path):
    return None
  try:
    pin = writers.read_json(path)
    if isinstance(pin, dict) and isinstance(pin.get("step"), int) and isinstance(pin.get("weights_sha256"), str):
      return pin
  except ValueError:
    pass
  raise Refusal(f"{path} is corrupt (it records which tokenizer checkpoint this prior was trained on). Restore it "
                "from a copy; or, only if you know the tokenizer is unchanged, delete it to pin the newest one.")


class PriorStage:
  NAME = "prior"

  def __init__(self, config, workdir: str | None = None):
    """The tokenizer comes from config.tokenizer_workdir: for a run with a pin (`workdir`/tokenizer.json) exactly
    the recorded step, whose weights must be the recorded ones; else its newest verified checkpoint."""
    self.config, self.workdir = config, workdir
    self.pin = read_pin(workdir)
    self.tokenizer_config, self.tokenizer, step = _load_tokenizer(config.tokenizer_workdir, self.pin)
    self.tokenizer_identity = {"workdir": os.path.abspath(config.tokenizer_workdir), "step": step,
                               "weights_sha256": weights_digest(self.tokenizer)}
    if self.pin and self.pin["weights_sha256"] != self.tokenizer_identity["weights_sha256"]:
      raise Refusal(f"The tokenizer changed under this prior: {workdir} was trained on step {self.pin['step']} of "
                    f"{self.pin.get('workdir')} (weights {self.pin['weights_sha256'][:16]}), but that step now holds "
                    f"weights {self.tokenizer_identity['weights_sha256'][:16]}. Restore the tokenizer run, or train a "
                    "new prior (another --workdir) on the tokenizer as it is.")
    self.codebook_size = self.tokenizer.quantizer.codebook_size
    self.train_codes = self.codes(self.tokenizer_config.data.train_split)
    if config.data.flip_codes:  # the mirrored images' codes join the training set: 2N sequences an epoch
      mirrored = self.codes(self.tokenizer_config.data.train_split, flip=True)
      self.train_codes = {k: np.concatenate([self.train_codes[k], mirrored[k]]) for k in ("codes", "labels")}
    self.code_shape = self.train_codes["codes"].shape[1:]  # (h, w) or (h, w, D): build.prior lays them out
    self.num_tokens = int(np.prod(self.code_shape))
    d = self.tokenizer_config.data
    self.num_dims = d.image_size * d.image_size * d.channels  # the pixel dimensions one code sequence stands for

  def codes(self, split: str, flip: bool = False) -> dict:
    """Cached codes of a split (of its mirrored images with `flip`), checked against the vocabulary and the
    configured number of classes."""
    codes = cached_codes(split, self.tokenizer, self.tokenizer_config, flip,
                         weights=self.tokenizer_identity["weights_sha256"])  # (hashed once, in __init__)
    Vocabulary(self.codebook_size, self.config.prior.num_classes).check_codes(codes["codes"])
    num_classes = self.config.prior.num_classes
    if num_classes and int(codes["labels"].max()) >= num_classes:
      raise ValueError(f"prior.num_classes={num_classes} but the data has label {int(codes['labels'].max())}.")
    return codes

  def check_data(self) -> None:
    """Extracts (and caches) the eval codes before training, not after; pins the tokenizer in a new run."""
    self.codes(self.tokenizer_config.data.eval_split)
    if self.workdir and self.pin is None and jax.process_index() == 0:
      writers.write_json(os.path.join(self.workdir, PIN), self.tokenizer_identity)
      self.pin = self.tokenizer_identity

  def build_model(self, rngs):
    return build.prior(self.config, self.codebook_size, self.code_shape, rngs)

  def loss(self, model, batch, ctx):
    labels = batch["label"] if self.config.prior.num_classes else jnp.zeros_like(batch["label"])
    return model.loss(batch["codes"], labels, ctx.rng)

  def train_dataset(self, batch_size: int, process_index: int, process_count: int):
    source = ArraySource(self.train_codes["codes"], self.train_codes["labels"])
    return data_lib.train_dataset(source, batch_size=batch_size, seed=self.config.seed, image_size=None,
                                  process_index=process_index, process_count=process_count)

  def validation_loss(self, model, mesh) -> dict:
    """The training objective on the eval split's codes (no label or network dropout, a fixed key); each
    process feeds its rows of every global batch. A prior whose `bits_per_token` is a likelihood of the codes or a
    bound on it (`LIKELIHOOD`: autoregressive, diffusion) also gets `val_bits_per_dim`; MaskGIT does not."""
    c = self.config
    test = self.codes(self.tokenizer_config.data.eval_split)
    n = len(test["codes"]) if not c.data.eval_limit else min(c.data.eval_limit, len(test["codes"]))
    codes = test["codes"].reshape(len(test["codes"]), -1)[:n]
    labels = test["labels"][:n] if c.prior.num_classes else np.zeros(n, np.int32)
    multiple = sharding_lib.batch_multiple(mesh)
    bs = min(c.data.eval_batch_size, n) // multiple * multiple
    if not bs:
      raise ValueError(f"The validation loss needs at least {multiple} eval codes (one per batch-axis device "
                       f"and process); data.eval_limit={c.data.eval_limit}.")
    rows = sharding_lib.process_rows(bs, mesh)
    graphdef, state = nnx.split(model)
    loss_fn = jax.jit(lambda s, b, r: nnx.merge(graphdef, s).loss(b["codes"], b["label"], r, train=False))
    totals, count = {}, 0
    for i in range(0, n - bs + 1, bs):  # whole batches only: every batch weighs the same
      batch = {"codes": codes[i:i + bs][rows], "label": labels[i:i + bs][rows]}
      loss, metrics = loss_fn(state, sharding_lib.global_batch(batch, mesh), jax.random.key(i))
      for k, v in {"loss": loss, **metrics}.items():
        totals[k] = totals.get(k, 0.0) + float(v)
      count += 1
    results = {f"val_{k}": v / count for k, v in totals.items()}
    if model.LIKELIHOOD:
      results["val_bits_per_dim"] = bits_per_dim(results["val_bits_per_token"], self.num_tokens, self.num_dims)
    return results

  def inception_scores(self, images: np.ndarray) -> dict:
    """FID / IS / precision-recall of the samples on the FID Inception of evaluation.inception_weights, against
    evaluation.inception_reference (default: the tokenizer's training split; docs/inception.md)."""
    e, d = self.config.evaluation, self.tokenizer_config.data
    reference = e.inception_reference or f"{d.name}:{d.train_split}"
    writers.say(f"Scoring {len(images)} samples on the FID Inception against {reference} ...")
    return score_samples(images, e.inception_weights, reference, e.num_reference or None)

  def evaluate(self, make_model, mesh, workdir: str, writer, step: int) -> dict:
    """Validation loss, then `sampling.num_samples` class-balanced samples decoded by the tokenizer
    (samples.npz / samples.png) and, with evaluation.metrics, their scores (evaluation/samples.py); with
    evaluation.inception_weights also FID / IS / precision-recall as `inception/...`."""
    c = self.config
    model = make_model()
    # likelihood: what val_bits_per_token / val_bits_per_dim are (exact | bound), or none (MaskGIT reports neither).
    results = {"step": step, **self.validation_loss(model, mesh), "likelihood": model.LIKELIHOOD or "none"}
    generator = Generator(model, self.tokenizer, self.code_shape, build.sampler_kwargs(c))
    labels = balanced_labels(c.sampling.num_samples, c.prior.num_classes)
    if not c.prior.num_classes:
      labels = np.full_like(labels, model.network.vocab.null_label)
    samples = generator(labels, jax.random.key(c.seed + 1), min(c.sampling.batch_size, len(labels)))
    results.update({"sample_forward_passes": samples["forward_passes"],
                    "sample_ms_per_image": samples["ms_per_image"], "num_samples": len(labels)})
    if c.evaluation.metrics:
      scorer = sample_scorer(self.tokenizer, self.tokenizer_config)
      results.update(scorer.score(samples["images"], samples["labels"] if c.prior.num_classes else None))
    if c.evaluation.inception_weights:
      results.update({f"inception/{k}": v for k, v in self.inception_scores(samples["images"]).items()})
    if jax.process_index() == 0:
      grid = save_samples(workdir, samples, c.prior.num_classes)
      writer.write_images(step, {"samples": grid[None]})
      writer.write_scalars(step, {f"eval/{k}": v for k, v in results.items()
                                  if k != "step" and isinstance(v, (int, float))})
      writers.write_json(os.path.join(workdir, "metrics.json"), results)
    return results
