"""Residual VQ tokenizer (RQ-VAE) on Fashion-MNIST: 4 depths of 256 codes on 16-channel latents.

  python -m vqgen.main --config=configs/tokenizer/rvq_fashion_mnist.py --workdir=runs/rvq
  ...rvq_fashion_mnist.py:num_quantizers=8,quantizer_dropout=0.5      SoundStream's variable bitrate
  ...rvq_fashion_mnist.py:shared_codebook=true
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.tokenizer_config()
  c.quantizer = config_lib.quantizer_config("residual", quantizer="vq", num_quantizers=4, dim=16,
                                            codebook_size=256, kmeans_init=True)
  config_lib.parse_variant(arg, c, {
      "num_quantizers": ("quantizer.num_quantizers", int),
      "quantizer_dropout": ("quantizer.quantizer_dropout", float),
      "shared_codebook": ("quantizer.shared_codebook", config_lib.boolean),
      "codebook_size": ("quantizer.codebook_size", int),
      "steps": ("train.steps", int),
  })
  c.lock()
  return c
