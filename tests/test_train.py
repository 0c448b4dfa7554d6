"""The trainer: sharded step equals one device, cross-mesh restore, exact resume, NaN stop, corrupt checkpoints."""

import os

import jax
import numpy as np
import pytest

from conftest import tiny_config
from vqgen.stages import TokenizerStage
from vqgen.train import sharding as sharding_lib
from vqgen.train.checkpoint import Checkpointer, abstract_with_shardings
from vqgen.train.step import build_training
from vqgen.train.trainer import NonFiniteLossError, train_and_evaluate


def build(config, mesh):
  return build_training(config, TokenizerStage(config), mesh, donate=False)


def one_step(config, mesh, batch):
  t = build(config, mesh)
  return t.step(t.state, sharding_lib.global_batch(batch, mesh), jax.random.key(1))


@pytest.fixture(scope="module")
def batch():
  rng = np.random.default_rng(0)
  return {"image": rng.uniform(size=(16, 28, 28, 1)).astype(np.float32),
          "label": rng.integers(0, 10, 16).astype(np.int32)}


def test_sharded_step_equals_single_device(batch):
  config = tiny_config(**{"optimizer.ema_decay": 0.9})
  single, m1 = one_step(config, sharding_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1]), batch)
  mesh8 = sharding_lib.make_mesh(data=2, fsdp=4, model=1)
  sharded, m8 = one_step(config, mesh8, batch)
  # FSDP really splits parameters: a kernel with 8 output channels is spread over the 4-way fsdp axis.
  kernel = sharded.params["encoder"]["conv_in"]["kernel"]
  assert kernel.sharding.spec == jax.sharding.PartitionSpec(None, None, None, "fsdp")
  # Tolerance: float32 reductions are summed in another order across 8 devices; Adam's update is ~lr per
  # element, so 1e-6 absolute on parameters is well below one step.
  for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(sharded.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(single.ema_params), jax.tree.leaves(sharded.ema_params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=1e-5)
  np.testing.assert_allclose(float(m1["loss"]), float(m8["loss"]), rtol=1e-5)
  assert float(m1["quantizer/usage"]) == float(m8["quantizer/usage"])


def test_checkpoint_restores_on_other_meshes(tmp_path, batch):
  config = tiny_config()
  mesh24 = sharding_lib.make_mesh(data=2, fsdp=4, model=1)
  state, _ = one_step(config, mesh24, batch)
  ckpt = Checkpointer(str(tmp_path / "ckpt"))
  ckpt.save(1, state)
  ckpt.wait()
  for mesh in (sharding_lib.make_mesh(data=4, fsdp=2, model=1),
               sharding_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1])):
    t = build(config, mesh)
    restored, step = ckpt.restore(abstract_with_shardings(t.state, t.shardings))
    shardings = t.shardings
    assert step == 1
    for a, b, s in zip(jax.tree.leaves(state), jax.tree.leaves(restored), jax.tree.leaves(shardings)):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
      assert b.sharding == s
  ckpt.close()


class Interrupt(Exception):
  pass


class MappedStage(TokenizerStage):
  """The tokenizer stage with `fn(n, batch)` applied to its n-th batch (1-based), inside the Grain pipeline."""

  def __init__(self, config, fn):
    super().__init__(config)
    self.fn, self.count = fn, 0

  def _apply(self, batch):
    self.count += 1
    return self.fn(self.count, batch)

  def train_dataset(self, *args):
    return super().train_dataset(*args).map(self._apply)


def interrupt_after(k):
  """Dies while fetching batch k + 1, as a run killed between steps."""
  def fn(n, batch):
    if n > k:
      raise Interrupt()
    return batch
  return fn


def final_state(workdir, config):
  t = build(config, sharding_lib.make_mesh())
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
  restored, step = ckpt.restore(abstract_with_shardings(t.state, t.shardings))
  return restored, step


def test_resume_matches_uninterrupted_run(tmp_path):
  config = tiny_config(**{"train.steps": 6})
  train_and_evaluate(config, str(tmp_path / "a"), TokenizerStage(config))
  with pytest.raises(Interrupt):
    train_and_evaluate(config, str(tmp_path / "b"), MappedStage(config, interrupt_after(5)))
  assert Checkpointer(str(tmp_path / "b" / "checkpoints")).latest_step() == 4
  train_and_evaluate(config, str(tmp_path / "b"), TokenizerStage(config))
  a, step_a = final_state(str(tmp_path / "a"), config)
  b, step_b = final_state(str(tmp_path / "b"), config)
  assert step_a == step_b == 6 and int(a.step) == 6
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  metrics = (tmp_path / "b" / "metrics.json").read_text()
  assert "test_psnr" in metrics and (tmp_path / "b" / "reconstructions.png").exists()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  config = tiny_config(**{"train.steps": 8})
  with pytest.raises(NonFiniteLossError, match=r"NaN/Inf at step 3.*last good checkpoint is step 2"):
    train_and_evaluate(config, str(tmp_path), MappedStage(config, lambda n, b: {**b, 'image': b['image'] * np.nan} if n >= 3 else b))
  ckpt = Checkpointer(str(tmp_path / "checkpoints"))
  assert ckpt.all_steps() == [2]
  state, _ = final_state(str(tmp_path), config)
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state.params))


def test_corrupt_checkpoint_falls_back_to_older(tmp_path):
  config = tiny_config()
  train_and_evaluate(config, str(tmp_path), TokenizerStage(config))
  ckpt_dir = tmp_path / "checkpoints"
  assert Checkpointer(str(ckpt_dir)).all_steps() == [2, 4]
  for f in (ckpt_dir / "4").rglob("*"):
    if f.is_file():
      f.write_bytes(b"garbage")
  restored, step = final_state(str(tmp_path), config)
  assert step == 2 and int(restored.step) == 2
