"""VQGAN-class tokenizer on Fashion-MNIST: the demo's FSQ tokenizer (configs/demo.py) trained with an L1 pixel
loss, 3.0 x a perceptual loss on vqgen's own perceptual network (not the sample metrics' one) and 0.1 x a PatchGAN
adversarial loss with VQGAN's adaptive weight, switched on after a third of the run (config.use_vqgan_objective;
the weights were chosen by the 600-step runs in docs/results.md).

  python -m vqgen.main --config=configs/tokenizer/vqgan_fashion_mnist.py --workdir=runs/vqgan
Variants (`:key=value,...`): steps, perceptual (loss.perceptual_weight), adversarial (loss.adversarial_weight;
0 also drops the discriminator), discriminator (patchgan | stylegan), start (loss.discriminator_start), gan_loss,
pixel (loss.reconstruction: l1 | l2).
The ablation of experiments/tokenizer_losses.py is `:pixel=l2,perceptual=0,adversarial=0` (MSE only),
`:adversarial=0` (L1 + perceptual) and the default (L1 + perceptual + adversarial).
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.tokenizer_config()
  config_lib.use_vqgan_objective(c, steps=1500)
  c.train.log_every = 100
  c.train.checkpoint_every = 500
  config_lib.parse_variant(arg, c, {
      "steps": ("train.steps", int), "perceptual": ("loss.perceptual_weight", float),
      "adversarial": ("loss.adversarial_weight", float), "discriminator": ("discriminator.name", str),
      "start": ("loss.discriminator_start", int),
      "pixel": ("loss.reconstruction", str), "gan_loss": ("loss.gan_loss", str)})
  if c.loss.adversarial_weight == 0:
    c.discriminator.name = "none"
  c.lock()
  return c
