"""The embedded default, end to end (`make demo`): `python -m vqgen.demo --workdir=DIR`.

Stage 1 trains the FSQ tokenizer of configs/demo.py (or, with --tokenizer=vqgan, the same network with the VQGAN
objective of configs/tokenizer/vqgan_fashion_mnist.py: more texture, not a better FD, see
experiments/results/tokenizer_losses.md) in DIR/tokenizer; stage 2 trains the class-conditional MaskGIT of
configs/prior/maskgit_fashion_mnist.py (or, with --prior, another family's config file of the same network and
about the same compute) over its codes in DIR/prior, draws 1000 class-balanced samples and scores them
(in-domain Frechet distance, precision/recall, class accuracy, beside the real-vs-real floor and the tokenizer's
reconstruction distance). DIR/samples.npz, DIR/samples.png (one row per class) and DIR/metrics.json (both
stages) are the results. Each stage resumes from its checkpoints when run again. The console shows progress and
results; the libraries' log lines go to DIR/log.txt.
"""

import json
import os
import shutil
import time

from absl import flags

from vqgen import config as config_lib
from vqgen.cli import console
from vqgen.evaluation.samples import format_scores
from vqgen.stages import run
from vqgen.train import writers

FLAGS = flags.FLAGS
TOKENIZERS = {"fsq": "demo.py", "vqgan": os.path.join("tokenizer", "vqgan_fashion_mnist.py")}
flags.DEFINE_string("workdir", "runs/demo", "Where both stages and the results go.")
flags.DEFINE_enum("prior", "maskgit", list(config_lib.PRIOR_CONFIGS), "The stage-2 prior family.")
flags.DEFINE_enum("tokenizer", "fsq", list(TOKENIZERS), "The stage-1 tokenizer: fsq (pixel loss, configs/demo.py) "
                  "or vqgan (+ perceptual and adversarial losses, configs/tokenizer/vqgan_fashion_mnist.py).")


def main():
  workdir = os.path.abspath(FLAGS.workdir)
  console.log_to_file(workdir)
  start = time.perf_counter()
  tokenizer_dir, prior_dir = os.path.join(workdir, "tokenizer"), os.path.join(workdir, "prior")
  tokenizer_config = TOKENIZERS[FLAGS.tokenizer]
  print(f"Stage 1 of 2: the {FLAGS.tokenizer} tokenizer of configs/{tokenizer_config}, in {tokenizer_dir}",
        flush=True)
  tokenizer = run(config_lib.load_config(os.path.join(config_lib.configs_dir(), tokenizer_config)), tokenizer_dir)
  minutes_1 = (time.perf_counter() - start) / 60
  prior_path = config_lib.prior_config_path(FLAGS.prior)
  prior_config = config_lib.load_config(f"{prior_path}:tokenizer={tokenizer_dir}")
  print(f"Stage 2 of 2: the {FLAGS.prior} prior of configs/prior/{os.path.basename(prior_path)}, in {prior_dir}",
        flush=True)
  prior = run(prior_config, prior_dir)
  minutes = (time.perf_counter() - start) / 60
  for name in ("samples.npz", "samples.png"):
    shutil.copy(os.path.join(prior_dir, name), os.path.join(workdir, name))
  results = {"tokenizer": tokenizer, "prior": prior,
             "minutes": {"tokenizer": minutes_1, "prior": minutes - minutes_1, "total": minutes}}
  writers.write_text(os.path.join(workdir, "metrics.json"), json.dumps(results, indent=2))
  print(f"\nTokenizer: test PSNR {tokenizer['test_psnr']:.2f} dB, codebook usage "
        f"{100 * tokenizer['codebook_usage']:.1f}% ({minutes_1:.1f} min)")
  # The objective's unit is the family's (nats per token for MaskGIT and AR, per image for the diffusions).
  nll = f"; NLL {prior['val_masked_nll']:.3f} nats per masked token" if "val_masked_nll" in prior else ""
  if "val_bits_per_token" in prior:
    nll = f"; {prior['val_bits_per_token']:.3f} bits/token, {prior['likelihood']}"
  print(f"Prior ({FLAGS.prior}): validation loss {prior['val_loss']:.3f} (the training objective{nll}), "
        f"{prior['sample_forward_passes']} forward passes per batch of samples ({minutes - minutes_1:.1f} min)")
  if "sample_fd" in prior:
    print(format_scores(prior))
  print(f"Results in {workdir}: samples.png, samples.npz, metrics.json ({minutes:.1f} min in all)")


def cli():
  console.start(main)


if __name__ == "__main__":
  cli()
