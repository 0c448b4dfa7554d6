"""VQGAN-class training: the objective's terms reach only their own parameter group, the adaptive weight is the
gradient-norm ratio on the decoder's last layer, the discriminators compute what their docstrings say, the
two-optimizer step is the same on 8 devices as on 1, a GAN run resumes exactly, LPIPS weights load from the
public layout, and bad settings are refused before any work."""


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from conftest import gan_overrides, tiny_config, write_lpips_npz
from test_train import Interrupt, MappedStage, interrupt_after
from vqgen import config as config_lib
from vqgen.stages import TokenizerStage
from vqgen.tokenizers import Tokenizer
from vqgen.tokenizers.discriminators import PatchGAN, StyleGANDiscriminator, blur_downsample
from vqgen.tokenizers.perceptual import lpips_distance
from vqgen.tokenizers.perceptual_networks import LPIPS_SCALE, LPIPS_SHIFT, load_lpips_vgg16
from vqgen.tokenizers.vqgan import vqgan_losses
from vqgen.train import sharding as sharding_lib
from vqgen.train.checkpoint import Checkpointer, abstract_with_shardings
from vqgen.train.step import StepContext, build_training
from vqgen.train.trainer import restore_model, train_and_evaluate

D_TERMS = ("discriminator", "lecam", "r1")


@pytest.fixture(scope="module")
def images():
  return jnp.asarray(np.random.default_rng(0).uniform(size=(8, 28, 28, 1)), jnp.float32)


def gan_stage(perceptual_workdir, **extra):
  return TokenizerStage(tiny_config(**{**gan_overrides(perceptual_workdir), **extra}))


def objective_parts(stage, images, step, **extra):
  """(params, rest, graphdef, fn(params, which) -> summed terms) of a stage's TokenizerGAN."""
  model = stage.build_model(nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  params, rest = params.to_pure_dict(), rest.to_pure_dict()
  net_def, net_state = stage.perceptual_network()
  net = nnx.merge(net_def, net_state)
  perceptual = lambda x, y: lpips_distance(net.features(x), net.features(y))
  kwargs = dict(perceptual=perceptual, reconstruction_weight=1.0, perceptual_weight=0.1, adversarial_weight=0.1,
                discriminator_start=1, lecam_weight=0.001, r1_gamma=1.0)
  kwargs.update(extra)

  def terms(params, which=None):
    losses, metrics = vqgan_losses(nnx.merge(graphdef, params, rest), images, step, **kwargs)
    keep = {k: v for k, v in losses.items() if which is None or (k in D_TERMS) == (which == "D")}
    return sum(keep.values()), (losses, metrics)

  return params, terms, model, perceptual


def test_each_parameter_group_receives_only_its_own_terms(perceptual_workdir, images):
  params, terms, _, _ = objective_parts(gan_stage(perceptual_workdir), images, step=5)
  grad = lambda which: jax.jit(jax.grad(lambda p: terms(p, which)[0]))(params)
  total, g_only, d_only = grad(None), grad("G"), grad("D")
  # The discriminator's terms see stop-gradient reconstructions; the generator's see a frozen discriminator.
  assert all(float(jnp.max(jnp.abs(x))) == 0 for x in jax.tree.leaves(d_only["tokenizer"]))
  assert all(float(jnp.max(jnp.abs(x))) == 0 for x in jax.tree.leaves(g_only["discriminator"]))
  # Equal up to float32 rounding: summing other terms reorders the additions (atol scaled by the leaf's size).
  for group, own in (("tokenizer", g_only), ("discriminator", d_only)):
    for a, b in zip(jax.tree.leaves(total[group]), jax.tree.leaves(own[group])):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(b))))
  assert optax.tree.norm(d_only["discriminator"]) > 0 and optax.tree.norm(g_only["tokenizer"]) > 0


def test_before_the_start_step_nothing_adversarial_trains(perceptual_workdir, images):
  params, terms, _, _ = objective_parts(gan_stage(perceptual_workdir), images, step=0)
  losses, metrics = jax.jit(lambda p: terms(p)[1])(params)
  assert float(metrics["gan/factor"]) == 0 and all(float(losses[k]) == 0 for k in ("generator", *D_TERMS))
  grads = jax.jit(jax.grad(lambda p: terms(p)[0]))(params)
  assert float(optax.tree.norm(grads["discriminator"])) == 0


def test_adaptive_weight_is_the_gradient_norm_ratio_at_the_decoders_last_layer(perceptual_workdir, images):
  """lambda = ||grad_GL L_rec|| / (||grad_GL L_G|| + 1e-4), recomputed here by a full forward pass per loss."""
  params, terms, model, perceptual = objective_parts(gan_stage(perceptual_workdir), images, step=5)
  _, metrics = jax.jit(lambda p: terms(p)[1])(params)
  tok_def, tok_state = nnx.split(model.tokenizer)
  tok_state = tok_state.to_pure_dict()
  d = model.discriminator

  def with_last(last):
    state = {**tok_state, "decoder": {**tok_state["decoder"], "conv_out": last}}
    return nnx.merge(tok_def, state)(images, train=True)[0]

  last = {"kernel": model.tokenizer.decoder.conv_out.kernel[...], "bias": model.tokenizer.decoder.conv_out.bias[...]}
  rec = lambda last: (jnp.mean(jnp.square(with_last(last) - images))
                      + 0.1 * jnp.mean(perceptual(with_last(last), images)))
  gan = lambda last: -jnp.mean(d(2.0 * with_last(last) - 1.0))
  expected = jax.jit(lambda last: optax.tree.norm(jax.grad(rec)(last))
                     / (optax.tree.norm(jax.grad(gan)(last)) + 1e-4))(last)
  np.testing.assert_allclose(float(metrics["gan/adaptive_weight"]), float(expected), rtol=1e-4)
  assert 0 < float(expected) < 1e4
  # The adversarial share of the last layer's gradient is w_adv by construction (up to the 1e-4 of eq. 7).
  np.testing.assert_allclose(float(metrics["gan/grad_share"]), 0.1, rtol=1e-2)


def test_clipped_discriminator_input_and_the_balance_metrics(perceptual_workdir, images):
  """discriminator_input='clipped': D's loss sees 2 clip(x_hat) - 1 (recomputed here from the reconstructions);
  d_accuracy is the share of real logits > 0 and fake logits < 0; without the adaptive weight the share is
  w_adv ||grad L_G|| / ||grad L_rec||, no longer w_adv."""
  stage = gan_stage(perceptual_workdir)
  params, terms, model, _ = objective_parts(stage, images, step=5, discriminator_input="clipped",
                                            adaptive_weight=False, lecam_weight=0.0, r1_gamma=0.0)
  losses, metrics = jax.jit(lambda p: terms(p)[1])(params)
  recon = model.tokenizer(images, train=True)[0]
  assert float(jnp.min(recon)) < 0 or float(jnp.max(recon)) > 1  # an untrained decoder leaves [0, 1]
  real, fake = model.discriminator(2.0 * images - 1.0), model.discriminator(2.0 * jnp.clip(recon, 0, 1) - 1.0)
  expected = 0.5 * (jnp.mean(jax.nn.relu(1 - real)) + jnp.mean(jax.nn.relu(1 + fake)))
  np.testing.assert_allclose(float(losses["discriminator"]), float(expected), rtol=1e-5)
  np.testing.assert_allclose(float(metrics["gan/d_accuracy"]),
                             0.5 * (float(jnp.mean(real > 0)) + float(jnp.mean(fake < 0))), atol=1e-6)
  assert float(metrics["gan/adaptive_weight"]) == 1.0 and float(metrics["gan/grad_share"]) > 0
  with pytest.raises(ValueError, match="discriminator_input must be one of"):
    objective_parts(stage, images, step=5, discriminator_input="blurred")[1](params)


def test_patchgan_sizes_and_per_image_norms():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 28, 28, 1)), jnp.float32)
  for layers, size in ((1, 12), (2, 5), (3, 1)):  # 28 -> 14 (s2) ... then two stride-1 k4 p1 layers: -1 each
    assert PatchGAN(1, channels=8, num_layers=layers, rngs=nnx.Rngs(0))(x).shape == (4, size, size, 1)
  group = PatchGAN(1, channels=8, num_layers=2, norm="group", rngs=nnx.Rngs(0))
  np.testing.assert_allclose(np.asarray(group(x)[:1]), np.asarray(group(x[:1])), rtol=1e-5, atol=1e-6)
  batch = PatchGAN(1, channels=8, num_layers=2, norm="batch", rngs=nnx.Rngs(0))
  assert not np.allclose(np.asarray(batch(x)[:1]), np.asarray(batch(x[:2])[:1]), atol=1e-4)  # batch-coupled


def test_blur_downsample_equals_a_direct_computation():
  x = np.random.default_rng(2).normal(size=(1, 8, 8, 2)).astype(np.float32)
  taps = np.array([1.0, 3.0, 3.0, 1.0])
  k = np.outer(taps, taps) / 64.0
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))  # SAME for a 4-tap filter at stride 2 on even sizes
  expected = np.stack([[np.einsum("ijc,ij->c", padded[0, 2 * r:2 * r + 4, 2 * c:2 * c + 4], k) for c in range(4)]
                       for r in range(4)])
  np.testing.assert_allclose(np.asarray(blur_downsample(jnp.asarray(x)))[0], expected, rtol=1e-5, atol=1e-6)


def test_stylegan_block_is_the_scaled_residual_sum():
  net = StyleGANDiscriminator(1, 28, channels=(4, 8, 8), rngs=nnx.Rngs(0))
  x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 28, 28, 4)), jnp.float32)
  b = net.blocks[0]
  lrelu = lambda v: jax.nn.leaky_relu(v, 0.2)
  expected = (lrelu(b.conv2(blur_downsample(lrelu(b.conv1(x))))) + b.skip(blur_downsample(x))) / np.sqrt(2.0)
  np.testing.assert_allclose(np.asarray(b(x)), np.asarray(expected), rtol=1e-6)
  assert b(x).shape == (2, 14, 14, 8)
  assert net(x[..., :1]).shape == (2, 1)


def test_two_optimizer_step_on_8_devices_equals_1_device(perceptual_workdir):
  config = tiny_config(**gan_overrides(perceptual_workdir))
  stage = TokenizerStage(config)
  batch = {"image": np.random.default_rng(4).uniform(size=(16, 28, 28, 1)).astype(np.float32)}

  def two_steps(mesh):
    t = build_training(config, stage, mesh, donate=False)
    state = t.state
    for _ in range(2):  # the second step is past the discriminator's start
      state, metrics = t.step(state, sharding_lib.global_batch(batch, mesh), jax.random.key(1))
    return state, metrics

  single, m1 = two_steps(sharding_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1]))
  sharded, m8 = two_steps(sharding_lib.make_mesh(data=2, fsdp=4, model=1))
  assert set(single.ema_params) == {"tokenizer"}  # EMA covers the generator only
  kernel = sharded.params["discriminator"]["convs"][0]["kernel"]
  assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, None, None, "fsdp")
  assert float(m1["gan/factor"]) == 1 and float(m1["loss/discriminator"]) > 0
  np.testing.assert_allclose(float(m1["loss"]), float(m8["loss"]), rtol=1e-5)
  for a, b in zip(jax.tree.leaves((single.params, single.ema_params, single.rest)),
                  jax.tree.leaves((sharded.params, sharded.ema_params, sharded.rest))):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-6, rtol=1e-5)


def test_gan_run_resumes_exactly_and_exports_the_tokenizer(perceptual_workdir, tmp_path):
  config = tiny_config(**{**gan_overrides(perceptual_workdir, "stylegan"), "loss.r1_gamma": 0.0})
  train_and_evaluate(config, str(tmp_path / "a"), TokenizerStage(config))
  with pytest.raises(Interrupt):
    train_and_evaluate(config, str(tmp_path / "b"), MappedStage(config, interrupt_after(3)))  # killed at step 4
  train_and_evaluate(config, str(tmp_path / "b"), TokenizerStage(config))
  states = []
  for run in ("a", "b"):
    t = build_training(config, TokenizerStage(config), sharding_lib.make_mesh(), donate=False)
    ckpt = Checkpointer(str(tmp_path / run / "checkpoints"))
    states.append(ckpt.restore(abstract_with_shardings(t.state, t.shardings))[0])
    ckpt.close()
  assert int(states[0].step) == 4 and float(states[0].rest["lecam_real"]) != 0
  for x, y in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert isinstance(restore_model(config, str(tmp_path / "a"), TokenizerStage(config)), Tokenizer)


def torch_conv3x3(x, w, b):
  """PyTorch's Conv2d(padding=1) on HWC numpy arrays, weights [out, in, 3, 3] (cross-correlation)."""
  p = np.pad(x, ((1, 1), (1, 1), (0, 0)))
  h, wd = x.shape[:2]
  patches = np.stack([p[i:i + h, j:j + wd] for i in range(3) for j in range(3)], -2)  # [h, w, 9, in]
  return np.einsum("hwki,oik->hwo", patches, w.reshape(w.shape[0], w.shape[1], 9)) + b


@pytest.mark.parametrize("slices", [False, True])
def test_lpips_vgg16_loads_the_public_layout(tmp_path, slices):
  rng = np.random.default_rng(5)
  arrays = write_lpips_npz(tmp_path / "vgg.npz", rng, slices)
  net = load_lpips_vgg16(str(tmp_path / "vgg.npz"))
  x = rng.uniform(size=(1, 16, 16, 1)).astype(np.float32)
  name = "net.slice1" if slices else "features"
  h = (np.repeat(2 * x[0] - 1, 3, -1) - np.array(LPIPS_SHIFT)) / np.array(LPIPS_SCALE)
  h = np.maximum(torch_conv3x3(h, arrays[f"{name}.0.weight"], arrays[f"{name}.0.bias"]), 0)
  h = np.maximum(torch_conv3x3(h, arrays[f"{name}.2.weight"], arrays[f"{name}.2.bias"]), 0)
  feats = net.features(jnp.asarray(x))
  assert [f.shape[1] for f in feats] == [16, 8, 4, 2, 1]
  np.testing.assert_allclose(np.asarray(feats[0][0]), h, rtol=2e-4, atol=2e-4)  # relu1_2
  np.testing.assert_allclose(np.asarray(net.channel_weights[4]), arrays["lin4.model.1.weight"].reshape(-1), rtol=1e-6)
  assert float(lpips_distance(feats, feats, net.channel_weights)[0]) == 0.0


def test_lpips_vgg16_perceptual_term_of_the_stage_on_rgb_images(lpips_npz):
  """The tokenizer stage on synthetic RGB images with LPIPS-VGG16 from a weights file: its perceptual term is
  perceptual_weight * mean LPIPS(x_hat, x) computed directly on the loaded network, and a run trains."""
  config = tiny_config(**{"data.name": "synthetic", "data.image_size": 32, "data.channels": 3,
                          "loss.perceptual_weight": 0.5, "loss.perceptual_network": "lpips_vgg16",
                          "loss.perceptual_weights": lpips_npz})
  config_lib.validate(config)
  stage = TokenizerStage(config)
  model = stage.build_model(nnx.Rngs(0))
  x = jnp.asarray(stage.train_dataset(4, 0, 1).__iter__().__next__()["image"])
  assert x.shape == (4, 32, 32, 3)
  ctx = StepContext(rng=jax.random.key(0), step=jnp.int32(0), frozen=stage.frozen())
  _, metrics = stage.loss(model, {"image": x}, ctx)
  net = load_lpips_vgg16(lpips_npz)
  recon = model(x)[0]
  expected = 0.5 * jnp.mean(lpips_distance(net.features(recon), net.features(x), net.channel_weights))
  np.testing.assert_allclose(float(metrics["loss/perceptual"]), float(expected), rtol=1e-5)
  assert float(expected) > 0


def test_lpips_vgg16_refuses_a_wrong_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="never downloads"):
    load_lpips_vgg16(str(tmp_path / "missing.npz"))
  arrays = write_lpips_npz(tmp_path / "vgg.npz", np.random.default_rng(6), False)
  np.savez(tmp_path / "bad.npz", **{**arrays, "features.5.weight": arrays["features.5.weight"].transpose(2, 3, 1, 0)})
  with pytest.raises(ValueError, match=r"features.5.weight has shape \(3, 3, 64, 128\), expected \(128, 64, 3, 3\)"):
    load_lpips_vgg16(str(tmp_path / "bad.npz"))  # a kernel saved in JAX's layout
  del arrays["lin2.model.1.weight"]
  np.savez(tmp_path / "nolin.npz", **arrays)
  with pytest.raises(ValueError, match="no array 'lin2.model.1.weight'"):
    load_lpips_vgg16(str(tmp_path / "nolin.npz"))
  with pytest.raises(ValueError, match="at least 16x16"):
    load_lpips_vgg16(str(tmp_path / "vgg.npz")).features(jnp.zeros((1, 8, 8, 3)))


@pytest.mark.parametrize("overrides, message", [
    ({"loss.adversarial_weight": 0.1}, "loss.adversarial_weight=0.1: needs a discriminator"),
    ({"discriminator.name": "patchgan"}, "discriminator.name='patchgan': trains nothing"),
    ({"loss.adversarial_weight": 0.1, "discriminator.name": "patchgan", "loss.discriminator_start": 4},
     r"loss.discriminator_start=4: must be in \[0, train.steps=4\)"),
    ({"loss.perceptual_weight": 1.0, "loss.perceptual_network": "lpips_vgg16"},
     "loss.perceptual_weights='': must name the local VGG16 \+ LPIPS v0.1 weights"),
    ({"loss.perceptual_weight": 1.0, "loss.perceptual_network": "lpips_vgg16",
      "loss.perceptual_weights": "/nonexistent/vgg.npz"},
     r"loss.perceptual_weights='/nonexistent/vgg.npz': names no file at \['/nonexistent/vgg.npz'\]"),
    ({"loss.perceptual_weight": 1.0, "data.image_size": 32}, "loss.perceptual_network='fashion_mnist': is built for"),
    ({"loss.adversarial_weight": 0.1, "discriminator.name": "patchgan", "discriminator.num_layers": 4},
     "discriminator.num_layers=4: is too deep for 28px"),
    ({"loss.gan_loss": "wgan"}, "loss.gan_loss='wgan'"),
    ({"loss.discriminator_input": "blurred"}, "loss.discriminator_input='blurred'"),
])
def test_bad_gan_settings_are_refused_before_any_work(overrides, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(tiny_config(**overrides))


def test_vgg_perceptual_network_refuses_small_images(tmp_path):
  write_lpips_npz(tmp_path / "vgg.npz", np.random.default_rng(7), False)
  overrides = {"loss.perceptual_weight": 1.0, "loss.perceptual_network": "lpips_vgg16",
               "loss.perceptual_weights": str(tmp_path / "vgg.npz"), "data.image_size": 12}
  with pytest.raises(config_lib.ConfigError, match="data.image_size=12: must be >= 16"):
    config_lib.validate(tiny_config(**overrides))
