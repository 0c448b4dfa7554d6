"""The diffusion priors' samplers, by value: MD4's samplers and ReMDM remasking for masked diffusion, the
forward-backward corrector for uniform diffusion. Each step's kernel is written out and checked to keep the forward
process's marginals; the samplers' draws are checked against those kernels; the options at their neutral values are
today's samplers draw for draw."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from test_priors import network
from vqgen import config as config_lib
from vqgen.priors import PriorNetwork, schedules
from vqgen.priors.diffusion import LOOP, MaskedDiffusion, loop_alpha, remask_sigma, step_probabilities, time_grid
from vqgen.priors.sampling import filter_logits, guidance_scale_at, sample_digits
from vqgen.priors.uniform_diffusion import UniformDiffusion, corrector_kernel, corrupt, posterior_log_probs
from vqgen.stages import build

K, GRID = 4, (4, 4)
N = GRID[0] * GRID[1]
PI = np.array([0.4, 0.3, 0.2, 0.1])  # the toy data: every token independently ~ PI


class IidTokens(PriorNetwork):
  """The exact p(x_0 | x_t) of data whose N tokens are independent draws from PI: for masked diffusion PI at a
  mask and the token itself elsewhere; for uniform diffusion (`alpha` given) PI(x_0) q(x_t | x_0), normalised."""

  def __init__(self, alpha=None, **kwargs):
    super().__init__(codebook_size=K, grid=GRID, num_classes=2, width=8, depth=1, heads=1, **kwargs)
    self.alpha = alpha

  def __call__(self, ids, *, t=None, **_):
    x = ids[:, 1:]
    log_pi = jnp.log(jnp.asarray(PI, jnp.float32))
    if self.alpha is None:
      logits = jnp.where((x < K)[..., None], 1e4 * (x[..., None] == jnp.arange(K)) - 1e4, log_pi)
    else:
      a = self.alpha(t)[:, None, None]
      logits = log_pi + jnp.log(a * (x[..., None] == jnp.arange(K)) + (1 - a) / K)
    return jnp.concatenate([jnp.zeros_like(logits[:, :1]), logits], 1)[:, :, None, :]


class MixingLogits(PriorNetwork):
  """A stand-in for a trained network that compiles in no time: logits [B, 1 + N, 1, K] at each position from a
  fixed random table of the position, plus the mean of fixed random embeddings of all ids (class token included),
  plus t; so every output depends on every token, the class and the time."""

  def __init__(self, time_conditioning=True):
    super().__init__(codebook_size=16, grid=(3, 3), num_classes=4, width=8, depth=1, heads=1,
                     time_conditioning=time_conditioning, rngs=nnx.Rngs(0))

  def __call__(self, ids, *, t=None, **_):
    k = self.vocab.codebook_size
    position = jax.random.normal(jax.random.key(0), (ids.shape[1], k))
    embedding = jax.random.normal(jax.random.key(1), (self.vocab.size, k))
    logits = position + 2.0 * jnp.mean(embedding[ids], 1, keepdims=True)
    return (logits if t is None else logits + 3.0 * t[:, None, None])[:, :, None, :]


def uniform_iid_tokens():  # for UniformDiffusion's default schedule
  return IidTokens(alpha=lambda t: schedules.alpha(t, "cosine"), time_conditioning=True, rngs=nnx.Rngs(0))


def frequencies(x, k):
  return np.bincount(np.asarray(x).ravel(), minlength=k) / np.asarray(x).size


# --- masked diffusion: MD4's samplers and ReMDM remasking ---

def written_out_kernel(a_t, a_s, sigma):
  """The one-token ReMDM step, [K + 1, K + 1] over (codes, mask), written from ReMDM's q_sigma with the exact
  denoiser of PI: a code stays w.p. 1 - sigma and is masked w.p. sigma; a mask becomes x w.p. u PI(x) (u below)."""
  u = (a_s - (1 - sigma) * a_t) / (1 - a_t)
  m = np.zeros((K + 1, K + 1))
  m[:K, :K], m[:K, K] = (1 - sigma) * np.eye(K), sigma
  m[K, :K], m[K, K] = u * PI, 1 - u
  return m


@pytest.mark.parametrize("remask,eta", [("none", 0.0), ("cap", 0.05), ("cap", 1.0), ("rescale", 0.5),
                                        ("rescale", 1.0)])
def test_remdm_step_is_the_written_out_kernel_and_keeps_the_forward_marginals(remask, eta):
  for a_t, a_s in [(0.1, 0.3), (0.5, 0.6), (0.8, 0.9999)]:
    bound = (1 - a_s) / a_t
    sigma = {"none": 0.0, "cap": min(eta, bound), "rescale": eta * min(1.0, bound)}[remask]
    np.testing.assert_allclose(float(remask_sigma(a_t, a_s, remask, eta)), sigma, rtol=1e-6, atol=1e-7)
    z = jnp.arange(K + 1)
    got = np.asarray(step_probabilities(jnp.broadcast_to(jnp.asarray(PI, jnp.float32), (K + 1, K)), z, a_t, a_s,
                                        sigma))
    want = written_out_kernel(a_t, a_s, sigma)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert want.min() >= -1e-12
    # q_t = [alpha_t PI, 1 - alpha_t] (forward marginal at t) is carried to q_s by the step.
    q_t, q_s = np.append(a_t * PI, 1 - a_t), np.append(a_s * PI, 1 - a_s)
    np.testing.assert_allclose(q_t @ want, q_s, atol=1e-12)
  if remask == "cap" and eta == 1.0:  # sigma at its bound: the step masks everything it may
    assert sigma == pytest.approx(bound)


@pytest.mark.parametrize("head", ["full", "per_bit"])
@pytest.mark.parametrize("sampler", ["mean", "ancestral"])
@pytest.mark.parametrize("sigma", [0.0, 0.3])
def test_sample_step_draws_the_step_probabilities(head, sampler, sigma):
  """Empirical frequencies of z_s from each z_t (4000 draws per row) against `step_probabilities`, for random logits
  (the per-bit head: a product of two binary digits)."""
  prior = MaskedDiffusion(network(codebook_size=K, grid=GRID, head=head, depth=1))
  reps = 4000
  z = jnp.tile(jnp.arange(K + 1, dtype=jnp.int32), (reps, 1))                       # [B, K + 1]: every z_t
  logits = jax.random.normal(jax.random.key(0), (1, 1) + (prior.network.factorization.groups,
                                                          prior.network.factorization.base))
  logits = jnp.broadcast_to(logits, z.shape + logits.shape[2:])
  a_t, a_s = 0.3, 0.6
  z_s = np.asarray(prior.sample_step(jax.random.key(1), z, logits, a_t, a_s, sigma, sampler=sampler))
  p_x0 = jnp.exp(sum(jax.nn.log_softmax(logits[0, 0], -1)[g][prior.network.factorization.digits(jnp.arange(K))[:, g]]
                     for g in range(prior.network.factorization.groups)))
  want = np.asarray(step_probabilities(jnp.broadcast_to(p_x0, (K + 1, K)), jnp.arange(K + 1), a_t, a_s, sigma))
  got = np.stack([frequencies(z_s[:, j], K + 1) for j in range(K + 1)])
  np.testing.assert_allclose(got, want, atol=0.03)


def test_known_codes_are_never_remasked():
  prior = MaskedDiffusion(MixingLogits())
  k = prior.network.vocab.codebook_size
  codes = jax.random.randint(jax.random.key(2), (4, 9), 0, k)
  known = jax.random.bernoulli(jax.random.key(3), 0.5, codes.shape)
  logits = jnp.zeros((4, 9, 1, k))
  z = prior.sample_step(jax.random.key(4), codes, logits, 0.5, 0.6, 1.0, known=known)
  np.testing.assert_array_equal(np.asarray(z)[np.asarray(known)], np.asarray(codes)[np.asarray(known)])
  assert np.all(np.asarray(z)[~np.asarray(known)] == k)  # sigma = 1 remasks every other unmasked token
  # Through the whole sampler (no final put-back of known codes: a remasked known code would be resampled).
  partial = jnp.where(known, codes, k)
  out = prior.sample(jax.random.key(5), jnp.arange(4), steps=6, codes=partial, remask="cap", remask_eta=1.0,
                     guidance_scale=2.0)
  np.testing.assert_array_equal(np.asarray(out)[np.asarray(known)], np.asarray(codes)[np.asarray(known)])


def todays_masked_sample(prior, rng, labels, steps, grid="cosine", codes=None, **filters):
  """The masked-diffusion sampler as it was before the samplers were added (the reference for 'mean')."""
  net, vocab = prior.network, prior.network.vocab
  b, n, times = labels.shape[0], net.num_tokens, time_grid(steps, grid)

  def step(i, carry):
    z, _ = carry
    t, s = times[steps - i], times[steps - i - 1]
    k_sample, k_reveal = jax.random.split(jax.random.fold_in(rng, i))
    logits = net.guided(z, labels, 1.0, t=jnp.full((b,), t) if net.time_conditioning else None)
    x = net.factorization.compose(sample_digits(k_sample, logits, **filters))
    a_t, a_s = prior.alpha(t), prior.alpha(s)
    reveal = jax.random.uniform(k_reveal, (b, n)) < (a_s - a_t) / (1.0 - a_t)
    z = jnp.where((z == vocab.mask_id) & reveal, x, z)
    return z, net.factorization.compose(jnp.argmax(logits, -1).astype(jnp.int32))

  z0 = jnp.full((b, n), vocab.mask_id, jnp.int32) if codes is None else net.known(codes, b)[0]
  z, greedy = jax.lax.fori_loop(0, steps, step, (z0, z0))
  return jnp.where(z == vocab.mask_id, greedy, z)


def test_masked_samplers_at_their_neutral_settings_are_the_plain_samplers_draw_for_draw():
  """'mean' is today's sampler; sigma = 0 (eta = 0, either schedule) is the sampler without remasking; 'topp' is
  'ancestral' with the nucleus filter; editing included."""
  prior = MaskedDiffusion(MixingLogits(), schedule="cosine")
  labels, k = jnp.arange(4), prior.network.vocab.codebook_size
  codes = jnp.where(jnp.arange(9) % 3 == 0, jax.random.randint(jax.random.key(6), (4, 9), 0, k), k)
  run = jax.jit(lambda r, c, eta=0.0, **kw: prior.sample(r, labels, steps=5, codes=c, top_p=0.9, remask_eta=eta, **kw),
                static_argnames=("sampler", "remask"))
  todays = jax.jit(lambda r, c: todays_masked_sample(prior, r, labels, 5, codes=c, top_p=0.9))
  key = jax.random.key(7)
  for c, sampler, remask in ((None, "mean", "cap"), (codes, "ancestral", "rescale")):
    plain = np.asarray(run(key, c, sampler=sampler))
    np.testing.assert_array_equal(np.asarray(run(key, c, sampler="mean")), np.asarray(todays(key, c)))
    np.testing.assert_array_equal(np.asarray(run(key, c, 0.0, sampler=sampler, remask=remask)), plain)
    assert not np.array_equal(np.asarray(run(key, c, 0.5, sampler=sampler, remask=remask)), plain)
  np.testing.assert_array_equal(np.asarray(run(key, codes, sampler="topp")), plain)
  assert not np.array_equal(plain, np.asarray(run(key, codes, sampler="mean")))  # the same law, other draws
  with pytest.raises(ValueError, match="top_p < 1"):
    prior.sample(jax.random.key(0), labels, sampler="topp")
  with pytest.raises(ValueError, match="remask must be"):
    prior.sample(jax.random.key(0), labels, remask="conf")


@pytest.mark.parametrize("sampler,remask,eta", [("mean", "none", 0.0), ("ancestral", "cap", 0.5),
                                                ("mean", "rescale", 1.0), ("ancestral", "loop", 1.0)])
def test_masked_samplers_draw_the_data_of_an_exact_denoiser(sampler, remask, eta):
  prior = MaskedDiffusion(IidTokens(rngs=nnx.Rngs(0)), schedule="cosine")
  out = jax.jit(lambda r: prior.sample(r, jnp.zeros(512, jnp.int32), steps=8, sampler=sampler, remask=remask,
                                       remask_eta=eta))(jax.random.key(8))
  np.testing.assert_allclose(frequencies(out, K), PI, atol=0.02)  # 8192 tokens: 3.7 standard errors


def test_remdm_loop_schedule_and_its_kernel():
  """ReMDM-loop's alpha: 0 at t = 1, alpha_on on [t_off, t_on], 1 at t = 0, linear in between; in the loop a step
  keeps alpha_on's marginals [alpha_on p, 1 - alpha_on] with sigma capped at (1 - alpha_on) / alpha_on."""
  t_on, t_off, a_on = LOOP
  t = np.array([1.0, 0.8, t_on, 0.3, t_off, 0.02, 0.0])
  expected = [0.0, a_on * 0.2 / (1 - t_on), a_on, a_on, a_on, 1 - 0.02 * (1 - a_on) / t_off, 1.0]
  np.testing.assert_allclose(np.asarray(loop_alpha(t)), expected, rtol=1e-6, atol=1e-7)
  grid = np.asarray(loop_alpha(np.linspace(1, 0, 201)))
  assert np.all(np.diff(grid) >= 0)
  sigma = float(remask_sigma(a_on, a_on, "cap", 1.0))
  np.testing.assert_allclose(sigma, (1 - a_on) / a_on, rtol=1e-6)
  marginal = np.concatenate([a_on * PI, [1 - a_on]])  # z_t's law for an exact model of the toy data
  kernel = np.stack([np.asarray(step_probabilities(jnp.asarray(PI, jnp.float32), jnp.array(z), a_on, a_on, sigma))
                     for z in range(K + 1)])
  np.testing.assert_allclose(marginal @ kernel, marginal, rtol=1e-5, atol=1e-7)
  with pytest.raises(ValueError, match="0 < t_off < t_on < 1"):
    loop_alpha(0.5, (0.05, 0.55, 0.9))


@pytest.mark.parametrize("schedule", ["linear", "cosine", "poly"])
def test_time_of_inverts_the_training_schedule(schedule):
  prior = MaskedDiffusion(IidTokens(rngs=nnx.Rngs(0)), schedule=schedule, exponent=3.0)
  a = prior.alpha(jnp.linspace(0.0, 1.0, 11))
  np.testing.assert_allclose(np.asarray(prior.alpha(prior.time_of(a))), np.asarray(a), atol=2e-6)


def test_remdm_loop_sampler_remasks_only_inside_its_loop():
  """At eta = 0 the loop sampler is the plain sampler on the loop's alpha (no token ever remasked, the same draws
  for any eta outside the loop); eta > 0 changes the draws; a time-conditioned network sees the time of the
  loop's alpha."""
  prior = MaskedDiffusion(MixingLogits(), schedule="linear")
  labels = jnp.arange(4)
  run = jax.jit(lambda r, eta, loop: prior.sample(r, labels, steps=10, grid="uniform", remask="loop",
                                                  remask_eta=eta, remask_loop=loop), static_argnames="loop")
  key = jax.random.key(3)
  plain = np.asarray(run(key, 0.0, LOOP))
  assert plain.min() >= 0 and plain.max() < 16
  assert not np.array_equal(np.asarray(run(key, 0.5, LOOP)), plain)
  # A loop that holds no step start (t_on and t_off between grid points 0.15 and 0.2): eta does nothing.
  narrow = (0.19, 0.16, 0.9)
  np.testing.assert_array_equal(np.asarray(run(key, 0.0, narrow)), np.asarray(run(key, 1.0, narrow)))


# --- uniform diffusion: the forward-backward corrector ---

def exact_log_p_x0(a_t):
  """log p(x_0 | x_t = z) [z, x_0] of the data PI under uniform noise: PI(x_0) q(z | x_0), normalised."""
  joint = PI[None, :] * (a_t * np.eye(K) + (1 - a_t) / K)
  return np.log(joint / joint.sum(1, keepdims=True))


@pytest.mark.parametrize("a_t,a_s", [(0.2, 0.5), (0.6, 0.7), (0.05, 0.99)])
def test_corrector_kernel_keeps_the_noised_data_marginal(a_t, a_s):
  c = np.asarray(corrector_kernel(jnp.asarray(exact_log_p_x0(a_t), jnp.float32), a_t, a_s), np.float64)
  # The kernel brute-forced: re-noise x -> z by Q_{t|s}, then the exact posterior q(y | z) = q_s(y) Q(y, z) / q_t(z).
  q = (a_t / a_s) * np.eye(K) + (1 - a_t / a_s) / K
  q_s, q_t = a_s * PI + (1 - a_s) / K, a_t * PI + (1 - a_t) / K
  brute = q @ (q_s[None, :] * q.T / q_t[:, None])
  np.testing.assert_allclose(c, brute, atol=2e-6)
  np.testing.assert_allclose(c.sum(1), 1.0, atol=2e-6)
  np.testing.assert_allclose(q_s @ c, q_s, atol=2e-6)                      # pi C = pi
  np.testing.assert_allclose(q_s[:, None] * c, (q_s[:, None] * c).T, atol=2e-6)  # detailed balance
  assert np.abs(c - np.eye(K)).max() > 0.05                                # and it moves


def test_corrector_step_draws_the_kernel():
  """A corrector move of the sampler (exact denoiser of PI) from each code, 4096 tokens per code, against
  `corrector_kernel`."""
  prior = UniformDiffusion(uniform_iid_tokens())
  t, s = 0.6, 0.45
  a_t, a_s = float(prior.alpha(t)), float(prior.alpha(s))
  x = jnp.tile(jnp.arange(K, dtype=jnp.int32), (1024, N // K))                   # [1024, 16]: each code 4096 times
  out = np.asarray(jax.jit(lambda r: prior.corrector_step(r, x, jnp.zeros(1024, jnp.int32), t, s))(
      jax.random.key(9)))
  got = np.stack([frequencies(out[np.asarray(x) == j], K) for j in range(K)])
  want = np.asarray(corrector_kernel(jnp.asarray(exact_log_p_x0(a_t), jnp.float32), a_t, a_s))
  np.testing.assert_allclose(got, want, atol=0.03)


def todays_uniform_sample(prior, rng, labels, steps, grid="cosine", codes=None, clamp_known=False):
  """The uniform-diffusion sampler as it was before the corrector was added (the reference for corrector_steps=0)."""
  net, k = prior.network, prior.network.vocab.codebook_size
  b, n, times = labels.shape[0], net.num_tokens, time_grid(steps, grid)
  init_key, rng = jax.random.split(rng)
  editing = codes is not None
  if editing:
    given, known = net.known(codes, b)
    edit_key = jax.random.fold_in(init_key, 1)
    replace = lambda i, x, t: jnp.where(known, given if clamp_known else corrupt(
        jax.random.fold_in(edit_key, i), given, prior.alpha(t), k), x)

  def step(i, x):
    t, s = times[steps - i], times[steps - i - 1]
    logits = net.guided(x, labels, guidance_scale_at(2.0, i / max(steps - 1, 1)),
                        t=jnp.full((b,), t) if net.time_conditioning else None)
    log_p = jax.nn.log_softmax(filter_logits(logits[..., 0, :]), -1)
    log_post = posterior_log_probs(log_p, x, prior.alpha(t), prior.alpha(s))
    x = jax.random.categorical(jax.random.fold_in(rng, i), log_post, -1).astype(jnp.int32)
    return replace(i, x, s) if editing else x

  x_1 = jax.random.randint(init_key, (b, n), 0, k, jnp.int32)
  if not editing:
    return jax.lax.fori_loop(0, steps, step, x_1)
  return jnp.where(known, given, jax.lax.fori_loop(0, steps, step, replace(steps, x_1, times[steps])))


def test_no_corrector_is_todays_uniform_sampler_draw_for_draw_and_correctors_keep_known_codes():
  prior = UniformDiffusion(MixingLogits())
  labels, k = jnp.arange(4), prior.network.vocab.codebook_size
  codes = jax.random.randint(jax.random.key(10), (4, 9), 0, k)
  known = jnp.arange(9) % 2 == 0
  partial = jnp.where(known, codes, k)
  for c, clamp in ((None, False), (partial, False), (partial, True)):
    key = jax.random.key(11)
    kwargs = dict(steps=4, guidance_scale=2.0, codes=c, clamp_known=clamp)
    plain = np.asarray(prior.sample(key, labels, **kwargs))
    np.testing.assert_array_equal(plain, np.asarray(todays_uniform_sample(prior, key, labels, 4, codes=c,
                                                                          clamp_known=clamp)))
    if c is not None:  # (without editing, correctors are tested by value below)
      corrected = np.asarray(prior.sample(key, labels, corrector_steps=2, **kwargs))
      assert not np.array_equal(corrected, plain)
      np.testing.assert_array_equal(corrected[:, np.asarray(known)], np.asarray(codes)[:, np.asarray(known)])
  assert UniformDiffusion.forward_passes(steps=4, corrector_steps=2) == 4 + 2 * 3
  with pytest.raises(ValueError, match="corrector_steps"):
    prior.sample(jax.random.key(0), labels, corrector_steps=-1)


def test_uniform_sampler_with_correctors_draws_the_data_of_an_exact_denoiser():
  prior = UniformDiffusion(uniform_iid_tokens())
  out = jax.jit(lambda r: prior.sample(r, jnp.zeros(512, jnp.int32), steps=4, corrector_steps=2))(jax.random.key(12))
  np.testing.assert_allclose(frequencies(out, K), PI, atol=0.02)


# --- config ---

def prior_config(name, **sampling):
  c = config_lib.prior_config()
  c.tokenizer_workdir, c.prior.name = "runs/t", name
  for key, value in sampling.items():
    c.sampling[key] = value
  return c


@pytest.mark.parametrize("name,sampling,message", [
    ("diffusion", dict(sampler="topp"), "sampling.sampler='topp'.*top_p < 1"),
    ("diffusion", dict(sampler="gibbs"), "sampling.sampler='gibbs'.*one of"),
    ("diffusion", dict(remask="conf"), "sampling.remask='conf'.*one of"),
    ("diffusion", dict(remask="cap", remask_eta=1.5), "sampling.remask_eta=1.5"),
    ("diffusion", dict(remask="loop", remask_loop=(0.05, 0.55, 0.9)), "sampling.remask_loop.*t_off < t_on"),
    ("maskgit", dict(remask="cap"), "sampling.remask='cap'.*prior.name='diffusion'"),
    ("uniform_diffusion", dict(sampler="ancestral"), "sampling.sampler='ancestral'.*prior.name='diffusion'"),
    ("diffusion", dict(corrector_steps=1), "sampling.corrector_steps=1.*uniform_diffusion"),
    ("uniform_diffusion", dict(corrector_steps=-1), "sampling.corrector_steps=-1"),
])
def test_sampler_keys_are_validated(name, sampling, message):
  with pytest.raises(ValueError, match=message):
    config_lib.validate(prior_config(name, **sampling))


def test_sampler_kwargs_pass_the_new_keys_to_their_family_and_count_corrector_passes():
  c = prior_config("diffusion", sampler="topp", top_p=0.98, remask="rescale", remask_eta=0.015)
  config_lib.validate(c)
  kwargs = build.sampler_kwargs(c)
  assert (kwargs["sampler"], kwargs["remask"], kwargs["remask_eta"]) == ("topp", "rescale", 0.015)
  assert kwargs["remask_loop"] == LOOP
  assert MaskedDiffusion.forward_passes(**kwargs) == c.sampling.steps
  c = prior_config("uniform_diffusion", corrector_steps=2)
  c.network.head = "full"
  config_lib.validate(c)
  kwargs = build.sampler_kwargs(c)
  assert kwargs["corrector_steps"] == 2 and "remask" not in kwargs and "sampler" not in kwargs
  assert UniformDiffusion.forward_passes(**kwargs) == c.sampling.steps + 2 * (c.sampling.steps - 1)
  assert "corrector_steps" not in build.sampler_kwargs(prior_config("mask_replace"))
