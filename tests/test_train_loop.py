"""Tests for jaxconv.train.loop and .steps: fit, the two conv backends, exact resuming and Ctrl-C."""

import dataclasses
import json
import os
import signal
import sys
import types

import jax
import numpy as np
import pytest
from _train_helpers import (
    STEPS_PER_EPOCH,
    assert_trees_equal,
    interrupt_after,
    load_checkpoint,
    small_config,
    straight_run,
    stray_files,
    without_timings,
)

from jaxconv.train import checkpoint, data, rundir, steps
from jaxconv.train.data import load_data
from jaxconv.train.loop import TrainingInterrupted, fit


@pytest.fixture(scope="module")
def straight():
    return straight_run()


# ---------------------------------------------------------------------------------------------------------------
# The two conv backends train the same model.


def test_im2col_and_lax_backends_give_the_same_losses_step_by_step():
    num_steps = 12  # three epochs of 4 steps
    config = small_config()
    dataset = load_data(config)
    x_train, y_train = jax.device_put(dataset.x_train), jax.device_put(dataset.y_train)
    optimizer = steps.OptimizerSpec(config.optimizer, config.learning_rate)
    losses, final = {}, {}
    for conv in ("im2col", "lax"):
        backend_config = dataclasses.replace(config, conv=conv)
        model = steps.build_model(backend_config, dataset.num_classes)
        params, opt_state, key = steps.init_state(backend_config, model, dataset.image_shape)
        losses[conv] = []
        for step in range(num_steps):
            epoch, batch = divmod(step, STEPS_PER_EPOCH)
            indices = steps.batch_order(key, epoch, len(x_train), config.batch_size)[batch]
            params, opt_state, loss, _ = steps.train_step(
                params, opt_state, x_train, y_train, indices, model=model, optimizer=optimizer
            )
            losses[conv].append(float(loss))
        final[conv] = params
    # Float32 GEMM vs lax's conv differ by rounding only (~1e-7 relative per step); Adam keeps it small.
    np.testing.assert_allclose(losses["im2col"], losses["lax"], rtol=1e-5)
    assert losses["im2col"][-1] < losses["im2col"][0]  # it trained: the comparison is not of constants
    for ours, reference in zip(jax.tree.leaves(final["im2col"]), jax.tree.leaves(final["lax"])):
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)


def test_fit_with_im2col_and_lax_backends_agree(straight):
    assert straight.config.conv == "im2col"
    with_lax = fit(small_config(conv="lax"))
    for ours, reference in zip(straight.history, with_lax.history):
        for key in ("train_loss", "test_loss"):
            np.testing.assert_allclose(ours[key], reference[key], rtol=1e-5)
    for ours, reference in zip(jax.tree.leaves(straight.params), jax.tree.leaves(with_lax.params)):
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)


def test_fit_rejects_a_batch_larger_than_the_training_set():
    with pytest.raises(ValueError, match="batch_size 100 is larger than the 64 training examples"):
        fit(small_config(batch_size=100), data=data.synthetic(num_train=64))


# ---------------------------------------------------------------------------------------------------------------
# Resuming is exact.


def test_resume_after_whole_epochs_ends_exactly_like_an_uninterrupted_run(tmp_path, straight):
    out = str(tmp_path / "run")
    first = fit(small_config(epochs=1, out_dir=out))
    assert [entry["epoch"] for entry in first.history] == [1]
    resumed = fit(small_config(out_dir=out), resume=True)
    assert_trees_equal(resumed.params, straight.params)
    assert_trees_equal(resumed.opt_state, straight.opt_state)
    assert without_timings(resumed.history) == without_timings(straight.history)
    metrics = json.loads((tmp_path / "run" / rundir.METRICS).read_text())
    assert without_timings(metrics["history"]) == without_timings(straight.history)
    # Resuming a finished run trains nothing more.
    again = fit(small_config(out_dir=out), resume=True)
    assert_trees_equal(again.params, straight.params)


@pytest.mark.parametrize("stop_after", [2, STEPS_PER_EPOCH + 2, 2 * STEPS_PER_EPOCH])
def test_ctrl_c_saves_the_last_step_and_resuming_ends_exactly_like_an_uninterrupted_run(
    tmp_path, monkeypatch, straight, stop_after
):
    out = tmp_path / "run"
    config = small_config(out_dir=str(out))
    interrupt_after(monkeypatch, stop_after)
    with pytest.raises(TrainingInterrupted) as interrupt:
        fit(config)
    monkeypatch.undo()
    done_epochs = stop_after // STEPS_PER_EPOCH
    assert isinstance(interrupt.value, KeyboardInterrupt)
    assert (interrupt.value.epoch, interrupt.value.step) == (done_epochs + 1, stop_after)
    assert interrupt.value.checkpoint == rundir.checkpoint_path(out)

    params, _, metadata = load_checkpoint(out, config)
    assert metadata["step"] == stop_after and metadata["epoch"] == done_epochs
    assert len(metadata["history"]) == done_epochs
    assert len(json.loads((out / rundir.METRICS).read_text())["history"]) == done_epochs
    assert (out / rundir.CURVES).exists() == (done_epochs > 0)
    assert stray_files(out) == []
    assert not all(np.array_equal(p, q) for p, q in zip(jax.tree.leaves(params), jax.tree.leaves(straight.params)))

    resumed = fit(config, resume=True)
    assert_trees_equal(resumed.params, straight.params)
    assert_trees_equal(resumed.opt_state, straight.opt_state)
    # The interrupted epoch's running loss and accuracy were saved too, so even its metrics are the same.
    assert without_timings(resumed.history) == without_timings(straight.history)


def test_ctrl_c_before_the_first_step_saves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "run"
    interrupt_after(monkeypatch, -1)  # the compiling call
    with pytest.raises(TrainingInterrupted) as interrupt:
        fit(small_config(out_dir=str(out)))
    assert (interrupt.value.epoch, interrupt.value.step, interrupt.value.checkpoint) == (1, 0, None)
    assert not out.exists() or os.listdir(out) == []


def test_sigint_while_saving_is_held_back_until_the_checkpoint_is_complete(tmp_path, monkeypatch, straight):
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT does not raise KeyboardInterrupt in this process")
    original_save = checkpoint.save
    saves = []

    def save_with_sigint(*args, **kwargs):
        saves.append(None)
        if len(saves) == 1:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of writing the first checkpoint
        original_save(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "save", save_with_sigint)
    out = tmp_path / "run"
    config = small_config(out_dir=str(out))
    with pytest.raises(TrainingInterrupted) as interrupt:
        fit(config)
    monkeypatch.undo()
    assert (interrupt.value.epoch, interrupt.value.step) == (2, STEPS_PER_EPOCH)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler was put back
    _, _, metadata = load_checkpoint(out, config)
    assert metadata["step"] == STEPS_PER_EPOCH and len(metadata["history"]) == 1
    assert stray_files(out) == []
    resumed = fit(config, resume=True)
    assert_trees_equal(resumed.params, straight.params)


def test_tqdm_is_imported_only_for_a_progress_bar(monkeypatch):
    """In Jupyter without ipywidgets, importing tqdm.auto prints a warning: a run without a bar must not import it."""

    class Untouchable(types.ModuleType):
        def __getattr__(self, name):
            raise AssertionError(f"tqdm.auto.{name} was imported by a run without a progress bar")

    monkeypatch.setitem(sys.modules, "tqdm.auto", Untouchable("tqdm.auto"))
    result = fit(small_config(epochs=1), progress=False)
    assert len(result.history) == 1
