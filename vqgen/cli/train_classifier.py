"""Train a judge of the sample metrics into its cache (or --workdir): the in-domain Fashion-MNIST classifier
(`python -m vqgen.cli.train_classifier`) or the self-supervised contrastive encoder (`--network=contrastive`).
Other commands train both on first use; a finished cache is only reported.
"""

from absl import flags

from vqgen.cli import console
from vqgen.stages.classifier import (MIN_ACCURACY, check_network_workdir, contrastive_judge, default_workdir,
                                     feature_classifier)

FLAGS = flags.FLAGS
flags.DEFINE_enum("network", "classifier", ["classifier", "contrastive"], "Which judge to train.")
flags.DEFINE_string("workdir", None, "Where to train it (default: the cache, $VQGEN_CACHE_DIR or ~/.cache/vqgen).")
flags.DEFINE_string("data_dir", "", "Folder of the Fashion-MNIST IDX files (default: the Debian package's).")


def main():
  contrastive = FLAGS.network == "contrastive"
  workdir = FLAGS.workdir or default_workdir(FLAGS.network)
  what = "contrastive judge" if contrastive else "feature classifier"
  check_network_workdir(workdir, what=what)  # another run's folder is refused before its log is touched
  console.log_to_file(workdir)
  if contrastive:
    _, accuracy = contrastive_judge(workdir, FLAGS.data_dir)
    print(f"Fashion-MNIST contrastive judge in {workdir}: 1-nearest-neighbour test accuracy {100 * accuracy:.2f}%",
          flush=True)
    return
  _, accuracy = feature_classifier(workdir, FLAGS.data_dir)
  print(f"Fashion-MNIST feature classifier in {workdir}: test accuracy {100 * accuracy:.2f}%", flush=True)
  if accuracy < MIN_ACCURACY:
    raise SystemExit(f"below the {100 * MIN_ACCURACY:.0f}% target")


def cli():
  console.start(main)


if __name__ == "__main__":
  cli()
