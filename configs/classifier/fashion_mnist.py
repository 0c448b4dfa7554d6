"""The in-domain Fashion-MNIST feature classifier behind the sample metrics (vqgen/evaluation/classifier.py).

  python -m vqgen.main --config=configs/classifier/fashion_mnist.py --workdir=runs/classifier
Sample metrics train it on first use into ~/.cache/vqgen/classifier/fashion_mnist with these settings
(`python -m vqgen.cli.train_classifier` does the same on demand).
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.classifier_config()
  config_lib.parse_variant(arg, c, {"steps": ("train.steps", int)})
  c.lock()
  return c
