"""Tests for jaxconv.train.steps: mixed precision (bfloat16 compute, float32 state) and the model's size check."""

import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _train_helpers import SMALL_ARGS, load_checkpoint, small_config

from jaxconv.cli import main
from jaxconv.train import rundir, steps
from jaxconv.train.config import TrainConfig
from jaxconv.train.data import load_data
from jaxconv.train.loop import fit


def _first_step(dtype):
    config = small_config(dtype=dtype)
    data = load_data(config)
    model = steps.build_model(config, data.num_classes)
    params, opt_state, key = steps.init_state(config, model, data.image_shape)
    indices = steps.batch_order(key, 0, len(data.x_train), config.batch_size)[0]
    optimizer = steps.OptimizerSpec(config.optimizer, config.learning_rate)
    args = (params, opt_state, jnp.asarray(data.x_train), jnp.asarray(data.y_train), indices)
    lowered = steps.train_step.lower(*args, model=model, optimizer=optimizer, dtype=dtype).as_text()
    return steps.train_step(*args, model=model, optimizer=optimizer, dtype=dtype), lowered


def test_bfloat16_computes_in_bfloat16_and_keeps_float32_parameters_and_optimizer_state():
    (params, opt_state, loss, _), program = _first_step("bfloat16")
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype("float32")}
    assert {leaf.dtype for leaf in jax.tree.leaves(opt_state) if jnp.issubdtype(leaf.dtype, jnp.floating)} == {
        jnp.dtype("float32")
    }
    assert loss.dtype == jnp.float32
    # Every GEMM, forward and backward, of the conv (im2col) and of the dense layer multiplies bfloat16 matrices:
    # the dense layer's three, the conv's forward and Eq. 1 (its Eq. 2 is not computed: its input is the data).
    operands = re.findall(r"stablehlo.dot_general .*: \((tensor<[^>]*>), (tensor<[^>]*>)\)", program)
    assert len(operands) >= 5 and all(a.endswith("xbf16>") and b.endswith("xbf16>") for a, b in operands), operands
    (_, _, loss_f32, _), program_f32 = _first_step("float32")
    assert "bf16" not in program_f32
    np.testing.assert_allclose(float(loss), float(loss_f32), rtol=2e-2)  # bfloat16 keeps 8 bits of mantissa


def test_bfloat16_trains_the_digits_to_within_a_point_of_float32():
    accuracy = {dtype: fit(TrainConfig(dtype=dtype)).test_accuracy for dtype in ("float32", "bfloat16")}
    assert accuracy["float32"] > 0.97
    assert abs(accuracy["bfloat16"] - accuracy["float32"]) <= 0.01, accuracy


def test_the_dtype_is_recorded_and_a_resumed_run_may_change_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dtype", "bfloat16", "--epochs", "1", *SMALL_ARGS, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "conv=im2col, bfloat16; adam" in printed and "4 steps, conv=im2col, bfloat16" in printed
    assert json.loads((out / rundir.METRICS).read_text())["config"]["dtype"] == "bfloat16"
    params, _, _ = load_checkpoint(out)
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype("float32")}
    assert main(["train", "--resume", str(out), "--epochs", "2", "--dtype", "float32", "--quiet"]) == 0
    metrics = json.loads((out / rundir.METRICS).read_text())
    assert metrics["config"]["dtype"] == "float32" and len(metrics["history"]) == 2


def test_a_float16_or_unknown_dtype_is_refused(capsys):
    with pytest.raises(ValueError, match=r"dtype must be one of \('float32', 'bfloat16'\), got 'float16'"):
        TrainConfig(dtype="float16")
    with pytest.raises(SystemExit):
        main(["train", "--dtype", "float64"])
    assert "invalid choice: 'float64'" in capsys.readouterr().err


def test_images_too_small_for_the_pooling_stages_are_refused():
    steps.check_image_size((3, 16, 16), (8, 8, 8, 8))
    with pytest.raises(ValueError, match=r"images of 16x8 are too small for 4 conv stages .* at least 16x16"):
        steps.check_image_size((3, 16, 8), (8, 8, 8, 8))
    with pytest.raises(ValueError, match="images of 3x3 are too small for 2 conv stages"):
        fit(small_config(channels=(4, 4)), data=_tiny_images())


def _tiny_images():
    from jaxconv.train.data import synthetic

    return synthetic(num_train=64, num_test=8, image_shape=(1, 3, 3))
