"""Sample a trained prior: `python -m vqgen.sample --workdir=<prior workdir> --num_samples=N [--labels=...]`.

Writes <output>/samples.npz (`tokens`, `images` float32 NHWC in [0, 1], `labels`) and samples.png (one row per
class), and prints the sequential forward passes (NFE) and the wall-clock. Sampler flags left unset take the
values of the run's config.sampling; `--metrics` also scores the samples (evaluation/samples.py).
"""

import os

import jax
from absl import app, flags

from vqgen.priors import sampler_kwargs
from vqgen.priors.codes import load_tokenizer, load_workdir_config
from vqgen.priors.generate import Generator, parse_labels, save_samples

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Workdir of a trained prior (python -m vqgen.main --config=configs/prior/...).")
flags.DEFINE_integer("num_samples", 100, "How many samples.")
flags.DEFINE_string("labels", "", "Class labels: '' = balanced over classes, '3' = all class 3, '0,5' = cycled.")
flags.DEFINE_string("output", None, "Output folder (default: the prior's workdir).")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_integer("batch_size", None, "Sampling batch size (default config.sampling.batch_size).")
flags.DEFINE_bool("metrics", False, "Score the samples (Frechet distance, precision/recall, class accuracy).")
for _name, _type in (("steps", int), ("temperature", float), ("top_k", int), ("top_p", float),
                     ("choice_temperature", float), ("mask_schedule", str), ("grid", str),
                     ("guidance_scale", float), ("guidance_schedule", str)):
  {int: flags.DEFINE_integer, float: flags.DEFINE_float, str: flags.DEFINE_string}[_type](
      _name, None, f"Sampler setting (default: the run's config.sampling.{_name}).")
SAMPLER_FLAGS = ("steps", "temperature", "top_k", "top_p", "choice_temperature", "mask_schedule", "grid",
                 "guidance_scale", "guidance_schedule")
flags.mark_flags_as_required(["workdir"])


def load_prior(workdir: str):
  """(config, prior, PriorStage) of a trained prior workdir."""
  # pylint: disable=import-outside-toplevel
  from vqgen.priors.stage import PriorStage
  from vqgen.train.trainer import restore_model
  config = load_workdir_config(workdir)
  if config.stage != "prior":
    raise ValueError(f"{workdir!r} holds a {config.stage!r} run, not a prior.")
  stage = PriorStage(config)
  return config, restore_model(config, workdir, stage), stage


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config, prior, stage = load_prior(FLAGS.workdir)
  with config.unlocked():
    for name in SAMPLER_FLAGS:
      if getattr(FLAGS, name) is not None:
        config.sampling[name] = getattr(FLAGS, name)
  from vqgen import config as config_lib  # pylint: disable=import-outside-toplevel
  config_lib.validate(config)
  num_classes = config.prior.num_classes
  labels = parse_labels(FLAGS.labels, FLAGS.num_samples, num_classes)
  if not num_classes:
    labels[:] = prior.network.vocab.null_label
  generator = Generator(prior, stage.tokenizer, stage.code_shape, sampler_kwargs(config))
  samples = generator(labels, jax.random.key(FLAGS.seed), min(FLAGS.batch_size or config.sampling.batch_size,
                                                              len(labels)))
  output = FLAGS.output or FLAGS.workdir
  save_samples(output, samples, num_classes)
  print(f"{len(labels)} samples from {config.prior.name} in {samples['seconds']:.2f} s "
        f"({samples['ms_per_image']:.2f} ms/image, compile {samples['compile_seconds']:.1f} s); "
        f"{samples['forward_passes']} sequential forward passes (NFE) per batch; "
        f"wrote {os.path.join(output, 'samples.npz')} and samples.png", flush=True)
  if FLAGS.metrics:
    # pylint: disable=import-outside-toplevel
    from vqgen.evaluation.samples import format_scores, score_samples
    print(format_scores(score_samples(samples["images"], labels if num_classes else None, stage.tokenizer,
                                      stage.tokenizer_config)))


def cli():
  app.run(main)


if __name__ == "__main__":
  cli()
