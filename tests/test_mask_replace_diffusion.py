"""Mask-and-replace diffusion (VQ-Diffusion): transition matrices against the closed forms, the O(K) posterior against
Bayes' rule on those matrices, a zero loss for a network that knows x_0, both samplers, guidance, the config and a
few steps through the trainer."""

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vqgen import config as config_lib
from vqgen.priors import mask_replace_diffusion as mr
from vqgen.priors.base import PriorNetwork
from vqgen.stages import build
from vqgen.train import sharding as sharding_lib
from vqgen.train.step import build_training

K, GRID, CLASSES = 16, (3, 3), 4
PAPER, RELEASE = (0.9, 0.1), (0.99999, 1e-6)  # (mask_end, replace_end): VQ-Diffusion's paper, its released code


def network(cls=PriorNetwork, **kwargs):
  args = dict(codebook_size=K, grid=GRID, num_classes=CLASSES, width=32, depth=2, heads=4, time_conditioning=True,
              rngs=nnx.Rngs(0))
  net = cls(**{**args, **kwargs})
  kernel = net.head.proj.kernel  # heads start at zero (uniform predictions); random ones make value tests meaningful
  kernel[...] = jax.random.normal(jax.random.key(1), kernel.shape) * 0.5
  return net


def matrix(alpha, beta, gamma, k):
  """The (k+1) x (k+1) mask-and-replace matrix, rows x_{t-1} (or x_0), columns x_t; [MASK] is the last state."""
  q = np.zeros((k + 1, k + 1))
  q[:k, :k] = alpha * np.eye(k) + beta
  q[:k, k], q[k, k] = gamma, 1.0
  return q


@pytest.mark.parametrize("ends", [PAPER, RELEASE], ids=["paper", "release"])
def test_step_matrices_multiply_to_the_closed_form_cumulative_matrix(ends):
  k, big_t = 5, 7
  cum = mr.schedule(big_t, k, *ends)
  # The source's linear schedules: abar from 0.99999, gbar from 9e-6 (K bbar_1 = 1e-6) to the end points.
  np.testing.assert_allclose(cum[1], [0.99999, 1e-6 / k, 9e-6], rtol=1e-6)
  np.testing.assert_allclose(cum[-1], [1 - sum(ends), ends[1] / k, ends[0]], atol=1e-12)
  np.testing.assert_allclose(np.diff(cum[1:, [0, 2]], 2, axis=0), 0, atol=1e-12)
  if ends == RELEASE:
    np.testing.assert_allclose(k * cum[1:, 1], 1e-6, rtol=1e-6)  # the release keeps K bbar_t = 1e-6 at every t
  product = np.eye(k + 1)
  for t in range(1, big_t + 1):
    step = matrix(*mr.jump(cum, t - 1, t, k), k)
    assert np.all(step >= 0) and np.allclose(step.sum(1), 1)
    product = product @ step
    np.testing.assert_allclose(product, matrix(*cum[t], k), atol=1e-12)
  for s, t in ((0, big_t), (2, 5), (1, 2)):  # the sampler's jumps: Qbar_s Q_{t|s} = Qbar_t
    np.testing.assert_allclose(matrix(*cum[s], k) @ matrix(*mr.jump(cum, s, t, k), k), matrix(*cum[t], k),
                               atol=1e-12)
  # The prior term KL(q(x_T | x_0) || p(x_T)), p(x_T) = [MASK] w.p. gbar_T else a uniform code, from the matrix.
  q_big_t = matrix(*cum[-1], k)[0]
  p_big_t = np.append(np.full(k, (1 - cum[-1, 2]) / k), cum[-1, 2])
  kl = np.sum(np.where(q_big_t > 0, q_big_t * np.log(q_big_t / p_big_t), 0))
  np.testing.assert_allclose(mr.prior_nats(cum, k), kl, atol=1e-12)


@pytest.mark.parametrize("ends", [PAPER, RELEASE], ids=["paper", "release"])
def test_posterior_is_bayes_rule_on_the_matrices_for_every_x_t_and_x_0(ends):
  k, big_t = 5, 7
  cum = mr.schedule(big_t, k, *ends)
  p_x0 = np.random.default_rng(0).dirichlet(np.ones(k), size=k + 1)  # one p(x_0 | x_t) per x_t
  x_t = np.arange(k + 1)                                               # every code and [MASK]
  for s, t in [(t - 1, t) for t in range(1, big_t + 1)] + [(0, big_t), (2, 5)]:
    q_ts, bar_s, bar_t = matrix(*mr.jump(cum, s, t, k), k), matrix(*cum[s], k), matrix(*cum[t], k)
    coef = mr.coefficients(cum, s, t, k)
    # q(x_s | x_t, x_0) = Q_{t|s}[x_s, x_t] Qbar_s[x_0, x_s] / Qbar_t[x_0, x_t]
    brute = q_ts.T[None] * bar_s[:k, None, :] / bar_t[:k, :, None]  # [x_0, x_t, x_s]
    np.testing.assert_allclose(brute.sum(-1), 1, atol=1e-9)
    for x0 in range(k):
      onehot = jnp.where(jnp.arange(k) == x0, 0.0, mr.LOG_ZERO)
      got = np.exp(np.asarray(mr.posterior_log_probs(jnp.broadcast_to(onehot, (k + 1, k)), jnp.asarray(x_t), coef)))
      np.testing.assert_allclose(got, brute[x0], atol=2e-6, err_msg=f"s={s} t={t} x0={x0}")
    model = np.exp(np.asarray(mr.posterior_log_probs(jnp.log(jnp.asarray(p_x0, jnp.float32)), jnp.asarray(x_t), coef)))
    np.testing.assert_allclose(model, np.einsum("xo,oxs->xs", p_x0, brute), atol=2e-6, err_msg=f"s={s} t={t}")
    if s == 0:  # to x_0 the model posterior is p(x_0 | x_t) itself: the t = 1 KL term is the decoder NLL
      np.testing.assert_allclose(model[:, :k], p_x0, rtol=1e-5)


def test_loss_is_zero_for_a_network_that_knows_the_data_and_weighs_the_auxiliary_term_as_the_source():
  codes = jax.random.randint(jax.random.key(14), (64, 9), 0, K)

  class Oracle(mr.MaskReplaceDiffusion):
    def _x0_logits(self, ids, t, key=None):
      return 40.0 * jax.nn.one_hot(codes, K)[:, :, None]

  class Uniform(mr.MaskReplaceDiffusion):  # p(x_0 | x_t) uniform: -log p(x_0 | x_t) = log K at every token
    def _x0_logits(self, ids, t, key=None):
      return jnp.zeros(codes.shape + (1, K))

  net = network()
  priors = [Oracle(net, aux_weight=0.0), Oracle(net, mask_end=RELEASE[0], replace_end=RELEASE[1], aux_weight=0.0),
            Uniform(net, aux_weight=0.0), Uniform(net, aux_weight=1e-3)]
  losses = jax.jit(lambda key: [p.loss(codes, jnp.zeros(64, jnp.int32), key) for p in priors])(jax.random.key(15))
  (oracle, metrics), (release, _), (uniform, uniform_metrics), (with_aux, _) = jax.device_get(losses)
  assert abs(oracle) < 1e-3 and abs(metrics["x0_nll"]) < 1e-6
  # The release's schedule leaves abar_T = 9e-6: only its prior term, 9 tokens of KL(q(x_T | x_0) || p(x_T)), remains.
  release_nats = mr.prior_nats(mr.schedule(100, K, *RELEASE), K)
  np.testing.assert_allclose(release, 9 * release_nats, rtol=1e-2)
  assert 1e-5 < release_nats < 1e-4
  assert uniform > 1.0 and 0.3 < uniform_metrics["mask_fraction"] < 0.6
  assert 0.01 < uniform_metrics["replaced_fraction"] < 0.1  # K bbar_t rises linearly to 0.1
  np.testing.assert_allclose(uniform_metrics["bits_per_token"] * 9 * math.log(2), uniform, rtol=1e-5)
  # The auxiliary term: lambda T mean_t(w_t) N log K with w_t = 2 - (t - 1) / T, mean_t(w_t) = 1.5 over stratified t.
  np.testing.assert_allclose((with_aux - uniform) / (1e-3 * 100 * 9 * math.log(K)), 1.5, atol=0.02)


def test_purity_step_reveals_the_scheduled_count_purest_first_and_sharpens_pure_tokens():
  k, draws = 4, 2000
  x = jnp.array([[k, k, k, k, 1, 2], [k, k, 0, 0, 0, 0]])
  flat, peaked = jnp.log(jnp.full(k, 0.25)), jnp.log(jnp.array([0.7, 0.1, 0.1, 0.1]))
  log_p = jnp.stack([jnp.stack([flat, flat, peaked, flat, flat, flat]), jnp.stack([peaked] * 6)])
  step = lambda key: mr.MaskReplaceDiffusion._purity_step(key, x, log_p, jnp.float32(0.75), 1.0)
  out = np.asarray(jax.vmap(step)(jax.random.split(jax.random.key(0), draws)))
  np.testing.assert_array_equal(out[:, :, 4:], np.broadcast_to(np.asarray(x)[:, 4:], (draws, 2, 2)))  # codes stay
  np.testing.assert_array_equal((out == k).sum(-1), np.broadcast_to([3, 1], (draws, 2)))  # floor(0.75 m) stay masked
  # Which token: without replacement in proportion to purity (0.25 / 0.7 for the flat ones, 1 for the peaked one).
  np.testing.assert_allclose(np.mean(out[:, 0, 2] != k), 1 / (1 + 3 * 0.25 / 0.7), atol=0.04)
  # Its value: softmax((1 + r purity) log p), r = 1 and purity 1: p^2 normalised (0.49 / 0.52) rather than p (0.7).
  revealed = out[:, 1, :2][out[:, 1, :2] != k]
  np.testing.assert_allclose(np.mean(revealed == 0), 0.49 / 0.52, atol=0.02)


@pytest.mark.parametrize("strategy", mr.STRATEGIES)
def test_samplers_return_codes_without_masks(strategy):
  prior = mr.MaskReplaceDiffusion(network(), num_steps=10)
  labels = jnp.array([0, 1, 3, CLASSES])  # the last: the null class
  sample = prior.sample(jax.random.key(16), labels, steps=4, guidance_scale=2.0, top_p=0.9, strategy=strategy)
  assert sample.shape == (4, 9) and int(sample.min()) >= 0 and int(sample.max()) < K
  assert prior.forward_passes(steps=4) == 4
  with pytest.raises(ValueError, match=r"steps must lie in \[1, 10\]"):
    prior.sample(jax.random.key(0), labels, steps=11)
  with pytest.raises(ValueError, match="strategy"):
    prior.sample(jax.random.key(0), labels, strategy="greedy")


def test_guidance_scale_one_is_the_conditional_sampler_and_null_labels_ignore_the_scale():
  class Unguided(PriorNetwork):
    def guided(self, codes, labels, scale, *, t=None):
      return self(self.sequence(labels, codes), t=t)[:, 1:]

  def net(cls=PriorNetwork):  # without time conditioning: adaLN-Zero blocks start as the identity, blind to the class
    n = network(cls, time_conditioning=False)
    n.embed.special_table[...] = n.embed.special_table[...] * 50.0  # class tokens that change the predictions
    return n

  labels = jnp.array([0, 1, 2, 3] + [CLASSES] * 4)  # four classes, then four null labels
  run = lambda n, scale: np.asarray(mr.MaskReplaceDiffusion(n, num_steps=10).sample(
      jax.random.key(5), labels, steps=5, guidance_scale=scale))
  one, three = run(net(), 1.0), run(net(), 3.0)
  np.testing.assert_array_equal(one, run(net(Unguided), 7.0))
  assert np.mean(three[4:] == one[4:]) > 0.95  # the null class: conditional == unconditional, any scale samples alike
  assert np.mean(three[:4] == one[:4]) < 0.9


@pytest.mark.parametrize("key, value, message", [
    ("prior.mask_end", 1e-7, "prior.mask_end"),
    ("prior.replace_end", 0.0, "prior.replace_end"),
    ("prior.replace_end", 0.2, "plus prior.mask_end=0.9 must be <= 1"),
    ("prior.uniform_steps", 1, "prior.uniform_steps"),
    ("sampling.steps", 101, "sampling.steps=101.*<= prior.uniform_steps=100"),
    ("sampling.strategy", "greedy", "sampling.strategy"),
    ("sampling.purity_weight", -1.0, "sampling.purity_weight"),
    ("network.head", "per_bit", "must be 'full' for mask_replace"),
])
def test_config_validation_names_the_key(key, value, message):
  c = config_lib.load_config(config_lib.prior_config_path("mask_replace", "tokenizer=runs/t"))
  config_lib.validate(c)
  section, name = key.split(".")
  c[section][name] = value
  with pytest.raises(ValueError, match=message):
    config_lib.validate(c)


class CodesStage:
  """The prior stage's loss and model on in-memory codes (no tokenizer): enough for the generic trainer's step."""

  def __init__(self, config):
    self.config = config

  def build_model(self, rngs):
    return build.prior(self.config, K, GRID, rngs)

  def loss(self, model, batch, ctx):
    return model.loss(batch["codes"], batch["label"], ctx.rng)


def test_config_trains_through_the_generic_step():
  c = config_lib.load_config(config_lib.prior_config_path("mask_replace", "tokenizer=runs/t,width=32,depth=1"))
  c.network.heads, c.data.batch_size, c.train.steps, c.optimizer.warmup_steps, c.sampling.steps = 2, 16, 3, 1, 2
  config_lib.validate(c)
  mesh = sharding_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1])
  training = build_training(c, CodesStage(c), mesh)
  rng = np.random.default_rng(0)
  state = training.state
  for _ in range(3):
    batch = {"codes": rng.integers(0, K, (16, 9)).astype(np.int32), "label": rng.integers(0, 10, 16).astype(np.int32)}
    state, metrics = training.step(state, sharding_lib.global_batch(batch, mesh), jax.random.key(2))
  assert int(state.step) == 3 and np.isfinite(float(metrics["loss"])) and float(metrics["bits_per_token"]) > 0
  model = training.spec.merge(state.params, state.rest)
  assert isinstance(model, mr.MaskReplaceDiffusion) and model.network.time_conditioning
  kwargs = build.sampler_kwargs(c)  # what the stage's Generator passes (sampled in the tests above)
  assert kwargs["strategy"] == "ancestral" and model.forward_passes(**kwargs) == 2
  inspect.signature(model.sample).bind(jax.random.key(3), jnp.arange(10), **kwargs)
