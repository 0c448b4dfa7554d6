"""The Inception-v3 of the standard FID and Inception Score, in NHWC: pytorch-fid 0.3.0's
`InceptionV3(use_fid_inception=True)` (the TensorFlow 2015-12-05 graph's variant; layers in inception_layout.py).

FIDInceptionV3(images in [0, 1]) -> {"pool3": [B, 2048], "logits": [B, 1008]}, as pytorch-fid computes them:
  input   gray [..., 1] repeated to 3 channels; bilinear resize to 299x299 as torch.nn.functional.interpolate(
          mode='bilinear', align_corners=False) computes it, without antialiasing (`resize_for_inception`);
          then 2x - 1;
  pool3   the global average of Mixed_7c: FID's features (Heusel et al. 2017);
  logits  pool3 @ fc.weight.T WITHOUT fc.bias: the logits the Inception Score is defined on. OpenAI's improved-GAN
          code (Salimans et al. 2016) multiplies pool3 by the 2015 graph's softmax weights and never adds its
          bias, and torch-fidelity's `logits_unbiased` keeps that, so IS values stay comparable with published ones.
Weights: the pytorch-fid release file, local only (`load_fid_inception`). All convs and products run at
Precision.HIGHEST, so GPUs and TPUs give the float32 result rather than a TF32 / bfloat16 one.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vqgen.evaluation.inception_layout import (AVG_POOL, BLOCKS, BN_EPS, DEFAULT_PATH, FEATURE_DIM, INPUT_SIZE,
                                               MAX_POOL_S1, MAX_POOL_S2, MIXED, NUM_CLASSES, STEM, WEIGHTS_FILE,
                                               WEIGHTS_URL, Conv, block_convs, state_shapes)
from vqgen.tokenizers.pth import load_weights, weight_array

HIGHEST = jax.lax.Precision.HIGHEST


class BasicConv2d(nnx.Module):
  """torchvision's BasicConv2d: conv (no bias, zero padding) -> BatchNorm (running statistics) -> ReLU."""

  def __init__(self, cin: int, layer: Conv, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(cin, layer.out, layer.kernel, strides=layer.stride,
                         padding=tuple((p, p) for p in layer.padding), use_bias=False, precision=HIGHEST, rngs=rngs)
    self.bn = nnx.BatchNorm(layer.out, epsilon=BN_EPS, use_running_average=True, rngs=rngs)

  def __call__(self, x):
    return nnx.relu(self.bn(self.conv(x)))


def _pool(kind: str, x):
  if kind == AVG_POOL:
    return nnx.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)
  if kind == MAX_POOL_S1:
    return nnx.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))   # pads with -inf, as torch does
  assert kind == MAX_POOL_S2, kind
  return nnx.max_pool(x, (3, 3), (2, 2), padding="VALID")                # torch's floor mode


def _run(module, branches: tuple, x):
  """A block of the layer table on x; its BasicConv2d layers are `module`'s attributes of the same names."""
  outs = []
  for branch in branches:
    y = x
    for step in branch:
      if isinstance(step, str):
        y = _pool(step, y)
      elif isinstance(step, Conv):
        y = getattr(module, step.name)(y)
      else:
        y = jnp.concatenate([getattr(module, layer.name)(y) for layer in step], axis=-1)
    outs.append(y)
  return outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=-1)


class Mixed(nnx.Module):
  """One Mixed_* block (its row of inception_layout.MIXED)."""

  def __init__(self, name: str, cin: int, *, rngs: nnx.Rngs):
    self.block = name
    for layer, c in block_convs(dict(MIXED)[name], cin)[0]:
      setattr(self, layer.name, BasicConv2d(c, layer, rngs=rngs))

  def __call__(self, x):
    return _run(self, dict(MIXED)[self.block], x)


def _torch_bilinear_taps(n_in: int, n_out: int) -> tuple:
  """(first source index, second, their weights) per output index of torch's bilinear interpolate
  (align_corners=False, no antialiasing) along one axis, in its CPU arithmetic: a float32 ratio in / out, the
  source position max(ratio * (i + 0.5) - 0.5, 0) in float64, its floor and the next index (the last one repeated
  at the edge), the weights rounded to float32."""
  ratio = np.float64(np.float32(n_in) / np.float32(n_out))
  src = np.maximum(ratio * (np.arange(n_out) + 0.5) - 0.5, 0.0)
  i0 = np.minimum(np.floor(src).astype(np.int32), n_in - 1)
  w1 = (src - i0).astype(np.float32)
  return i0, np.where(i0 < n_in - 1, i0 + 1, i0), np.float32(1) - w1, w1


def _interpolate(x, axis: int, n_out: int):
  i0, i1, w0, w1 = _torch_bilinear_taps(x.shape[axis], n_out)
  shape = [n_out if a == axis else 1 for a in range(x.ndim)]
  return jnp.take(x, i0, axis=axis) * w0.reshape(shape) + jnp.take(x, i1, axis=axis) * w1.reshape(shape)


def resize_for_inception(images) -> jax.Array:
  """Images [B, H, W, 1 or 3] -> float32 [B, 299, 299, 3] (values unchanged in range): gray repeated to RGB, then
  pytorch-fid's resize, torch.nn.functional.interpolate(mode='bilinear', align_corners=False) without
  antialiasing, with torch's source positions and weights (`_torch_bilinear_taps`): width first, then height.
  jax.image.resize(method='bilinear', antialias=False) is the same filter, but its float32 positions put pixels of
  a 331 -> 299 resize up to 2e-5 away from torch's."""
  x = jnp.asarray(images, jnp.float32)
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f"FID Inception takes images [B, H, W, 1 or 3] in [0, 1], got shape {x.shape}.")
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  if x.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
    x = _interpolate(_interpolate(x, 2, INPUT_SIZE), 1, INPUT_SIZE)
  return x


class FIDInceptionV3(nnx.Module):
  """pytorch-fid's FID Inception-v3 (module docstring); attributes and their weights are named as in PyTorch."""

  def __init__(self, *, rngs: nnx.Rngs):
    cin = 3
    for prefix, branches in BLOCKS:
      convs, cout = block_convs(branches, cin)
      if prefix:
        setattr(self, prefix, Mixed(prefix, cin, rngs=rngs))
      else:
        for layer, c in convs:
          setattr(self, layer.name, BasicConv2d(c, layer, rngs=rngs))
      cin = cout
    self.fc = nnx.Linear(FEATURE_DIM, NUM_CLASSES, rngs=rngs)   # its bias is loaded but unused (module docstring)

  def pool3(self, images) -> jax.Array:
    x = 2.0 * resize_for_inception(images) - 1.0
    x = _run(self, (STEM,), x)
    for name, _ in MIXED:
      x = getattr(self, name)(x)
    return jnp.mean(x, axis=(1, 2))

  def __call__(self, images) -> dict:
    """Images [B, H, W, 1 or 3] in [0, 1] -> {"pool3": [B, 2048], "logits": [B, 1008] (unbiased)}."""
    pool3 = self.pool3(images)
    return {"pool3": pool3, "logits": jnp.matmul(pool3, self.fc.kernel[...], precision=HIGHEST)}


def load_fid_inception(path: str = DEFAULT_PATH) -> FIDInceptionV3:
  """FIDInceptionV3 with the weights of a local file in the layout of pytorch-fid's pt_inception-2015-12-05 release
  (PyTorch names such as `Mixed_5b.branch1x1.bn.running_var`, conv weights [out, in, kh, kw], fc [1008, 2048]):
  the .pth itself (read without PyTorch; its name's SHA-256 prefix verified) or an .npz of the same names;
  `num_batches_tracked` and other extra arrays are ignored. Raises FileNotFoundError for a missing file, and
  WeightsFileError (one line: the file, the cause, the fix) for a truncated, damaged or crafted one and for a
  missing or misshapen array."""
  full = os.path.expanduser(path)
  if not os.path.exists(full):
    raise FileNotFoundError(
        f"FID Inception weights file {path!r} does not exist. vqgen never downloads weights: download pytorch-fid's "
        f"{WEIGHTS_URL} yourself, put it e.g. at {DEFAULT_PATH}, and pass its location as `path` "
        "(load_fid_inception(path=...)).")
  fix = (f"Fix: write the .npz again from pytorch-fid's {WEIGHTS_FILE} ({WEIGHTS_URL})." if full.endswith(".npz")
         else f"Fix: download pytorch-fid's {WEIGHTS_FILE} again ({WEIGHTS_URL}).")
  arrays = load_weights(full, fix)
  shapes, weights = state_shapes(), {}
  for key, shape in shapes.items():   # all checked before anything is built
    weights[key] = weight_array(arrays, key, shape, path, f"an FID Inception file has the {len(shapes)} weights of "
                                f"pytorch-fid's {WEIGHTS_FILE} under their PyTorch names", fix)

  net = nnx.eval_shape(lambda: FIDInceptionV3(rngs=nnx.Rngs(0)))
  _, state = nnx.split(net)
  pure = state.to_pure_dict()
  bn_names = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}
  for key in shapes:
    *module, param = key.split(".")
    node = pure
    for part in module:
      node = node[part]
    a = weights[key]
    if key == "fc.weight":
      node["kernel"] = jnp.asarray(a.T)
    elif module[-1] == "conv":
      node["kernel"] = jnp.asarray(a.transpose(2, 3, 1, 0))
    else:   # BatchNorm, and fc.bias
      node[bn_names[param]] = jnp.asarray(a)
  state.replace_by_pure_dict(pure)
  return nnx.merge(nnx.graphdef(net), state)
