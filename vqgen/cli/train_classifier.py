"""Train the in-domain Fashion-MNIST feature classifier of the sample metrics into its cache (or --workdir):
`python -m vqgen.cli.train_classifier`. Other commands train it on first use; a finished cache is only reported.
"""

from absl import flags

from vqgen.cli import console
from vqgen.stages.classifier import MIN_ACCURACY, check_network_workdir, default_workdir, feature_classifier

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Where to train it (default: the cache, $VQGEN_CACHE_DIR or ~/.cache/vqgen).")
flags.DEFINE_string("data_dir", "", "Folder of the Fashion-MNIST IDX files (default: the Debian package's).")


def main():
  workdir = FLAGS.workdir or default_workdir()
  check_network_workdir(workdir)  # another run's folder is refused before its log is touched
  console.log_to_file(workdir)
  _, accuracy = feature_classifier(workdir, FLAGS.data_dir)
  print(f"Fashion-MNIST feature classifier in {workdir}: test accuracy {100 * accuracy:.2f}%", flush=True)
  if accuracy < MIN_ACCURACY:
    raise SystemExit(f"below the {100 * MIN_ACCURACY:.0f}% target")


def cli():
  console.start(main)


if __name__ == "__main__":
  cli()
