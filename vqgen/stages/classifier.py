"""The feature-classifier stage: the in-domain Fashion-MNIST classifier behind the sample metrics, trained by the
generic trainer like any other stage, cached, and turned into a `SampleScorer`.

  python -m vqgen.cli.train_classifier          # 7 epochs (config.classifier_config), ~2.5 min on 2 CPU cores

The cache is a workdir ($VQGEN_CACHE_DIR, default ~/.cache/vqgen, then classifier/fashion_mnist) with config.json,
checkpoints and metrics.json holding the test accuracy, and the marker vqgen_cache.json that says the cache made it.
A cache folder that cannot be restored (corrupt, or another architecture) is trained again; an interrupted training
resumes; delete the folder to retrain by hand. A folder named by a flag that the cache did not make is only ever
read: a classifier run there is used, anything else (a tokenizer run, a corrupt classifier) is refused unchanged.
"""

import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vqgen import config as config_lib
from vqgen import data as data_lib
from vqgen.errors import Refusal
from vqgen.evaluation import contrastive
from vqgen.evaluation.contrastive import ContrastiveEncoder
from vqgen.evaluation.samples import SampleScorer
from vqgen.stages import build
from vqgen.stages.image_data import ImageStage, data_source
from vqgen.stages.workdir import cache_dir, check, load_run
from vqgen.tokenizers.perceptual_networks import FashionPerceptual
from vqgen.train import sharding as sharding_lib
from vqgen.train import writers
from vqgen.train.lock import NAME as LOCK_NAME, WorkdirLock
from vqgen.train.trainer import restore_model, train_and_evaluate

MIN_ACCURACY = 0.91


def default_workdir(kind: str = "classifier") -> str:
  """The cache workdir of a Fashion-MNIST network: kind 'classifier' (sample metrics) or 'perceptual' (the loss)."""
  return os.path.join(cache_dir(), kind, "fashion_mnist")


class ClassifierStage(ImageStage):
  NAME = "classifier"

  def build_model(self, rngs):
    return build.classifier(self.config, rngs)

  def loss(self, model, batch, ctx):
    """Cross-entropy on randomly flipped images with dropped-out features; for the contrastive judge, SimCLR's
    NT-Xent between two random views of each image (no labels)."""
    flip_key, dropout_key = jax.random.split(ctx.rng)
    images = batch["image"]
    if self.config.model.architecture == "contrastive":
      z1, z2 = model(contrastive.augment(flip_key, images)), model(contrastive.augment(dropout_key, images))
      return contrastive.nt_xent(z1, z2, self.config.model.temperature), {}
    if self.config.model.flip:
      flip = jax.random.bernoulli(flip_key, 0.5, (len(images), 1, 1, 1))
      images = jnp.where(flip, images[:, :, ::-1], images)
    logits = model(images, dropout_key=dropout_key)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}

  def evaluate(self, make_model, mesh, workdir: str, writer, step: int) -> dict:
    """Accuracy over the eval split (the contrastive judge's: 1-nearest-neighbour by cosine among the first
    KNN_REFERENCE training images); writes metrics.json."""
    graphdef, state = nnx.split(make_model())
    if self.config.model.architecture == "contrastive":
      results = {"step": step, **self.nearest_neighbour_accuracy(graphdef, state)}
      return self._write(results, workdir, writer, step)

    @jax.jit
    def counts(state, batch):  # (correct, real) rows of a padded global batch
      correct = jnp.argmax(nnx.merge(graphdef, state)(batch["image"]), -1) == batch["label"]
      return jnp.sum(correct * batch["mask"]), jnp.sum(batch["mask"])

    total, count = 0, 0
    for local in self.eval_batches(mesh):
      correct, real = counts(state, sharding_lib.global_batch(local, mesh))
      total, count = total + int(correct), count + int(real)
    return self._write({"step": step, "test_accuracy": total / count, "num_eval_images": count}, workdir, writer, step)

  def nearest_neighbour_accuracy(self, graphdef, state) -> dict:
    features = jax.jit(lambda s, x: nnx.merge(graphdef, s).features(x))
    d = self.config.data

    def embed(split: str, limit: int | None):
      rows, labels = [], []
      for local in data_lib.eval_batches(data_source(d, split), batch_size=d.eval_batch_size,
                                         image_size=d.image_size, process_index=0, process_count=1, limit=limit):
        keep = local["mask"].astype(bool)
        rows.append(np.asarray(features(state, local["image"]))[keep])
        labels.append(np.asarray(local["label"])[keep])
      x = np.concatenate(rows)
      return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), np.concatenate(labels)

    reference, reference_labels = embed(d.train_split, KNN_REFERENCE)
    queries, labels = embed(d.eval_split, d.eval_limit or None)
    nearest = np.argmax(queries @ reference.T, axis=1)
    return {"test_accuracy": float(np.mean(reference_labels[nearest] == labels)), "num_eval_images": len(labels),
            "accuracy": f"1-nearest-neighbour among {len(reference)} training images (cosine)"}

  def _write(self, results: dict, workdir: str, writer, step: int) -> dict:
    if jax.process_index() == 0:
      writer.write_scalars(step, {"eval/test_accuracy": results["test_accuracy"]})
      writers.write_json(os.path.join(workdir, "metrics.json"), results)
    return results


KNN_REFERENCE = 10_000  # training images the contrastive judge's nearest-neighbour accuracy searches
CACHE_MARKER = "vqgen_cache.json"  # written into a folder the cache created: only such a folder is ever deleted


def check_network_workdir(workdir: str, stage: str = "classifier", what: str = "feature classifier") -> bool:
  """Whether `workdir` is the cache's own (True: it may be trained, and retrained when unusable) or a run of
  `stage` that a user trained (False: used as it is, never changed). Anything else is refused (a Refusal naming
  what the folder holds) before a file is written."""
  if not os.path.exists(workdir) or (os.path.isdir(workdir) and set(os.listdir(workdir)) <= {"log.txt", LOCK_NAME}):
    return True  # new, or holding only this command's log
  if not os.path.isdir(workdir):
    raise Refusal(f"{workdir} is a file, not a {what} workdir: name a folder (or leave the flag out to use the cache).")
  if os.path.exists(os.path.join(workdir, CACHE_MARKER)):
    return True
  try:
    held = config_lib.load_workdir_config(workdir).get("stage")
  except (OSError, ValueError) as e:
    held = f"no readable vqgen config ({type(e).__name__})"
  if held == stage:
    return False
  raise Refusal(f"{workdir} does not hold a {what} (it holds {held!r}), and vqgen did not create it as a cache, so "
                f"nothing in it was changed. Point the flag at a {stage} workdir, or at a new or empty folder to "
                f"train the {what} there.")


def cached_network(config, workdir: str, steps: int | None = None, what: str = "feature classifier"):
  """(model, test accuracy) of the classifier run `config`: restored from `workdir` when a run finished there, else
  trained (or resumed) there first. `steps` shortens training and evaluates on one eval batch (tests).

  Only a folder the cache created itself (it holds CACHE_MARKER) is ever retrained from scratch when unusable; a
  folder a user named is used as it is or refused, never changed."""
  ours = check_network_workdir(workdir, config.stage, what)
  os.makedirs(workdir, exist_ok=True)
  with WorkdirLock(workdir).acquire(wait=True):  # one process trains a cache; the others wait, then load it
    marker = os.path.join(workdir, CACHE_MARKER)
    if ours and not os.path.exists(marker):
      writers.write_json(marker, {"cache": what, "note": "created by vqgen's network cache; safe to delete"})
    metrics_path = os.path.join(workdir, "metrics.json")
    if os.path.exists(metrics_path):
      try:  # exactly the step whose accuracy metrics.json reports (never an older one in its place)
        metrics = writers.read_json(metrics_path)
        _, model, _ = load_run(workdir, ClassifierStage, step=metrics["step"])
        return model, metrics["test_accuracy"]
      except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        if not ours:
          raise Refusal(f"The {what} in {workdir} cannot be used ({type(e).__name__}: {str(e)[:300]}). It was "
                        "not created by vqgen's cache, so nothing was changed: repair it, or point the flag at "
                        "another workdir.") from e
        writers.say(f"The cached {what} in {workdir} is not usable ({type(e).__name__}: {str(e)[:200]}); "
                    "training it again.")
        for name in os.listdir(workdir):  # the cache's own folder: everything but its marker, lock and log
          if name not in (CACHE_MARKER, LOCK_NAME, "log.txt"):  # the log of this very command stays
            path = os.path.join(workdir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    if steps:
      config.train.steps = steps
      config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, steps - 1)
      config.train.log_every = config.train.checkpoint_every = min(steps, config.train.log_every)
      config.data.eval_limit = config.data.eval_batch_size
    config.lock()
    check(config, workdir)
    writers.say(f"Training the Fashion-MNIST {what} in {workdir} (once; it is cached) ...")
    stage = ClassifierStage(config)
    results = train_and_evaluate(config, workdir, stage)
    return restore_model(config, workdir, stage), results["test_accuracy"]


def feature_classifier(workdir: str | None = None, data_dir: str = "", steps: int | None = None):
  """(classifier, test accuracy) of the sample metrics' network (default workdir: the cache)."""
  config = config_lib.classifier_config()
  config.data.data_dir = data_dir or ""
  model, accuracy = cached_network(config, workdir or default_workdir(), steps)
  if accuracy < MIN_ACCURACY and not steps:
    logging.warning("Feature classifier reached %.2f%% test accuracy, below the %.0f%% target.",
                    100 * accuracy, 100 * MIN_ACCURACY)
  return model, accuracy


def contrastive_judge(workdir: str | None = None, data_dir: str = "", steps: int | None = None):
  """(encoder, 1-NN accuracy) of the sample metrics' self-supervised judge (ContrastiveEncoder; default workdir:
  the cache), trained on first use (~4 min on 2 CPU cores). A workdir holding another network is refused."""
  workdir = workdir or default_workdir("contrastive")
  config = config_lib.contrastive_config()
  config.data.data_dir = data_dir or ""
  model, accuracy = cached_network(config, workdir, steps, what="contrastive judge")
  if not isinstance(model, ContrastiveEncoder):
    raise Refusal(f"{workdir} holds a {type(model).__name__}, not the contrastive judge: point the flag at a run "
                  "of configs/classifier/contrastive_fashion_mnist.py, or at a new folder.")
  return model, accuracy


def perceptual_network(workdir: str | None = None, data_dir: str = "", steps: int | None = None):
  """vqgen's own perceptual network for Fashion-MNIST (FashionPerceptual; default workdir: the cache), trained
  on first use (~2 min on 2 CPU cores). A workdir holding another architecture is refused."""
  workdir = workdir or default_workdir("perceptual")
  config = config_lib.perceptual_network_config()
  config.data.data_dir = data_dir or ""
  model, _ = cached_network(config, workdir, steps, what="perceptual network")
  if not isinstance(model, FashionPerceptual):
    raise ValueError(f"{workdir} holds a {type(model).__name__}, not vqgen's perceptual network: set "
                     "config.loss.perceptual_weights to a workdir of configs/classifier/perceptual_fashion_mnist.py.")
  return model


def sample_scorer(tokenizer=None, tokenizer_config=None, classifier_workdir: str | None = None,
                  seed: int = 0, contrastive_workdir: str | None = None) -> SampleScorer:
  """A SampleScorer on the Fashion-MNIST splits with both cached judges, the classifier and the contrastive
  encoder (and the tokenizer's reconstruction distance when given)."""
  if tokenizer_config is not None and tokenizer_config.data.name != "fashion_mnist":
    raise ValueError(f"Sample metrics use Fashion-MNIST judges; the tokenizer was trained on "
                     f"{tokenizer_config.data.name!r}. Set config.evaluation.metrics=False.")
  data_dir = tokenizer_config.data.data_dir if tokenizer_config is not None else ""
  classifier, accuracy = feature_classifier(classifier_workdir, data_dir)
  encoder, nn_accuracy = contrastive_judge(contrastive_workdir, data_dir)
  test = data_lib.FashionMNIST("test", data_dir or None)
  train = data_lib.FashionMNIST("train", data_dir or None)
  train_images = train.images[np.random.default_rng(seed).permutation(len(train))]
  return SampleScorer(classifier, accuracy, test.images.astype(np.float32) / 255.0,
                      train_images.astype(np.float32) / 255.0, tokenizer, encoder, nn_accuracy)
