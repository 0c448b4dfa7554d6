"""Score samples: `python -m vqgen.evaluate --samples=DIR/samples.npz [--tokenizer_workdir=DIR]`.

Prints the Frechet distance, precision/recall (k = 3) and class accuracy of the samples on the in-domain
Fashion-MNIST classifier's features, each beside the real-vs-real floor at the same sample count and (with a
tokenizer) the tokenizer's reconstruction distance, and writes them as JSON next to the samples (or --output).
The classifier is trained and cached on first use (`python -m vqgen.cli.train_classifier`).
"""

import os

import numpy as np
from absl import flags

from vqgen.cli import console
from vqgen.evaluation.samples import SampleError, check_samples, format_scores
from vqgen.stages import TokenizerStage, load_run
from vqgen.stages.classifier import sample_scorer
from vqgen.train import writers

FLAGS = flags.FLAGS
flags.DEFINE_string("samples", None, "A samples.npz with `images` (float32 NHWC in [0, 1]) and `labels`.")
flags.DEFINE_string("tokenizer_workdir", None, "Tokenizer run whose reconstruction distance to print beside.")
flags.DEFINE_string("output", None, "Where to write the scores (default: sample_metrics.json by the samples).")
flags.DEFINE_bool("overwrite", False, "Replace the scores file if it exists.")
flags.mark_flags_as_required(["samples"])


def main():
  if not os.path.exists(FLAGS.samples):
    console.fail(f"{FLAGS.samples} does not exist (write one with python -m vqgen.sample).")
  folder = os.path.dirname(os.path.abspath(FLAGS.samples))
  output = FLAGS.output or os.path.join(folder, "sample_metrics.json")
  if os.path.exists(output) and not FLAGS.overwrite:
    console.fail(f"{output} exists; pass --overwrite to replace it, or --output=<another file>.")
  try:
    with np.load(FLAGS.samples) as f:
      images, labels = f["images"], f["labels"] if "labels" in f else None
  except (OSError, ValueError, KeyError, EOFError) as e:
    console.fail(f"{FLAGS.samples} is not a readable samples file with an `images` array ({type(e).__name__}: {e}).")
  if labels is not None and labels.size and labels.min() == labels.max() >= 10:  # the null class:
    labels = None  # unconditional samples
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


def cli():
  console.start(main)


if __name__ == "__main__":
  cli()
