"""Editing with every prior (known codes in, mask id where unknown: base.py's convention): known codes come back
unchanged under guidance; the autoregressive prior's completions follow the chain rule of its full forward; masked
diffusion never counts a known code as masked; and for the exact denoiser of a toy data set (constant images) the
known half decides the rest: always for the exact samplers, mostly for the replacement (RePaint) ones. The Generator
passes known codes through."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from test_priors import CLASSES, GRID, K, network
from vqgen.priors import PRIORS, PriorNetwork, sampling
from vqgen.stages.generate import Generator

N = GRID[0] * GRID[1]
# family -> (constructor kwargs, sampler kwargs)
FAMILIES = {
    "maskgit": ({}, dict(steps=4)),
    "autoregressive": ({}, {}),
    "diffusion": ({}, dict(steps=4)),
    "uniform_diffusion": ({}, dict(steps=4)),
    "mask_replace": (dict(num_steps=10), dict(steps=5)),
    "mask_replace-purity": (dict(num_steps=10), dict(steps=5, strategy="purity")),
}
TIME_CONDITIONED = ("diffusion", "uniform_diffusion", "mask_replace")


def build(family, net=None):
  name = family.split("-")[0]
  net = net or network(depth=1, time_conditioning=name in TIME_CONDITIONED)
  return PRIORS[name](net, **FAMILIES[family][0])


@pytest.mark.parametrize("family", FAMILIES)
def test_known_codes_come_back_unchanged_under_guidance(family):
  """Rows: a random half known, a raster prefix (the grid's first row and one more code), all known."""
  prior = build(family)
  codes = jax.random.randint(jax.random.key(0), (3, N), 0, K)
  known = np.stack([np.asarray(jax.random.permutation(jax.random.key(1), N)) < N // 2,
                    np.arange(N) < GRID[1] + 1, np.ones(N, bool)])
  partial = jnp.where(known, codes, prior.network.vocab.mask_id)
  kwargs = dict(FAMILIES[family][1], guidance_scale=3.0, guidance_schedule="linear")
  out = np.asarray(jax.jit(lambda r, c: prior.sample(r, jnp.array([0, 2, CLASSES]), codes=c, **kwargs))(
      jax.random.key(2), partial))
  np.testing.assert_array_equal(out[known], np.asarray(codes)[known])
  np.testing.assert_array_equal(out[2], np.asarray(codes[2]))
  assert out.min() >= 0 and out.max() < K  # no mask left at the unknown positions
  assert np.mean(out[~known] != np.asarray(codes)[~known]) > 0.5  # the unknown ones are sampled, not copied
  with pytest.raises(ValueError, match=r"codes must be \[B, N\]"):
    prior.sample(jax.random.key(2), jnp.arange(2), codes=partial, **kwargs)


def test_autoregressive_editing_feeds_known_codes_to_both_guided_halves_with_and_without_the_cache():
  """Greedy (top-1) decoding under guidance: each sampled code is the argmax of the guided logits of the full
  forward on the output itself, known codes included, in the conditional and in the null-class half."""
  prior = build("autoregressive")
  net, labels = prior.network, jnp.array([0, 1, 2])
  codes = jax.random.randint(jax.random.key(3), (3, N), 0, K)
  unknown = np.asarray(jax.random.bernoulli(jax.random.key(4), 0.5, (3, N)))
  partial = jnp.where(unknown, net.vocab.mask_id, codes)
  run = lambda cache: np.asarray(jax.jit(lambda r: prior.sample(r, labels, codes=partial, top_k=1,
                                                                guidance_scale=3.0, use_cache=cache))(
      jax.random.key(5)))
  out = run(True)
  np.testing.assert_array_equal(out, run(False))
  full = jax.jit(lambda y: net(net.sequence(y, jnp.asarray(out[:, :-1])), causal=True))
  greedy = np.asarray(jnp.argmax(sampling.guided_logits(full(labels), full(jnp.full(3, CLASSES)), 3.0), -1))[..., 0]
  np.testing.assert_array_equal(out[unknown], greedy[unknown])
  np.testing.assert_array_equal(out[~unknown], np.asarray(codes)[~unknown])


def test_autoregressive_completion_has_the_chain_rule_distribution():
  """K = 4 on a 2 x 2 grid, class 1: p(x_2, x_3 | x_0, x_1) for a known prefix, and p(x_0, x_1, x_3 | x_2) =
  p(x_0) p(x_1 | x_0) p(x_3 | x_0, x_1, x_2) (each code given the codes before it) for a known x_2, against the
  frequencies of 4000 completions of each."""
  k, c, count = 4, 1, 4000
  prior = PRIORS["autoregressive"](network(codebook_size=k, grid=(2, 2), depth=1))
  net, mask = prior.network, prior.network.vocab.mask_id

  @jax.jit
  def log_factors(rows):  # log p(x_i | c, x_<i) for every i, from the full causal forward: [R, 4]
    logits = net(net.sequence(jnp.full(len(rows), c), rows[:, :-1]), causal=True)[..., 0, :]
    return jnp.take_along_axis(jax.nn.log_softmax(logits, -1), rows[..., None], -1)[..., 0]

  cases = [[2, 3, mask, mask], [mask, mask, 1, mask]]
  out = np.asarray(jax.jit(lambda r: prior.sample(r, jnp.full(2 * count, c), codes=jnp.repeat(
      jnp.array(cases), count, 0)))(jax.random.key(6)))
  frees, tables = [], []
  for case in cases:  # every completion of each case
    frees.append([i for i, v in enumerate(case) if v == mask])
    tables.append(np.array([case] * k ** len(frees[-1])))
    tables[-1][:, frees[-1]] = list(itertools.product(range(k), repeat=len(frees[-1])))
  other = np.concatenate([np.zeros_like(tables[0][:, :2]), tables[0][:, 2:]], 1)  # another prefix
  factors = np.split(np.asarray(log_factors(jnp.asarray(np.concatenate(tables + [other])))),
                     np.cumsum([len(t) for t in tables]))
  for j, (free, rows) in enumerate(zip(frees, tables)):
    p = np.exp(factors[j][:, free].sum(-1))  # only the sampled positions' factors
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-5)
    sample = out[j * count:(j + 1) * count]
    freq = np.array([np.mean(np.all(sample == row, -1)) for row in rows])
    assert freq.sum() == 1.0  # every completion keeps the known codes
    np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / count) + 2.0 / count)
    assert 0.5 * np.abs(freq - p).sum() < 0.05
  # The test can tell conditioning apart: the completions of another prefix are far from those of the first.
  assert 0.5 * np.abs(np.exp(factors[2][:, 2:].sum(-1)) - np.exp(factors[0][:, 2:].sum(-1))).sum() > 0.1


class MaskCounter(PriorNetwork):
  """Predicts, at every position, the code equal to the number of masks in its input."""

  def __call__(self, ids, *, t=None, **_):
    count = jnp.sum(ids == self.vocab.mask_id, -1)
    return jnp.broadcast_to(50.0 * jax.nn.one_hot(count, self.vocab.codebook_size)[:, None, None],
                            ids.shape + (1, self.vocab.codebook_size))


def test_masked_diffusion_never_counts_a_known_code_as_masked():
  """One step from t = 1: row r knows r codes, and the network must see exactly N - r masks."""
  prior = build("diffusion", MaskCounter(codebook_size=K, grid=GRID, num_classes=CLASSES, width=8, depth=1,
                                         heads=1, time_conditioning=True, rngs=nnx.Rngs(0)))
  codes = jax.random.randint(jax.random.key(7), (N + 1, N), 0, K)
  known = np.arange(N)[None] < np.arange(N + 1)[:, None]  # row r: its first r codes
  partial = jnp.where(known, codes, prior.network.vocab.mask_id)
  out = np.asarray(jax.jit(lambda r: prior.sample(r, jnp.zeros(N + 1, jnp.int32), codes=partial, steps=1))(
      jax.random.key(8)))
  expected = np.where(known, np.asarray(codes), (N - known.sum(1))[:, None])
  np.testing.assert_array_equal(out, expected)


class ConstantImages(PriorNetwork):
  """The exact p(x_0 | x_t) of a toy data set whose images repeat one uniformly random code c at all N positions:
  p(c | x_t) is proportional to prod_n q(x_t,n | x_0 = c) under the family's forward process (`log_q` gives the
  logs [B, N, K]); causally, p(x_0) is uniform and every later code is x_0's."""

  def __init__(self, log_q=None, **kwargs):
    super().__init__(**kwargs)
    self.log_q = log_q

  def __call__(self, ids, *, t=None, causal=False, **_):
    x = ids[:, 1:]
    b, k = x.shape[0], self.vocab.codebook_size
    if causal:
      logits = jnp.concatenate([jnp.zeros((b, 1, k)), jnp.broadcast_to(
          50.0 * jax.nn.one_hot(x[:, :1], k), (b, x.shape[1], k))], 1)
    else:
      logits = jnp.broadcast_to(jnp.sum(self.log_q(x, t), 1, keepdims=True), (b, 1 + x.shape[1], k))
    return logits[:, :, None, :]


def absorbing(x, t):  # MaskGIT, masked diffusion: a visible code is x_0's, a mask says nothing
  del t
  return jnp.where((x < K)[..., None], -1e4 * (x[..., None] != jnp.arange(K)), 0.0)


def uniform_noise(alpha):  # D3PM-uniform: x_0's code with probability alpha(t), else a uniform one
  def log_q(x, t):
    a = alpha(t)[:, None, None]
    return jnp.log(a * (x[..., None] == jnp.arange(K)) + (1 - a) / K)
  return log_q


def mask_and_replace(cum):  # VQ-Diffusion: a mask says nothing; a code is x_0's w.p. abar_t, each code w.p. bbar_t
  def log_q(x, t):
    a, b, _ = jnp.asarray(cum, jnp.float32)[jnp.round(t * (len(cum) - 1)).astype(jnp.int32)].T
    return jnp.where((x < K)[..., None], jnp.log(a[:, None, None] * (x[..., None] == jnp.arange(K))
                                                 + b[:, None, None]), 0.0)
  return log_q


# family, clamp_known, the share of images that must come out constant. Replacement (RePaint) loses some to the
# unknown half settling on another code while the known half is still noise; 1/K would match unconditioned.
CONSTANT_CASES = [("maskgit", False, 1.0), ("autoregressive", False, 1.0), ("diffusion", False, 1.0),
                  ("uniform_diffusion", False, 0.7), ("uniform_diffusion", True, 0.95),
                  ("mask_replace", False, 0.8), ("mask_replace", True, 0.95),
                  ("mask_replace-purity", False, 0.6), ("mask_replace-purity", True, 0.95)]


@pytest.mark.parametrize("family,clamp,share", CONSTANT_CASES)
def test_the_known_half_decides_the_exact_denoiser_of_constant_images(family, clamp, share):
  """Half of each image known (a raster prefix for the autoregressive prior, which looks at no later code)."""
  name = family.split("-")[0]
  net = ConstantImages(codebook_size=K, grid=GRID, num_classes=CLASSES, width=8, depth=1, heads=1,
                       time_conditioning=name in TIME_CONDITIONED, rngs=nnx.Rngs(0))
  prior = build(family, net)
  kwargs = dict(FAMILIES[family][1])
  if name == "uniform_diffusion":
    net.log_q, kwargs["steps"] = uniform_noise(prior.alpha), 16
  elif name == "mask_replace":
    net.log_q = mask_and_replace(prior.cumulative())
    kwargs["steps"] = 10 if "purity" not in family else 5
  else:
    net.log_q = absorbing
  if name in ("uniform_diffusion", "mask_replace"):
    kwargs["clamp_known"] = clamp
  if name == "autoregressive":
    kwargs["use_cache"] = False  # the toy network has no key/value cache
  b = 64
  c = jax.random.randint(jax.random.key(9), (b, 1), 0, K)
  known = (jnp.arange(N) <= N // 2) if name == "autoregressive" else (
      jnp.argsort(jax.random.uniform(jax.random.key(10), (b, N)), -1) < N // 2)
  codes = jnp.where(known, c, net.vocab.mask_id)
  out = np.asarray(jax.jit(lambda r: prior.sample(r, jnp.zeros(b, jnp.int32), codes=codes, **kwargs))(
      jax.random.key(11)))
  assert np.mean(np.all(out == np.asarray(c), -1)) >= share


class CodesAsImages(nnx.Module):
  """A stand-in tokenizer: decode(codes [B, h, w]) = codes / K as one-channel images."""

  def __init__(self):
    self.scale = nnx.Param(jnp.ones(()))

  def decode(self, tokens):
    return tokens[..., None].astype(jnp.float32) * self.scale[...] / K


def test_generator_passes_known_codes_through_its_padded_batches():
  prior = build("autoregressive")
  generator = Generator(prior, CodesAsImages(), GRID, dict(guidance_scale=2.0))
  codes = np.asarray(jax.random.randint(jax.random.key(12), (5,) + GRID, 0, K))
  known = np.asarray(jax.random.bernoulli(jax.random.key(13), 0.5, codes.shape))
  out = generator(np.arange(5) % CLASSES, jax.random.key(14), 4, codes=np.where(known, codes, K))
  assert out["tokens"].shape == (5,) + GRID
  np.testing.assert_array_equal(out["tokens"][known], codes[known])
  np.testing.assert_allclose(out["images"][..., 0], out["tokens"] / K)
  with pytest.raises(ValueError, match="codes must be"):
    generator(np.arange(5) % CLASSES, jax.random.key(14), 4, codes=codes[:4])
