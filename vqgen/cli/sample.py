"""Sample a trained prior: `python -m vqgen.sample --workdir=<prior workdir> --num_samples=N [--labels=...]`.

Writes <output>/samples.npz (`tokens`, `images` float32 NHWC in [0, 1], `labels`) and samples.png (one row per
class), and prints the sequential forward passes (NFE) and the wall-clock. Sampler flags left unset take the
values of the run's config.sampling; `--metrics` also scores the samples (evaluation/samples.py). `--known=edit.npz`
edits (inpainting, completion; any prior): its `codes` [num_samples, *code shape] hold the known codes and the
codebook size (the prior's mask id) where a code is to be sampled; known codes come back unchanged.
"""

import os

import jax
import numpy as np
from absl import flags

from vqgen import config as config_lib
from vqgen.cli import console
from vqgen.evaluation.samples import format_scores
from vqgen.stages import PriorStage, build, load_run
from vqgen.stages.classifier import sample_scorer
from vqgen.stages.generate import Generator, check_codes, parse_labels, read_npz, save_samples

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Workdir of a trained prior (python -m vqgen.main --config=configs/prior/...).")
flags.DEFINE_integer("num_samples", 100, "How many samples.", lower_bound=1)
flags.DEFINE_string("labels", "", "Class labels: '' = balanced over classes, '3' = all class 3, '0,5' = cycled.")
flags.DEFINE_string("output", None, "Output folder (default: the prior's workdir).")
flags.DEFINE_bool("overwrite", False, "Replace samples.npz / samples.png in the output folder if they exist.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_integer("batch_size", None, "Sampling batch size (default config.sampling.batch_size).",
                     lower_bound=1)
KNOWN = ("an .npz whose `codes` [num_samples, *code shape] hold known codes and the codebook size where a code is to "
         "be sampled")
flags.DEFINE_string("known", "", f"Editing: {KNOWN}.")
flags.DEFINE_bool("metrics", False, "Score the samples (Frechet distance, precision/recall, class accuracy).")
# Sampler settings: each overrides config.sampling.<name> of the run.
SAMPLER_FLAGS = {"steps": flags.DEFINE_integer, "temperature": flags.DEFINE_float, "top_k": flags.DEFINE_integer,
                 "top_p": flags.DEFINE_float, "choice_temperature": flags.DEFINE_float,
                 "mask_schedule": flags.DEFINE_string, "grid": flags.DEFINE_string,
                 "guidance_scale": flags.DEFINE_float, "guidance_schedule": flags.DEFINE_string,
                 "strategy": flags.DEFINE_string, "purity_weight": flags.DEFINE_float,
                 "sampler": flags.DEFINE_string, "remask": flags.DEFINE_string, "remask_eta": flags.DEFINE_float,
                 "corrector_steps": flags.DEFINE_integer}
for _name, _define in SAMPLER_FLAGS.items():
  _define(_name, None, f"Sampler setting (default: the run's config.sampling.{_name}).")
flags.mark_flags_as_required(["workdir"])


def read_known(codebook_size: int | None = None, shape: tuple | None = None, codes=None) -> np.ndarray:
  """--known's `codes` (read from the file unless given), checked against the prior's codebook size and the
  expected shape when given (generate.check_codes); a one-line failure naming the file, the offence and the fix."""
  try:
    if codes is None:
      codes = read_npz(FLAGS.known, ("codes",))["codes"]
    return check_codes(codes, codebook_size, shape)
  except ValueError as e:
    message = str(e) if codes is None else f"{FLAGS.known}: {e}"
    console.fail(f"--known: {message} --known takes {KNOWN}; --num_samples sets how many.")


def main():
  output = FLAGS.output or FLAGS.workdir
  existing = [name for name in ("samples.npz", "samples.png") if os.path.exists(os.path.join(output, name))]
  if existing and not FLAGS.overwrite:
    console.fail(f"{output} already holds {' and '.join(existing)} (those of training, without --output); pass "
                 "--output=<folder> for new ones, or --overwrite to replace them.")
  known = read_known() if FLAGS.known else None  # what is wrong whatever the prior, before anything is written
  console.log_to_file(output)
  config, prior, stage = load_run(FLAGS.workdir, PriorStage)
  with config.unlocked():
    for name in SAMPLER_FLAGS:
      if getattr(FLAGS, name) is not None:
        config.sampling[name] = getattr(FLAGS, name)
  config_lib.validate(config)
  num_classes = config.prior.num_classes
  try:
    labels = parse_labels(FLAGS.labels, FLAGS.num_samples, num_classes)
  except ValueError as e:
    console.fail(str(e))
  if not num_classes:
    labels[:] = prior.network.vocab.null_label
  if known is not None:
    known = read_known(stage.codebook_size, (len(labels),) + tuple(stage.code_shape), known)
  generator = Generator(prior, stage.tokenizer, stage.code_shape, build.sampler_kwargs(config),
                        batch_setting="--batch_size")
  samples = generator(labels, jax.random.key(FLAGS.seed), min(FLAGS.batch_size or config.sampling.batch_size,
                                                              len(labels)), codes=known)
  save_samples(output, samples, num_classes)
  print(f"{len(labels)} samples from {config.prior.name} in {samples['seconds']:.2f} s "
        f"({samples['ms_per_image']:.2f} ms/image, compile {samples['compile_seconds']:.1f} s); "
        f"{samples['forward_passes']} sequential forward passes (NFE) per batch; "
        f"wrote {os.path.join(output, 'samples.npz')} and samples.png", flush=True)
  if FLAGS.metrics:
    scorer = sample_scorer(stage.tokenizer, stage.tokenizer_config)
    print(format_scores(scorer.score(samples["images"], labels if num_classes else None)))


def cli():
  console.start(main)


if __name__ == "__main__":
  cli()
