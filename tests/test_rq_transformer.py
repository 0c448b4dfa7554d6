"""RQ-Transformer over stacked codes [T, D]: causal in (position, depth) order, a normalised likelihood (its
probabilities of all K^(T D) code stacks sum to 1), a cached sampler equal to the teacher-forced forward, draws with
the model's law, editing, and the config path (build.prior lays out stacked codes per family)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vqgen import config as config_lib
from vqgen.nn.transformer import Transformer
from vqgen.priors import PriorNetwork, RQTransformer
from vqgen.stages import build

CLASSES = 3


def rq(k=8, grid=(2, 2), depth=3, head="full", layers=1):
  """A small RQ-Transformer with a random head (it starts at zero: uniform predictions)."""
  rngs = nnx.Rngs(0)
  net = PriorNetwork(codebook_size=k, grid=grid, num_classes=CLASSES, width=32, depth=layers, heads=4, head=head,
                     rngs=rngs)
  kernel = net.head.proj.kernel
  kernel[...] = jax.random.normal(jax.random.key(1), kernel.shape) * 0.7
  depth_transformer = Transformer(width=32, depth=layers, heads=4, grid=(1, depth), prefix=0, rngs=rngs)
  return RQTransformer(net, depth_transformer, rngs=rngs)


def log_prob(prior, codes, labels):
  """log p(S | c) of stacks [B, T, D]: the sum of every code's log-probability under teacher forcing."""
  logits = jax.jit(prior.logits)(codes, labels)
  digits = prior.network.factorization.digits(codes)
  lp = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), digits[..., None], -1)[..., 0]
  return jnp.sum(lp, (1, 2, 3))


@pytest.mark.parametrize("head", ["full", "per_bit"])
def test_each_code_sees_only_the_codes_before_it_in_position_then_depth_order(head):
  prior = rq(head=head, layers=2)
  t_count, depth = prior.network.num_tokens, prior.code_depth
  codes = jax.random.randint(jax.random.key(2), (1, t_count, depth), 0, 8)
  labels = jnp.array([1])
  logits = jax.jit(prior.logits)
  base = np.asarray(logits(codes, labels))
  order = [(t, d) for t in range(t_count) for d in range(depth)]
  for i, (t, d) in enumerate(order):
    changed = np.asarray(logits(codes.at[0, t, d].set((codes[0, t, d] + 1) % 8), labels))
    diff = np.abs(changed - base).max((-2, -1))[0]  # [T, D]
    before = np.array([j <= i for j in range(len(order))]).reshape(t_count, depth)
    assert diff[before].max() == 0.0, (t, d)  # itself and every earlier code are untouched
    if i + 1 < len(order):
      assert diff[~before].min() > 1e-6, (t, d)  # every later code sees it
  # The class token reaches every code.
  other = np.asarray(logits(codes, jnp.array([2])))
  assert np.abs(other - base).max((-2, -1)).min() > 1e-6


def test_the_likelihood_is_normalised_and_loss_is_its_mean_per_code():
  """K = 3, T = 2, D = 2: p(S | c) over all 81 stacks sums to 1; the loss is -log p / (T D)."""
  k = 3
  prior = rq(k=k, grid=(1, 2), depth=2)
  stacks = jnp.array(list(itertools.product(range(k), repeat=4)), jnp.int32).reshape(-1, 2, 2)
  labels = jnp.full(len(stacks), 2)
  lp = np.asarray(log_prob(prior, stacks, labels), np.float64)
  np.testing.assert_allclose(np.exp(lp).sum(), 1.0, rtol=1e-5)
  loss, metrics = jax.jit(lambda c, y: prior.loss(c, y, jax.random.key(0), train=False))(
      stacks[:5].reshape(5, 4), labels[:5])
  np.testing.assert_allclose(float(loss), -lp[:5].mean() / 4, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["bits_per_token"]), -lp[:5].mean() / 4 / np.log(2), rtol=1e-5)


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_cached_sampling_equals_the_teacher_forced_forward(guidance_scale):
  prior = rq(k=16, head="factorized")
  labels = jnp.array([0, 1, 2, CLASSES])  # CLASSES = null class
  run = lambda cache: np.asarray(jax.jit(lambda r: prior.sample(
      r, labels, guidance_scale=guidance_scale, guidance_schedule="linear", top_k=4, use_cache=cache))(
          jax.random.key(3)))
  with_cache = run(True)
  np.testing.assert_array_equal(with_cache, run(False))
  assert with_cache.shape == (4, 12) and with_cache.min() >= 0 and with_cache.max() < 16
  assert prior.forward_passes() == 4 * (1 + 3)


def test_samples_follow_the_model_law():
  """4000 draws of K = 3, T = 2, D = 2 against p(S | c) computed for all 81 stacks."""
  k, count = 3, 4000
  prior = rq(k=k, grid=(1, 2), depth=2)
  stacks = np.array(list(itertools.product(range(k), repeat=4)), np.int32)
  p = np.exp(np.asarray(log_prob(prior, jnp.asarray(stacks).reshape(-1, 2, 2), jnp.ones(len(stacks), jnp.int32)),
                        np.float64))
  out = np.asarray(jax.jit(lambda r: prior.sample(r, jnp.ones(count, jnp.int32)))(jax.random.key(4)))
  index = (out * k ** np.arange(3, -1, -1)).sum(1)
  freq = np.bincount(index, minlength=len(stacks)) / count
  np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / count) + 2.0 / count)
  assert 0.5 * np.abs(freq - p).sum() < 0.08


def test_editing_keeps_known_codes_and_feeds_them():
  """Known codes come back unchanged (with the cache and without, under guidance); greedy decoding gives, at every
  unknown code, the argmax of the teacher-forced logits of the output itself: the known codes were fed."""
  prior = rq()
  labels, n = jnp.array([0, 1, 2]), prior.num_tokens
  codes = jax.random.randint(jax.random.key(5), (3, n), 0, 8)
  unknown = np.array(jax.random.bernoulli(jax.random.key(6), 0.5, (3, n)))
  unknown[2] = True
  partial = jnp.where(unknown, prior.network.vocab.mask_id, codes)
  run = lambda cache: np.asarray(jax.jit(lambda r: prior.sample(r, labels, codes=partial, top_k=1,
                                                                use_cache=cache))(jax.random.key(7)))
  out = run(True)
  np.testing.assert_array_equal(out, run(False))
  np.testing.assert_array_equal(out[~unknown], np.asarray(codes)[~unknown])
  greedy = np.asarray(jnp.argmax(jax.jit(prior.logits)(jnp.asarray(out).reshape(3, 4, 3), labels), -1))[..., 0]
  np.testing.assert_array_equal(out[unknown], greedy.reshape(3, n)[unknown])
  with pytest.raises(ValueError, match=r"codes must be \[B, N\] = \[3, 12\]"):
    prior.sample(jax.random.key(0), labels, codes=partial[:, :4])


def test_config_lays_out_stacked_codes_per_family():
  """build.prior: the RQ-Transformer's spatial grid is (h, w) with a depth transformer over D; any other family
  sees a row of w * D codes per grid row."""
  c = config_lib.load_config("configs/prior/rq_fashion_mnist.py:tokenizer=x,width=32,depth=1,depth_layers=2")
  prior = build.prior(c, 16, (3, 2, 4), nnx.Rngs(0))
  assert isinstance(prior, RQTransformer)
  assert prior.network.transformer.grid == (3, 2) and prior.depth_transformer.grid == (1, 4)
  assert len(prior.depth_transformer.blocks) == 2 and prior.num_tokens == 24
  with c.unlocked():
    c.prior.name = "autoregressive"
  assert build.prior(c, 16, (3, 2, 4), nnx.Rngs(0)).network.grid == (3, 8)
  with pytest.raises(config_lib.ConfigError, match="network.depth_layers"):
    config_lib.validate(config_lib.load_config("configs/prior/rq_fashion_mnist.py:tokenizer=x,depth_layers=0"))


def test_bad_networks_are_refused():
  rngs = nnx.Rngs(0)
  net = PriorNetwork(codebook_size=8, grid=(2, 2), num_classes=0, width=32, depth=1, heads=4, class_dropout=0.0,
                     rngs=rngs)
  with pytest.raises(ValueError, match="grid \\(1, D\\) and prefix 0"):
    RQTransformer(net, Transformer(width=32, depth=1, heads=4, grid=(1, 3), prefix=1, rngs=rngs), rngs=rngs)
  with pytest.raises(ValueError, match="width 16 must equal"):
    RQTransformer(net, Transformer(width=16, depth=1, heads=4, grid=(1, 3), prefix=0, rngs=rngs), rngs=rngs)
