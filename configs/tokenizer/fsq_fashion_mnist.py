"""FSQ tokenizer on Fashion-MNIST: 28x28 images -> 7x7 codes, levels (8, 5, 5, 5) = 1000 codes by default.

  python -m vqgen.main --config=configs/tokenizer/fsq_fashion_mnist.py --workdir=runs/fsq
  python -m vqgen.main --config=configs/tokenizer/fsq_fashion_mnist.py:levels=8-6-5,steps=5000 --workdir=...
  python -m vqgen.main --config=configs/tokenizer/fsq_fashion_mnist.py --config.optimizer.learning_rate=1e-3 ...
Variant keys: levels (e.g. 8-5-5-5), steps, batch_size, channels, rotation (true: FSQ in a fixed random orthonormal
basis, meant for equal levels, e.g. levels=6-6-6-6,rotation=true), noise_dropout (TAAE's training bottleneck,
e.g. noise_dropout=0.5).
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.tokenizer_config()
  config_lib.parse_variant(arg, c, {
      "levels": ("quantizer.levels", config_lib.levels_from_string),
      "steps": ("train.steps", int),
      "batch_size": ("data.batch_size", int),
      "channels": ("model.channels", int),
      "rotation": ("quantizer.rotation", config_lib.boolean),
      "noise_dropout": ("quantizer.noise_dropout", float),
  })
  c.lock()
  return c
