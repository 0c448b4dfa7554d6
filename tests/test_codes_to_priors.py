"""Codes of every shape reach every prior family by config: an LFQ, a BSQ and a residual-VQ tokenizer (each trained
2 steps from its configs/tokenizer file at tiny width) each feed every family of `vqgen.priors.PRIORS` (a family
added later is covered without editing this file, given its configs/prior/*_fashion_mnist.py), built as a run builds
it: the family's prior config -> PriorStage -> build_model -> the stage's loss on a batch of the tokenizer's real
codes -> a gradient step -> Generator samples decoded by the tokenizer. The training loop itself:
tests/test_prior_stage.py.

Values, not only shapes: at initialisation every family's head is zero (priors/heads.py), so the prior predicts
each code uniformly over the tokenizer's K codes and its loss is known in closed form (log K nats per code for the
cross-entropies, log2 K bits per code for an exact likelihood, N log K nats per image in expectation for masked
diffusion's ELBO); a step down the gradient lowers the loss; the samples cover the codebook at every depth and
decode through the tokenizer to the images of `tokenizer.decode(tokens)`.
"""

import glob
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from conftest import SMALL_SPLITS, TINY_FLAGS
from test_config import ROOT, load
from test_prior_stage import PRIOR_TINY
from vqgen import config as config_lib
from vqgen.priors import PRIORS
from vqgen.stages import PriorStage, TokenizerStage, build, codes as codes_lib, load_run, run
from vqgen.stages import prior as prior_stage_module
from vqgen.stages.generate import Generator, balanced_labels
from vqgen.train.step import StepContext

# name -> (config file:variant, K, code shape). LFQ and BSQ share K and the grid, so their priors compile the same
# loss programs (the session's compilation cache serves the second); RVQ's codes are stacked, 2 per position.
TOKENIZERS = {
    "lfq": ("lfq_fashion_mnist.py:codebook_size=16", 16, (7, 7)),
    "bsq": ("bsq_fashion_mnist.py:num_bits=4,group_size=2", 16, (7, 7)),
    "rvq": ("rvq_fashion_mnist.py:num_quantizers=2,codebook_size=32", 32, (7, 7, 2)),
}
TOKENIZER_FLAGS = [*TINY_FLAGS, "--config.train.steps=2", "--config.train.checkpoint_every=2",
                   "--config.train.num_grid_images=4", *(f"--config.{k}={v}" for k, v in SMALL_SPLITS.items())]
BATCH, NUM_SAMPLES = 16, 4
# Each family's Fashion-MNIST prior config, by the family it names.
PRIOR_FILES = {config_lib.load_config(p).prior.name: p
               for p in sorted(glob.glob(os.path.join(ROOT, "configs", "prior", "*_fashion_mnist.py")))}


def tokenizer_config(name):
  return load(os.path.join(ROOT, "configs", "tokenizer", TOKENIZERS[name][0]), *TOKENIZER_FLAGS)


@pytest.fixture(scope="module", autouse=True)
def restore_each_tokenizer_once():
  """PriorStage restores its tokenizer run (`load_run`, about 1 s of CPU) for each of the 18 prior configs here, which
  share three runs: each run is restored once (by the real `load_run`) and handed to every stage over it."""
  restored = {}

  def load_once(workdir, stage_class, **kwargs):
    key = (workdir, stage_class, tuple(sorted(kwargs.items())))
    if key not in restored:
      restored[key] = load_run(workdir, stage_class, **kwargs)
    return restored[key]

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(prior_stage_module, "load_run", load_once)
    yield


def tokenizer_run(tmp_path_factory, name):
  workdir = str(tmp_path_factory.mktemp(f"{name}_tokenizer"))
  assert run(tokenizer_config(name), workdir)["step"] == 2
  config, tokenizer, _ = prior_stage_module.load_run(workdir, TokenizerStage)
  codes = codes_lib.cached_codes(config.data.train_split, tokenizer, config)  # the stages' cache hit
  decode = jax.jit(lambda tokens: jnp.clip(tokenizer.decode(tokens), 0.0, 1.0))
  return {"workdir": workdir, "tokenizer": tokenizer, "codes": codes["codes"], "decode": decode}


@pytest.fixture(scope="module")
def lfq_tokenizer(tmp_path_factory):
  return tokenizer_run(tmp_path_factory, "lfq")


@pytest.fixture(scope="module")
def bsq_tokenizer(tmp_path_factory):
  return tokenizer_run(tmp_path_factory, "bsq")


@pytest.fixture(scope="module")
def rvq_tokenizer(tmp_path_factory):
  return tokenizer_run(tmp_path_factory, "rvq")


def prior_config(family: str, tokenizer_workdir: str):
  """The family's configs/prior/*_fashion_mnist.py over the tokenizer, as `--config=FILE:tokenizer=DIR` with
  PRIOR_TINY's flags and a few samples, validated."""
  assert family in PRIOR_FILES, f"prior family {family!r} has no configs/prior/*_fashion_mnist.py"
  overrides = [*PRIOR_TINY, f"--config.sampling.num_samples={NUM_SAMPLES}",
               f"--config.sampling.batch_size={NUM_SAMPLES}"]
  if "depth_layers" in config_lib.prior_config().network:  # the RQ-Transformer's depth transformer
    overrides.append("--config.network.depth_layers=1")
  config = load(f"{PRIOR_FILES[family]}:tokenizer={tokenizer_workdir}", *overrides)
  config_lib.validate(config)
  assert config.prior.name == family and config.tokenizer_workdir == tokenizer_workdir
  return config


def loss_and_step(stage, model, batch, rng, step: bool, step_size=1e-2):
  """The stage's loss and metrics on `batch` with key `rng` (as the trainer calls it) and a function of a key ->
  that loss. With `step`, also in one jitted program: the gradient's norm and the loss after a step of length
  `step_size` down the gradient (same batch and key); else those are None (a loss-only program compiles faster)."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss_fn(p, batch, key):
    ctx = StepContext(rng=key, step=jnp.zeros((), jnp.int32), frozen=None)
    return stage.loss(nnx.merge(graphdef, p, rest), batch, ctx)

  value = jax.jit(loss_fn)
  loss, metrics = value(params, batch, rng)
  loss_at = lambda key: float(value(params, batch, key)[0])
  if not step:
    return loss, metrics, None, None, loss_at

  @jax.jit
  def stepped(p, batch, key):
    grads = jax.grad(lambda p: loss_fn(p, batch, key)[0])(p)
    norm = optax.global_norm(grads)
    return norm, loss_fn(jax.tree.map(lambda w, g: w - step_size * g / norm, p, grads), batch, key)[0]

  norm, loss_after = stepped(params, batch, rng)
  return loss, metrics, norm, loss_after, loss_at


def check_initial_loss(config, model, loss, metrics, loss_at, k, num_tokens):
  """The loss and metrics of a prior that predicts every code uniformly over the K codes, N codes per image."""
  family, log_k = config.prior.name, math.log(k)
  close = lambda a, b, rtol=1e-5: np.testing.assert_allclose(float(a), float(b), rtol=rtol)
  if model.LIKELIHOOD == "exact":  # autoregressive, RQ-Transformer: -log p of uniform codes, label smoothing or not
    close(metrics["bits_per_token"], math.log2(k))
    close(metrics["nll"], log_k)
    close(loss, log_k)  # smoothed targets still sum to 1: uniform logits cost log K
  if family == "maskgit":
    close(loss, log_k)
    close(metrics["masked_nll"], log_k)
  if family in ("diffusion", "uniform_diffusion", "mask_replace"):
    elbo = float(metrics["bits_per_token"]) * num_tokens * math.log(2)  # nats per image
    assert elbo > 0
  if family == "diffusion":  # MD4: the ELBO alone; E_t = (alpha(0) - alpha(1)) N log K = (1 - 2e-4) N log K
    close(loss, elbo)
    close(np.mean([loss_at(key) for key in jax.random.split(jax.random.key(3), 16)]), num_tokens * log_k, rtol=0.1)
  if family == "uniform_diffusion":  # + aux_weight x the mean -log p(x_0 | x_t) = log K
    close(metrics["x0_nll"], log_k)
    close(loss, elbo + config.prior.aux_weight * log_k)
  if family == "mask_replace":  # + aux_weight T w_t N log K on average, VQ-Diffusion's weight w_t in [1, 2]
    close(metrics["x0_nll"], log_k)
    aux = (float(loss) - elbo) / (config.prior.aux_weight * config.prior.uniform_steps * num_tokens * log_k)
    assert 1.0 - 1e-4 <= aux <= 2.0 + 1e-4, aux


@pytest.mark.parametrize("family", sorted(PRIORS))
@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_codes_of_each_tokenizer_reach_each_prior_by_config(name, family, request):
  t = request.getfixturevalue(f"{name}_tokenizer")
  _, k, code_shape = TOKENIZERS[name]
  num_tokens = int(np.prod(code_shape))
  config = prior_config(family, t["workdir"])
  stage = PriorStage(config)
  assert stage.codebook_size == k and tuple(stage.code_shape) == code_shape and stage.num_tokens == num_tokens
  codes = stage.train_codes["codes"]
  np.testing.assert_array_equal(codes, t["codes"])
  assert codes.shape == (256, *code_shape) and codes.min() >= 0 and codes.max() < k

  model = stage.build_model(nnx.Rngs(0))
  # The training pipeline's batch (stages/prior.py's ArraySource): each image's codes as one sequence, depth last.
  batch = {"codes": jnp.asarray(codes[:BATCH].reshape(BATCH, -1)),
           "label": jnp.asarray(stage.train_codes["labels"][:BATCH])}
  # A gradient step over the stacked codes (the layout no other test trains on); LFQ's and BSQ's are FSQ's shape.
  stacked = len(code_shape) > 2
  loss, metrics, grad_norm, loss_after, loss_at = loss_and_step(stage, model, batch, jax.random.key(1), stacked)
  assert all(np.isfinite(float(v)) for v in (loss, *metrics.values())), metrics
  check_initial_loss(config, model, loss, metrics, loss_at, k, num_tokens)
  if stacked:
    assert float(grad_norm) > 0 and float(loss_after) < float(loss), (float(loss), float(loss_after))

  generator = Generator(model, stage.tokenizer, stage.code_shape, build.sampler_kwargs(config))
  labels = balanced_labels(NUM_SAMPLES, config.prior.num_classes)
  samples = generator(labels, jax.random.key(2), batch_size=NUM_SAMPLES)
  tokens, images = samples["tokens"], samples["images"]
  assert tokens.shape == (NUM_SAMPLES, *code_shape) and np.issubdtype(tokens.dtype, np.integer)
  assert tokens.min() >= 0 and tokens.max() < k
  # A uniform prior's NUM_SAMPLES x h x w draws at each depth cover most of the codebook (not one code, not the mask).
  per_depth = tokens.reshape(NUM_SAMPLES, code_shape[0] * code_shape[1], -1)
  for d in range(per_depth.shape[-1]):
    assert len(np.unique(per_depth[..., d])) >= k // 2, (d, np.unique(per_depth[..., d]))
  assert images.shape == (NUM_SAMPLES, 28, 28, 1) and images.dtype == np.float32
  assert 0.0 <= images.min() and images.max() <= 1.0 and images.std() > 0
  np.testing.assert_array_equal(samples["labels"], labels)
  # Round trip: the generator's images are the tokenizer's decoding of the tokens it returns (same layout).
  np.testing.assert_allclose(images, np.asarray(t["decode"](jnp.asarray(tokens))), atol=1e-5)


def test_the_three_tokenizers_make_codes_of_different_shapes(lfq_tokenizer, bsq_tokenizer, rvq_tokenizer):
  lfq, bsq, rvq = (t["tokenizer"].quantizer for t in (lfq_tokenizer, bsq_tokenizer, rvq_tokenizer))
  assert lfq.codebook_size == 2 ** lfq.bits == 16 and bsq.codebook_size == 2 ** bsq.bits == 16
  assert lfq.dim == 4 and bsq.dim == 16  # LFQ: one latent channel per bit; BSQ projects 16 channels to 4 bits
  assert rvq.codebook_size == 32 and rvq.num_quantizers == 2
  for name, t in (("lfq", lfq_tokenizer), ("bsq", bsq_tokenizer), ("rvq", rvq_tokenizer)):
    assert t["codes"].shape == (256, *TOKENIZERS[name][2]) and t["codes"].max() < TOKENIZERS[name][1]
  stacked = rvq_tokenizer["codes"]
  assert stacked.ndim == 4 and stacked.shape[-1] >= 2 and lfq_tokenizer["codes"].ndim == 3
  # The residual levels hold different codes (a stack, not one code repeated), and each level uses more than one code.
  assert np.mean(stacked[..., 0] != stacked[..., 1]) > 0.5
  assert min(len(np.unique(stacked[..., d])) for d in range(2)) > 1
