"""Command line: `python -m vqgen.main --config=configs/....py[:variant] --workdir=DIR [--config.key=value]`.

Validates the config, initialises multi-host JAX when asked, and hands the run to the stage's trainer. Running
the same command again resumes from the newest checkpoint in DIR.
"""

import logging as std_logging

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from vqgen.stages import get_stage, run  # noqa: F401  (re-exported: `from vqgen.main import run`)

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (get_config), with ':variant'.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and images go.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-process runs.")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process runs).")
flags.DEFINE_integer("process_id", None, "This process's id in [0, num_processes).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  std_logging.getLogger("absl").setLevel(std_logging.INFO)
  logging.set_verbosity(logging.INFO)
  if FLAGS.coordinator_address:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  logging.info("JAX process %d/%d, %d local / %d global devices", jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
  results = run(FLAGS.config, FLAGS.workdir)
  if jax.process_index() == 0:
    print("Final metrics: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in sorted(results.items())), flush=True)


def cli():
  """Console-script entry point (`vqgen --config=... --workdir=...`)."""
  app.run(main)


if __name__ == "__main__":
  cli()
