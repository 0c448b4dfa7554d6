"""Score samples: `python -m vqgen.evaluate --samples=DIR/samples.npz [--tokenizer_workdir=DIR]`.

--features=classifier (default): prints the Frechet distance, precision/recall (k = 3) and class accuracy of the
samples on the in-domain Fashion-MNIST classifier's features, each beside the real-vs-real floor at the same
sample count and (with a tokenizer) the tokenizer's reconstruction distance, and writes them as JSON next to the
samples (or --output). The classifier is trained and cached on first use (`python -m vqgen.cli.train_classifier`).

--features=inception: the standard FID, Inception Score and precision / recall (k = 3, pool3) on pytorch-fid's
FID Inception (--inception_weights, a local file: vqgen never downloads it) against --reference (DATASET:SPLIT,
its first --num_reference images, statistics cached; or a statistics .npz), and with --tokenizer_workdir the
tokenizer's rFID on the reference images; written as JSON to inception_metrics.json by the samples. Without
--samples, --tokenizer_workdir gives the rFID alone (rfid_metrics.json in the tokenizer's workdir).
See docs/inception.md.
"""

import os

import numpy as np
from absl import flags

from vqgen.cli import console
from vqgen.evaluation.inception import load_fid_inception
from vqgen.evaluation.inception_layout import DEFAULT_PATH
from vqgen.evaluation.samples import SampleError, check_samples, class_labels, format_scores
from vqgen.evaluation.standard_metrics import (InceptionScorer, check_images, format_inception_scores,
                                               missing_weights_message, weights_sha256)
from vqgen.stages import TokenizerStage, load_run
from vqgen.stages.classifier import sample_scorer
from vqgen.stages.generate import read_npz
from vqgen.stages.inception_reference import (SplitImages, dataset_reference, file_reference, parse_reference,
                                              reconstruction_features)
from vqgen.train import writers

FLAGS = flags.FLAGS
flags.DEFINE_string("samples", None, "A samples.npz with `images` (float32 NHWC in [0, 1]) and `labels`.")
flags.DEFINE_string("tokenizer_workdir", None, "Tokenizer run whose reconstruction distance to print beside.")
flags.DEFINE_string("output", None, "Where to write the scores (default: sample_metrics.json by the samples; "
                    "inception_metrics.json with --features=inception).")
flags.DEFINE_bool("overwrite", False, "Replace the scores file if it exists.")
flags.DEFINE_enum("features", "classifier", ["classifier", "inception"],
                  "classifier: the in-domain Fashion-MNIST metrics; inception: the standard FID / IS / "
                  "precision-recall (and rFID) on the FID Inception-v3 (docs/inception.md).")
flags.DEFINE_string("inception_weights", DEFAULT_PATH, "pytorch-fid's FID Inception weights (the .pth, or an .npz of "
                    "the same names); never downloaded (docs/inception.md).")
flags.DEFINE_string("reference", "fashion_mnist:test", "With --features=inception: DATASET:SPLIT (a vqgen data "
                    "source; its statistics are cached) or the path of a statistics .npz (arrays mu, sigma).")
flags.DEFINE_integer("num_reference", None, "With --features=inception: the first N images of the reference split "
                     "(default: all).", lower_bound=2)
flags.DEFINE_integer("inception_batch_size", 100, "With --features=inception: images per FID Inception batch.",
                     lower_bound=1)
flags.register_multi_flags_validator(
    ["samples", "features", "tokenizer_workdir"],
    lambda f: bool(f["samples"]) or (f["features"] == "inception" and bool(f["tokenizer_workdir"])),
    message="--samples is required (without it, --features=inception --tokenizer_workdir=DIR gives the rFID alone).")
INCEPTION_FLAGS = ("inception_weights", "reference", "num_reference", "inception_batch_size")


def main():
  if FLAGS.samples and not os.path.exists(FLAGS.samples):
    console.fail(f"{FLAGS.samples} does not exist (write one with python -m vqgen.sample).")
  if FLAGS.features == "inception":
    inception_main()
    return
  given = [f"--{name}" for name in INCEPTION_FLAGS if FLAGS[name].present]
  if given:
    console.fail(f"{', '.join(given)}: used only with --features=inception (the classifier metrics take none).")
  folder = os.path.dirname(os.path.abspath(FLAGS.samples))
  output = FLAGS.output or os.path.join(folder, "sample_metrics.json")
  if os.path.exists(output) and not FLAGS.overwrite:
    console.fail(f"{output} exists; pass --overwrite to replace it, or --output=<another file>.")
  arrays = read_samples(FLAGS.samples, ("labels",))
  images, labels = arrays["images"], class_labels(arrays.get("labels"))
  try:
    check_samples(images, labels)
  except SampleError as e:
    console.fail(f"{FLAGS.samples}: {e}")
  console.log_to_file(folder)
  tokenizer, config = None, None
  if FLAGS.tokenizer_workdir:
    config, tokenizer, _ = load_run(FLAGS.tokenizer_workdir, TokenizerStage)
  scores = sample_scorer(tokenizer, config).score(images, labels)
  print(format_scores(scores))
  writers.write_json(output, scores)
  print(f"wrote {output}")


def reference_split(spec: str) -> tuple[str, str] | None:
  """(dataset, split) of --reference=DATASET:SPLIT, or None for a statistics .npz that exists; a one-line failure
  otherwise."""
  if spec.endswith(".npz") and not os.path.isfile(os.path.expanduser(spec)):
    console.fail(f"--reference={spec} does not exist (a statistics .npz with arrays mu and sigma).")
  try:
    return parse_reference(spec)
  except ValueError as e:
    console.fail(f"--reference: {e}")


def read_samples(path: str, optional: tuple = ()) -> dict:
  """A samples file's `images` (and the `optional` arrays it holds); a one-line failure when it cannot be read."""
  try:
    return read_npz(path, ("images",), optional)
  except ValueError as e:
    console.fail(f"--samples: {e} (a samples file holds `images` float32 NHWC in [0, 1] and `labels`: "
                 "python -m vqgen.sample writes one).")


def load_images(path: str) -> np.ndarray:
  """The samples' `images`, checked (float [N, H, W, 1 or 3] in [0, 1]); a readable one-line failure otherwise."""
  images = read_samples(path)["images"]
  try:
    check_images(images)
  except SampleError as e:
    console.fail(f"{path}: {e}")
  return images


def inception_main():
  """--features=inception (module docstring). Every problem found before the network runs fails in one line."""
  samples, tokenizer_workdir = FLAGS.samples, FLAGS.tokenizer_workdir
  folder = os.path.dirname(os.path.abspath(samples)) if samples else os.path.abspath(tokenizer_workdir)
  output = FLAGS.output or os.path.join(folder, "inception_metrics.json" if samples else "rfid_metrics.json")
  if os.path.exists(output) and not FLAGS.overwrite:
    console.fail(f"{output} exists; pass --overwrite to replace it, or --output=<another file>.")
  weights = FLAGS.inception_weights
  if not os.path.isfile(os.path.expanduser(weights)):
    console.fail(missing_weights_message(weights))
  reference = reference_split(FLAGS.reference)
  if reference is None and (tokenizer_workdir or FLAGS.num_reference):
    console.fail("--tokenizer_workdir (rFID) and --num_reference read the reference images: give "
                 "--reference=DATASET:SPLIT, not a statistics file.")
  images = load_images(samples) if samples else None
  if images is not None and reference is not None and images.shape[1] != images.shape[2]:
    console.fail(f"{samples}: images are {images.shape[1]}x{images.shape[2]}; reference images are cropped and "
                 "resized to square images of the samples' size. Give a statistics .npz as --reference instead.")
  console.log_to_file(folder)
  config, tokenizer = load_run(tokenizer_workdir, TokenizerStage)[:2] if tokenizer_workdir else (None, None)
  fingerprint = weights_sha256(weights)
  at = {}   # where the reference images are read: the samples' size, the tokenizer's for rFID
  if images is not None:
    at["samples"] = dict(image_size=images.shape[1], channels=images.shape[-1], batch_size=FLAGS.inception_batch_size)
  if tokenizer is not None:
    at["rfid"] = dict(image_size=config.data.image_size, channels=config.data.channels,
                      batch_size=FLAGS.inception_batch_size)
  try:
    if reference is not None:
      for kwargs in at.values():   # a missing dataset, split or too large a count fails before the network loads
        SplitImages(*reference, FLAGS.num_reference, image_size=kwargs["image_size"], channels=kwargs["channels"])
    net = load_fid_inception(weights)
    scores = {}
    if images is not None:
      if reference is None:
        ref = file_reference(FLAGS.reference, fingerprint)
      else:
        ref = dataset_reference(*reference, FLAGS.num_reference, weights, net=net, **at["samples"])
      scores = InceptionScorer(net, ref, weights, fingerprint, FLAGS.inception_batch_size).score(images)
  except SampleError as e:
    console.fail(f"{samples}: {e}")
  except (ValueError, FileNotFoundError, ImportError) as e:   # weights, reference data or statistics file
    console.fail(str(e))
  if tokenizer is not None:
    rfid_ref = dataset_reference(*reference, FLAGS.num_reference, weights, net=net, **at["rfid"])
    recon = reconstruction_features(tokenizer, net, *reference, FLAGS.num_reference, **at["rfid"])
    rfid = InceptionScorer(net, rfid_ref, weights, fingerprint).reconstruction_fid(recon)
    rfid["rfid_reference"], rfid["rfid_tokenizer"] = rfid["reference"], os.path.abspath(tokenizer_workdir)
    scores = {**rfid, **scores}   # the samples' provenance (the same weights) wins
  print(format_inception_scores(scores))
  writers.write_json(output, scores)
  print(f"wrote {output}")


def cli():
  console.start(main)


if __name__ == "__main__":
  cli()
