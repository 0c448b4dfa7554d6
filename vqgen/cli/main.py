"""Train one stage: `python -m vqgen.main --config=configs/....py[:variant] --workdir=DIR [--config.key=value]`.

Validates the config, initialises multi-host JAX when asked, and runs the config's stage (vqgen.stages.run).
Running the same command again resumes from the newest checkpoint in DIR. Library log lines go to DIR/log.txt.
"""

import jax
from absl import flags, logging
from ml_collections import config_flags

from vqgen import stages
from vqgen.cli import console
from vqgen.train import writers

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (get_config), with ':variant'.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics, images and log.txt go.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-process runs.")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process runs).")
flags.DEFINE_integer("process_id", None, "This process's id in [0, num_processes).")
flags.mark_flags_as_required(["config", "workdir"])


def main():
  stages.check(FLAGS.config, FLAGS.workdir)  # before anything is written to the workdir
  console.log_to_file(FLAGS.workdir, FLAGS.process_id if FLAGS.coordinator_address else None)
  if FLAGS.coordinator_address:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  logging.info("JAX process %d/%d, %d local / %d global devices", jax.process_index(), jax.process_count(),
               jax.local_device_count(), jax.device_count())
  results = stages.train(FLAGS.config, FLAGS.workdir)
  writers.say("Final metrics: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                            for k, v in sorted(results.items())))


def cli():
  """Console-script entry point (`vqgen --config=... --workdir=...`)."""
  console.start(main)


if __name__ == "__main__":
  cli()
