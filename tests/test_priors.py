"""Priors: cached decoding, MaskGIT reveal schedule, masked-diffusion ELBO and sampler, guidance, heads."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vqgen.priors import heads as heads_lib
from vqgen.priors import sampling, schedules
from vqgen.priors.autoregressive import Autoregressive
from vqgen.priors.base import PriorNetwork
from vqgen.priors.diffusion import MaskedDiffusion, time_grid
from vqgen.priors.maskgit import MaskGIT

K, GRID, CLASSES = 16, (3, 3), 4


def network(**kwargs):
  args = dict(codebook_size=K, grid=GRID, num_classes=CLASSES, width=32, depth=2, heads=4, rngs=nnx.Rngs(0))
  args.update(kwargs)
  net = PriorNetwork(**args)
  # Heads start at zero (uniform predictions); random heads make the value tests meaningful.
  kernel = net.head.proj.kernel
  kernel[...] = jax.random.normal(jax.random.key(1), kernel.shape) * 0.5
  return net


@pytest.mark.parametrize("kwargs", [{}, {"positions": "2d", "head": "per_bit"}, {"head": "factorized"},
                                    {"positions": "rope2d", "norm": "rmsnorm", "mlp": "swiglu"}])
def test_cached_decoding_equals_full_forward_at_every_position(kwargs):
  net = network(**kwargs)
  ids = net.sequence(jnp.array([0, 3]), jax.random.randint(jax.random.key(2), (2, 9), 0, K))
  full = net(ids, causal=True)
  cache = net.transformer.init_cache(2)
  for i in range(ids.shape[1]):
    logits, cache = net(ids[:, i:i + 1], cache=cache, index=i)
    np.testing.assert_allclose(np.asarray(logits[:, 0]), np.asarray(full[:, i]), atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_autoregressive_sampling_with_cache_equals_without(guidance_scale):
  prior = Autoregressive(network())
  labels = jnp.array([0, 1, 2, 3, 4])  # 4 = null class
  run = lambda cache: jax.jit(lambda r: prior.sample(r, labels, guidance_scale=guidance_scale, top_k=8,
                                                      use_cache=cache))(jax.random.key(3))
  with_cache, without = run(True), run(False)
  np.testing.assert_array_equal(np.asarray(with_cache), np.asarray(without))
  assert with_cache.shape == (5, 9) and int(with_cache.min()) >= 0 and int(with_cache.max()) < K


def expected_mask_counts(n0, steps, schedule):
  counts, unknown = [], n0
  for t in range(steps):
    keep = math.floor(n0 * float(schedules.mask_ratio((t + 1) / steps, schedule)))
    keep = 0 if t == steps - 1 else max(1, min(unknown - 1, keep))
    counts.append(keep)
    unknown = keep
  return counts


@pytest.mark.parametrize("steps,schedule", [(4, "cosine"), (8, "linear"), (6, "arccos")])
def test_maskgit_reveals_the_scheduled_number_and_returns_no_mask(steps, schedule):
  prior = MaskGIT(network())
  labels = jnp.arange(3)
  codes, history = prior.decode(jax.random.key(4), labels, steps=steps, schedule=schedule,
                                guidance_scale=2.0)
  expected = expected_mask_counts(9, steps, schedule)
  np.testing.assert_array_equal(np.asarray(history), np.repeat(np.array(expected)[:, None], 3, 1))
  assert int(codes.max()) < K and int(codes.min()) >= 0


def test_maskgit_inpainting_keeps_known_codes_and_changes_nothing_when_all_known():
  prior = MaskGIT(network())
  known = jax.random.randint(jax.random.key(5), (2, 9), 0, K)
  out, history = prior.decode(jax.random.key(6), jnp.array([1, 2]), codes=known, steps=4)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(known))
  assert int(history.max()) == 0
  partial = known.at[:, ::2].set(prior.network.vocab.mask_id)
  out, history = prior.decode(jax.random.key(6), jnp.array([1, 2]), codes=partial, steps=4)
  np.testing.assert_array_equal(np.asarray(out[:, 1::2]), np.asarray(known[:, 1::2]))
  np.testing.assert_array_equal(np.asarray(history[:, 0]), expected_mask_counts(5, 4, "cosine"))


def test_maskgit_loss_masks_the_scheduled_count():
  prior = MaskGIT(network(), min_mask_ratio=1.0)
  codes = jax.random.randint(jax.random.key(7), (4, 9), 0, K)
  loss, metrics = prior.loss(codes, jnp.arange(4), jax.random.key(8))
  assert float(metrics["mask_fraction"]) == 1.0 and np.isfinite(float(loss))
  # A uniform predictor (zero head) costs log K per masked token, plus nothing from label smoothing's uniform part.
  prior = MaskGIT(network(), label_smoothing=0.0)
  prior.network.head.proj.kernel[...] = jnp.zeros_like(prior.network.head.proj.kernel[...])
  loss, _ = prior.loss(codes, jnp.arange(4), jax.random.key(8))
  np.testing.assert_allclose(float(loss), math.log(K), rtol=1e-5)


@pytest.mark.parametrize("name", schedules.ALPHA_SCHEDULES)
def test_alpha_schedules_are_monotone_with_the_right_end_points(name):
  t = jnp.linspace(0, 1, 101)
  a, da = schedules.alpha_and_derivative(t, name)
  assert np.all(np.diff(np.asarray(a)) < 0) and np.all(np.asarray(da) <= 0)
  np.testing.assert_allclose([float(a[0]), float(a[-1])], [1 - 1e-4, 1e-4], atol=1e-7)
  fd = (schedules.alpha(t[1:-1] + 1e-3, name) - schedules.alpha(t[1:-1] - 1e-3, name)) / 2e-3
  np.testing.assert_allclose(np.asarray(da[1:-1]), np.asarray(fd), atol=2e-3)


@pytest.mark.parametrize("name", schedules.MASK_SCHEDULES)
def test_mask_schedules_fall_from_one_to_zero(name):
  g = np.asarray(schedules.mask_ratio(jnp.linspace(0, 1, 51), name, num_tokens=49))
  # 'exp' starts at 1 - 1/N by its definition (reference mask_schedule.py); the others at exactly 1.
  assert np.all(np.diff(g) <= 1e-7) and g[0] >= 1 - 1 / 49 - 1e-6 and g[-1] < 1e-5


class _FixedLogits(MaskedDiffusion):
  """A diffusion prior whose 'network' returns given per-token logits [B, N, 1, K] (no context)."""

  def __init__(self, net, logits):
    super().__init__(net)
    self.fixed = nnx.Variable(logits)

  def _logits(self, ids, t, key=None):
    return jnp.broadcast_to(self.fixed[...], (ids.shape[0],) + self.fixed[...].shape[1:])


def test_masked_diffusion_elbo_is_minimal_for_a_model_that_knows_the_data_and_matches_the_closed_form():
  net = network()
  codes = jnp.tile(jax.random.randint(jax.random.key(9), (1, 9), 0, K), (2048, 1))
  labels = jnp.zeros(2048, jnp.int32)
  oracle = _FixedLogits(net, 30.0 * jax.nn.one_hot(codes[:1], K)[:, :, None])
  loss, _ = oracle.loss(codes, labels, jax.random.key(10))
  assert float(loss) < 1e-6
  # A context-free model predicting p for every token: E[loss] = (alpha(0) - alpha(1)) * sum_n -log p(x_n).
  logits = jax.random.normal(jax.random.key(11), (1, 9, 1, K))
  model = _FixedLogits(net, logits)
  nll = -float(jnp.sum(heads_lib.log_prob(logits[0], codes[0][:, None])))
  losses = [float(model.loss(codes, labels, jax.random.key(s))[0]) for s in range(4)]
  np.testing.assert_allclose(np.mean(losses), (1 - 2e-4) * nll, rtol=0.02)
  assert min(losses) > float(loss)


@pytest.mark.parametrize("grid", ["uniform", "cosine"])
def test_masked_diffusion_sampler_leaves_no_mask(grid):
  prior = MaskedDiffusion(network(time_conditioning=True), schedule="cosine")
  codes = prior.sample(jax.random.key(12), jnp.arange(4), steps=3, grid=grid, guidance_scale=2.0)
  assert codes.shape == (4, 9) and int(codes.max()) < K and int(codes.min()) >= 0
  t = np.asarray(time_grid(8, grid))
  assert t[0] == 0 and t[-1] == pytest.approx(1) and np.all(np.diff(t) > 0)


def test_guidance_at_its_identity_scale_equals_the_conditional_model():
  net = network()
  codes = jax.random.randint(jax.random.key(13), (3, 9), 0, K)
  labels = jnp.array([0, 1, 2])
  conditional = jax.nn.log_softmax(net(net.sequence(labels, codes))[:, 1:], -1)
  guided = net.guided(codes, labels, jnp.asarray(1.0))  # an array scale takes the doubled-batch path
  np.testing.assert_allclose(np.asarray(jax.nn.log_softmax(guided, -1)), np.asarray(conditional), atol=1e-5)
  unconditional = jax.nn.log_softmax(net(net.sequence(jnp.full(3, CLASSES), codes))[:, 1:], -1)
  zero = jax.nn.log_softmax(net.guided(codes, labels, jnp.asarray(0.0)), -1)
  np.testing.assert_allclose(np.asarray(zero), np.asarray(unconditional), atol=1e-5)
  assert float(sampling.guidance_scale_at(3.0, 0.0, "linear")) == 1.0
  assert float(sampling.guidance_scale_at(3.0, 1.0, "cosine")) == pytest.approx(3.0)
  assert float(sampling.guidance_scale_at(3.0, 0.25, "linear")) == pytest.approx(1.5)
  assert float(sampling.guidance_scale_at(3.0, 0.25, "cosine")) == pytest.approx(2.0 - np.sqrt(0.5))
  assert float(sampling.guidance_scale_at(3.0, 0.25, "constant")) == 3.0
  with pytest.raises(ValueError, match="guidance schedule"):
    sampling.guidance_scale_at(3.0, 0.5, "cosin")


@pytest.mark.parametrize("head,groups,base", [("full", 1, 256), ("factorized", 2, 16), ("per_bit", 8, 2)])
def test_factorization_round_trip(head, groups, base):
  f = heads_lib.Factorization(256, head, 2)
  assert (f.groups, f.base) == (groups, base)
  codes = jnp.arange(256)
  np.testing.assert_array_equal(np.asarray(f.compose(f.digits(codes))), np.arange(256))
  if head == "per_bit":
    np.testing.assert_array_equal(np.asarray(f.digits(jnp.array(6))), [0, 1, 1, 0, 0, 0, 0, 0])


def test_vocabulary_keeps_special_ids_outside_the_code_range():
  v = heads_lib.Vocabulary(1000, 10)
  assert v.mask_id == 1000 and int(v.class_id(0)) == 1001 and int(v.class_id(v.null_label)) == v.size - 1 == 1011
  with pytest.raises(ValueError, match="Codes must lie"):
    v.check_codes(jnp.array([0, 1000]))
  with pytest.raises(ValueError, match="power of two"):
    heads_lib.Factorization(1000, "per_bit")
  with pytest.raises(ValueError, match="dividing"):
    heads_lib.Factorization(1024, "factorized", 3)


def test_top_k_and_top_p_keep_the_right_sets():
  logits = jnp.log(jnp.array([0.5, 0.25, 0.15, 0.1]))
  kept = lambda x: np.asarray(x > jnp.finfo(jnp.float32).min / 2)
  np.testing.assert_array_equal(kept(sampling.filter_logits(logits, top_k=2)), [1, 1, 0, 0])
  np.testing.assert_array_equal(kept(sampling.filter_logits(logits, top_p=0.7)), [1, 1, 0, 0])
  np.testing.assert_array_equal(kept(sampling.filter_logits(logits, top_p=0.75)), [1, 1, 0, 0])
  np.testing.assert_array_equal(kept(sampling.filter_logits(logits, top_p=0.76)), [1, 1, 1, 0])
  np.testing.assert_array_equal(kept(sampling.filter_logits(logits, top_p=0.4)), [1, 0, 0, 0])


def test_uniform_diffusion_posterior_matches_the_transition_matrices():
  from vqgen.priors.uniform_diffusion import posterior_log_probs  # pylint: disable=import-outside-toplevel
  k, a_t, a_s = 5, 0.3, 0.8
  q_ts = (a_t / a_s) * np.eye(k) + (1 - a_t / a_s) / k      # Q_{t|s}[x_s, x_t]
  q_s = a_s * np.eye(k) + (1 - a_s) / k                     # Qbar_s[x_0, x_s]
  p_x0 = np.random.default_rng(0).dirichlet(np.ones(k))
  x_t = 2
  brute_q = {x0: q_ts[:, x_t] * q_s[x0] / np.sum(q_ts[:, x_t] * q_s[x0]) for x0 in range(k)}
  brute_p = sum(p_x0[x0] * brute_q[x0] for x0 in range(k))
  got = np.exp(np.asarray(posterior_log_probs(jnp.log(jnp.asarray(p_x0, jnp.float32)), jnp.array(x_t), a_t, a_s)))
  np.testing.assert_allclose(got, brute_p, rtol=1e-5)
  onehot = jnp.log(jax.nn.one_hot(4, k) + 1e-30)
  np.testing.assert_allclose(np.exp(np.asarray(posterior_log_probs(onehot, jnp.array(x_t), a_t, a_s))),
                             brute_q[4], rtol=1e-5)


def test_uniform_diffusion_loss_is_zero_for_a_model_that_knows_the_data_and_sampler_returns_codes():
  from vqgen.priors.uniform_diffusion import UniformDiffusion  # pylint: disable=import-outside-toplevel
  codes = jax.random.randint(jax.random.key(14), (64, 9), 0, K)

  class Oracle(UniformDiffusion):
    def _x0_logits(self, ids, t, key=None):
      return 40.0 * jax.nn.one_hot(codes, K)[:, :, None]

  oracle = Oracle(network(time_conditioning=True), aux_weight=0.0)
  loss, _ = oracle.loss(codes, jnp.zeros(64, jnp.int32), jax.random.key(15))
  assert abs(float(loss)) < 1e-3
  prior = UniformDiffusion(network(time_conditioning=True))
  loss, metrics = prior.loss(codes, jnp.zeros(64, jnp.int32), jax.random.key(15))
  assert float(loss) > 1.0 and 0 < float(metrics["corrupted_fraction"]) < 1
  sample = prior.sample(jax.random.key(16), jnp.arange(4), steps=3, guidance_scale=2.0)
  assert sample.shape == (4, 9) and int(sample.min()) >= 0 and int(sample.max()) < K
  with pytest.raises(ValueError, match="full softmax head"):
    UniformDiffusion(network(head="per_bit"))
