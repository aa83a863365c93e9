"""Tests for jaxconv.train: the ``jaxconv train`` command, ``fit``, resuming and Ctrl-C.

Every run is tiny (a 4-channel CNN, 64 training and 32 test images, 4 steps per
epoch), so the jitted steps compile once per process and each run takes well
under a second after that.
"""

import argparse
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxconv import _checkpoint, data, train
from jaxconv.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(batch_size=16, channels=(4,), max_train=64, max_test=32)
SMALL_ARGS = ["--batch-size", "16", "--channels", "4", "--max-train", "64", "--max-test", "32"]
EPOCHS = 3
STEPS_PER_EPOCH = 64 // 16
HISTORY_KEYS = {
    "epoch",
    "step",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "train_time_s",
    "steps",
    "steps_per_s",
    "eval_time_s",
}
TIMING_KEYS = {"train_time_s", "steps_per_s", "eval_time_s"}  # the only history entries that may differ between runs
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _config(**changes):
    return train.TrainConfig(**{"epochs": EPOCHS, **SMALL, **changes})


@pytest.fixture(scope="module")
def straight():
    """The reference: one uninterrupted EPOCHS-epoch run of ``_config()`` on the digits, writing nothing."""
    return train.fit(_config())


def _assert_trees_equal(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for leaf, expected_leaf in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(leaf, expected_leaf)


def _without_timings(history):
    return [{key: value for key, value in entry.items() if key not in TIMING_KEYS} for entry in history]


def _load_checkpoint(out_dir, config=None):
    """The (params, opt_state) saved in ``out_dir``, restored into the structure of the saved config's run."""
    config = config or train.read_config(out_dir)
    params, opt_state, key = train.init_state(config, train.build_model(config, 10), (1, 8, 8))
    tree, metadata = _checkpoint.load(
        train.checkpoint_path(out_dir), {"params": params, "opt_state": opt_state, "key": key}
    )
    return tree["params"], tree["opt_state"], metadata


def _interrupt_after(monkeypatch, steps, *, sigint=False):
    """Makes ``train.train_step`` stop the run with Ctrl-C when asked for training step ``steps + 1``.

    ``fit`` calls ``train_step`` once to compile it before training: that call is not counted.
    With ``sigint``, a real SIGINT goes to this process (Python's default handler raises KeyboardInterrupt).
    """
    original = train.train_step
    calls = []

    def interrupting_step(*args, **kwargs):
        calls.append(None)
        if len(calls) == steps + 2:  # the compiling call, then `steps` training steps
            if sigint:
                signal.raise_signal(signal.SIGINT)
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(train, "train_step", interrupting_step)


def _stray_files(out_dir):
    """Anything in ``out_dir`` besides the run's three outputs, such as a leftover temporary file."""
    return sorted(set(os.listdir(out_dir)) - {train.CHECKPOINT, train.METRICS, train.CURVES})


# ---------------------------------------------------------------------------------------------------------------
# The command, end to end.


def test_cli_one_epoch_writes_metrics_curves_checkpoint_and_summary(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", *SMALL_ARGS, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    config = _config(epochs=1, out_dir=str(out))

    metrics = json.loads((out / train.METRICS).read_text())
    assert train.TrainConfig.from_dict(metrics["config"]) == config
    (entry,) = metrics["history"]
    assert set(entry) == HISTORY_KEYS
    assert entry["epoch"] == 1 and entry["steps"] == STEPS_PER_EPOCH and entry["step"] == STEPS_PER_EPOCH
    for key in ("train_accuracy", "test_accuracy"):
        assert 0.0 <= entry[key] <= 1.0
    for key in ("train_loss", "test_loss", "train_time_s", "steps_per_s", "eval_time_s"):
        assert np.isfinite(entry[key]) and entry[key] > 0

    assert (out / train.CURVES).read_bytes().startswith(PNG_SIGNATURE)
    assert _stray_files(out) == []

    # The checkpoint holds what the same run through the Python API ends with.
    params, opt_state, metadata = _load_checkpoint(out)
    assert metadata["step"] == STEPS_PER_EPOCH and metadata["epoch"] == 1
    assert metadata["history"] == metrics["history"]
    result = train.fit(dataclasses.replace(config, out_dir=None))
    _assert_trees_equal(params, result.params)
    _assert_trees_equal(opt_state, result.opt_state)

    assert "data: digits, 64 train / 32 test images of shape (1, 8, 8), 10 classes" in printed
    assert "epoch 1/1: train loss" in printed
    summary = f"test accuracy {entry['test_accuracy']:.2%} (loss {entry['test_loss']:.4f}) after 1 epochs, 4 steps"
    assert summary in printed
    assert f"wrote {out / train.METRICS}" in printed


def test_python_m_jaxconv_train_help():
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    completed = subprocess.run(
        [sys.executable, "-m", "jaxconv", "train", "--help"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: jaxconv train")
    for flag in ("--data", "--conv", "--optimizer", "--lr", "--epochs", "--resume", "--out", "--quiet"):
        assert flag in completed.stdout


def test_config_from_args_defaults_out_dir_and_overrides(tmp_path):
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    config, resume = train.config_from_args(parser.parse_args([]))
    assert not resume and config == train.TrainConfig(out_dir=os.path.join("runs", "digits"))
    config, _ = train.config_from_args(parser.parse_args(["--data", "some/where/mine.npz", "--lr", "0.1"]))
    assert config.out_dir == os.path.join("runs", "mine") and config.learning_rate == 0.1
    assert config.data == "some/where/mine.npz"
    config, _ = train.config_from_args(parser.parse_args(["--channels", "3", "5", "--out", str(tmp_path)]))
    assert config.channels == (3, 5) and config.out_dir == str(tmp_path)
    with pytest.raises(ValueError, match="give --out only without --resume"):
        train.config_from_args(parser.parse_args(["--resume", str(tmp_path / "a"), "--out", str(tmp_path / "b")]))


# ---------------------------------------------------------------------------------------------------------------
# The two conv backends train the same model.


def test_im2col_and_lax_backends_give_the_same_losses_step_by_step():
    steps = 12  # three epochs of 4 steps
    config = _config()
    dataset = train.load_data(config)
    x_train, y_train = jax.device_put(dataset.x_train), jax.device_put(dataset.y_train)
    optimizer = train.OptimizerSpec(config.optimizer, config.learning_rate)
    losses, final = {}, {}
    for conv in ("im2col", "lax"):
        backend_config = dataclasses.replace(config, conv=conv)
        model = train.build_model(backend_config, dataset.num_classes)
        params, opt_state, key = train.init_state(backend_config, model, dataset.image_shape)
        losses[conv] = []
        for step in range(steps):
            epoch, batch = divmod(step, STEPS_PER_EPOCH)
            indices = train.batch_order(key, epoch, len(x_train), config.batch_size)[batch]
            params, opt_state, loss, _ = train.train_step(
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
    with_lax = train.fit(_config(conv="lax"))
    for ours, reference in zip(straight.history, with_lax.history):
        for key in ("train_loss", "test_loss"):
            np.testing.assert_allclose(ours[key], reference[key], rtol=1e-5)
    for ours, reference in zip(jax.tree.leaves(straight.params), jax.tree.leaves(with_lax.params)):
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Resuming is exact.


def test_resume_after_whole_epochs_ends_exactly_like_an_uninterrupted_run(tmp_path, straight):
    out = str(tmp_path / "run")
    first = train.fit(_config(epochs=1, out_dir=out))
    assert [entry["epoch"] for entry in first.history] == [1]
    resumed = train.fit(_config(out_dir=out), resume=True)
    _assert_trees_equal(resumed.params, straight.params)
    _assert_trees_equal(resumed.opt_state, straight.opt_state)
    assert _without_timings(resumed.history) == _without_timings(straight.history)
    metrics = json.loads((tmp_path / "run" / train.METRICS).read_text())
    assert _without_timings(metrics["history"]) == _without_timings(straight.history)
    # Resuming a finished run trains nothing more.
    again = train.fit(_config(out_dir=out), resume=True)
    _assert_trees_equal(again.params, straight.params)


@pytest.mark.parametrize("stop_after", [2, STEPS_PER_EPOCH + 2, 2 * STEPS_PER_EPOCH])
def test_ctrl_c_saves_the_last_step_and_resuming_ends_exactly_like_an_uninterrupted_run(
    tmp_path, monkeypatch, straight, stop_after
):
    out = tmp_path / "run"
    config = _config(out_dir=str(out))
    _interrupt_after(monkeypatch, stop_after)
    with pytest.raises(train.TrainingInterrupted) as interrupt:
        train.fit(config)
    monkeypatch.undo()
    done_epochs = stop_after // STEPS_PER_EPOCH
    assert isinstance(interrupt.value, KeyboardInterrupt)
    assert (interrupt.value.epoch, interrupt.value.step) == (done_epochs + 1, stop_after)
    assert interrupt.value.checkpoint == train.checkpoint_path(out)

    params, _, metadata = _load_checkpoint(out, config)
    assert metadata["step"] == stop_after and metadata["epoch"] == done_epochs
    assert len(metadata["history"]) == done_epochs
    assert len(json.loads((out / train.METRICS).read_text())["history"]) == done_epochs
    assert (out / train.CURVES).exists() == (done_epochs > 0)
    assert _stray_files(out) == []
    assert not all(np.array_equal(p, q) for p, q in zip(jax.tree.leaves(params), jax.tree.leaves(straight.params)))

    resumed = train.fit(config, resume=True)
    _assert_trees_equal(resumed.params, straight.params)
    _assert_trees_equal(resumed.opt_state, straight.opt_state)
    # The interrupted epoch's running loss and accuracy were saved too, so even its metrics are the same.
    assert _without_timings(resumed.history) == _without_timings(straight.history)


def test_ctrl_c_before_the_first_step_saves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "run"
    _interrupt_after(monkeypatch, -1)  # the compiling call
    with pytest.raises(train.TrainingInterrupted) as interrupt:
        train.fit(_config(out_dir=str(out)))
    assert (interrupt.value.epoch, interrupt.value.step, interrupt.value.checkpoint) == (1, 0, None)
    assert not out.exists() or os.listdir(out) == []


def test_cli_sigint_exits_130_with_the_resume_command_and_resume_is_exact(tmp_path, monkeypatch, capsys, straight):
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT does not raise KeyboardInterrupt in this process")
    out = tmp_path / "run"
    _interrupt_after(monkeypatch, 5, sigint=True)
    assert main(["train", "--epochs", str(EPOCHS), *SMALL_ARGS, "--out", str(out), "--quiet"]) == 130
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert "interrupted in epoch 2 after step 5." in err
    assert f"saved {train.checkpoint_path(out)}; continue with: jaxconv train --resume {out}" in err

    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "note: starting a new run" not in printed
    assert f"after {EPOCHS} epochs, {EPOCHS * STEPS_PER_EPOCH} steps" in printed
    params, opt_state, _ = _load_checkpoint(out)
    _assert_trees_equal(params, straight.params)
    _assert_trees_equal(opt_state, straight.opt_state)


def test_sigint_while_saving_is_held_back_until_the_checkpoint_is_complete(tmp_path, monkeypatch, straight):
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT does not raise KeyboardInterrupt in this process")
    original_save = _checkpoint.save
    saves = []

    def save_with_sigint(*args, **kwargs):
        saves.append(None)
        if len(saves) == 1:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of writing the first checkpoint
        original_save(*args, **kwargs)

    monkeypatch.setattr(_checkpoint, "save", save_with_sigint)
    out = tmp_path / "run"
    config = _config(out_dir=str(out))
    with pytest.raises(train.TrainingInterrupted) as interrupt:
        train.fit(config)
    monkeypatch.undo()
    assert (interrupt.value.epoch, interrupt.value.step) == (2, STEPS_PER_EPOCH)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler was put back
    _, _, metadata = _load_checkpoint(out, config)
    assert metadata["step"] == STEPS_PER_EPOCH and len(metadata["history"]) == 1
    assert _stray_files(out) == []
    resumed = train.fit(config, resume=True)
    _assert_trees_equal(resumed.params, straight.params)


def test_a_second_ctrl_c_while_saving_after_the_first_still_reports_the_checkpoint(tmp_path, monkeypatch, capsys):
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT does not raise KeyboardInterrupt in this process")
    original_save = _checkpoint.save

    def save_with_sigint(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # the impatient second Ctrl-C, during the save the first one asked for
        original_save(*args, **kwargs)

    _interrupt_after(monkeypatch, 2)
    monkeypatch.setattr(_checkpoint, "save", save_with_sigint)
    out = tmp_path / "run"
    assert main(["train", "--epochs", str(EPOCHS), *SMALL_ARGS, "--out", str(out), "--quiet"]) == 130
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert "interrupted in epoch 1 after step 2." in err
    assert f"continue with: jaxconv train --resume {out}" in err
    assert _load_checkpoint(out)[2]["step"] == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_interrupted_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "checkpoint.npz"
    _checkpoint.atomic_write(path, lambda file: file.write(b"complete old file"))

    def partial_write(file):
        file.write(b"half of a new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _checkpoint.atomic_write(path, partial_write)
    assert path.read_bytes() == b"complete old file"
    assert os.listdir(tmp_path) == ["checkpoint.npz"]


# ---------------------------------------------------------------------------------------------------------------
# --data FILE.npz.


def _write_npz(path, **changes):
    rng = np.random.default_rng(0)
    arrays = dict(
        x_train=rng.integers(0, 256, (64, 8, 8), dtype=np.uint8),
        y_train=np.arange(64) % 10,
        x_test=rng.integers(0, 256, (16, 8, 8), dtype=np.uint8),
        y_test=np.arange(16) % 10,
    )
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(path, **arrays)
    return path


def test_cli_trains_on_an_npz(tmp_path, capsys):
    path = str(_write_npz(tmp_path / "mine.npz"))
    out = tmp_path / "run"
    args = ["train", "--data", path, "--epochs", "1", "--batch-size", "16", "--channels", "4", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "data: mine, 64 train / 16 test images of shape (1, 8, 8), 10 classes" in printed
    metrics = json.loads((out / train.METRICS).read_text())
    assert metrics["config"]["data"] == path and len(metrics["history"]) == 1
    config = train.TrainConfig(data=path, epochs=1, batch_size=16, channels=(4,))
    expected = train.fit(config, data=data.load_npz(path))
    params, _, _ = _load_checkpoint(out)
    _assert_trees_equal(params, expected.params)


MALFORMED_NPZ = [
    ("missing", dict(y_test=None), r"missing key\(s\) y_test"),
    ("rank", dict(x_train=np.zeros(64)), r"x_train must have shape \(N, H, W\) or \(N, C, H, W\)"),
    ("count", dict(y_train=np.arange(63) % 10), r"y_train has 63 labels but x_train has 64 images"),
    ("labels", dict(y_test=np.zeros(16)), r"y_test must hold integer class labels"),
    ("object", dict(x_test=np.array([None] * 16, dtype=object)), r"x_test .* without pickle"),
]


@pytest.mark.parametrize("name, changes, message", MALFORMED_NPZ, ids=[case[0] for case in MALFORMED_NPZ])
def test_cli_rejects_a_malformed_npz_naming_the_key(tmp_path, capsys, name, changes, message):
    path = _write_npz(tmp_path / f"{name}.npz", **changes)
    assert main(["train", "--data", str(path), "--epochs", "1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxconv train: error: ")
    assert err.count("\n") == 1, err  # one line, no traceback
    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()


def test_cli_rejects_a_missing_npz(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "absent.npz"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxconv train: error: ") and "absent.npz" in err


# ---------------------------------------------------------------------------------------------------------------
# Refusals.


def test_resume_refuses_options_that_would_not_continue_the_same_run(tmp_path, capsys):
    out = str(tmp_path / "run")
    train.fit(_config(epochs=1, out_dir=out))
    for change in (dict(seed=1), dict(batch_size=8), dict(optimizer="sgd"), dict(max_test=16)):
        (name,) = change
        with pytest.raises(ValueError, match=rf"cannot resume with a different {name} \("):
            train.fit(_config(out_dir=out, **change), resume=True)
    assert main(["train", "--resume", out, "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxconv train: error: cannot resume with a different seed (0 -> 1)")
    # The refused attempts left the checkpoint alone.
    assert _checkpoint.read_metadata(train.checkpoint_path(out))["step"] == STEPS_PER_EPOCH


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    expected = f"no checkpoint to resume in {empty}"
    with pytest.raises(FileNotFoundError, match=expected):
        train.fit(_config(out_dir=str(empty)), resume=True)
    with pytest.raises(ValueError, match="resume needs config.out_dir"):
        train.fit(_config(), resume=True)
    assert main(["train", "--resume", str(empty)]) == 2
    assert capsys.readouterr().err.startswith(f"jaxconv train: error: {expected}")
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / train.CHECKPOINT).write_bytes(b"not a checkpoint")
    assert main(["train", "--resume", str(garbage)]) == 2
    assert "is not a jaxconv checkpoint" in capsys.readouterr().err


def test_a_new_run_never_replaces_a_saved_one_unless_asked(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    args = ["train", "--epochs", "1", *SMALL_ARGS, "--out", str(out), "--quiet"]
    assert main(args) == 0
    saved = (out / train.CHECKPOINT).read_bytes()
    capsys.readouterr()

    with pytest.raises(FileExistsError, match=f"{out} holds the checkpoint of an earlier run"):
        train.fit(_config(epochs=1, seed=1, out_dir=str(out)))
    assert main([*args, "--seed", "1"]) == 2
    assert f"--resume {out}" in capsys.readouterr().err
    assert (out / train.CHECKPOINT).read_bytes() == saved

    assert main(["train", "--resume", str(out), "--overwrite"]) == 2
    assert "give one of them" in capsys.readouterr().err

    # An overwriting run that fails its own checks removes nothing.
    with pytest.raises(ValueError, match="batch_size 128 is larger"):
        train.fit(_config(epochs=1, batch_size=128, out_dir=str(out)), overwrite=True)
    assert (out / train.CHECKPOINT).read_bytes() == saved

    # Overwriting removes the old run's files first: an overwriting run stopped early leaves none of them behind.
    _interrupt_after(monkeypatch, -1)
    with pytest.raises(train.TrainingInterrupted):
        train.fit(_config(epochs=1, seed=1, out_dir=str(out)), overwrite=True)
    monkeypatch.undo()
    assert os.listdir(out) == []

    assert main(["train", "--epochs", "1", *SMALL_ARGS, "--out", str(out), "--quiet"]) == 0
    assert main([*args, "--seed", "1", "--overwrite"]) == 0
    assert "is replaced by a new one" in capsys.readouterr().out
    assert (out / train.CHECKPOINT).read_bytes() != saved
    assert train.read_config(out).seed == 1


def test_the_default_output_directory_moves_on_past_earlier_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["train", "--epochs", "1", *SMALL_ARGS, "--quiet"]
    assert main(args) == 0
    first = (tmp_path / "runs" / "digits" / train.CHECKPOINT).read_bytes()
    assert main([*args, "--seed", "1"]) == 0
    assert main([*args, "--seed", "2"]) == 0
    assert (tmp_path / "runs" / "digits" / train.CHECKPOINT).read_bytes() == first
    seeds = [train.read_config(tmp_path / "runs" / name).seed for name in ("digits", "digits-2", "digits-3")]
    assert seeds == [0, 1, 2]
    assert "wrote runs/digits-3/metrics.json" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------------
# TrainConfig.

BAD_CONFIGS = [
    (dict(optimizer="rmsprop"), "optimizer must be one of"),
    (dict(conv="fft"), "conv must be one of"),
    (dict(learning_rate=0.0), "learning_rate must be a positive number"),
    (dict(learning_rate=-1e-3), "learning_rate must be a positive number"),
    (dict(learning_rate=float("nan")), "learning_rate must be a positive number"),
    (dict(learning_rate="0.1"), "learning_rate must be a positive number"),
    (dict(epochs=0), "epochs must be >= 1"),
    (dict(epochs=1.5), "epochs must be an int"),
    (dict(epochs=True), "epochs must be an int"),
    (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(seed="0"), "seed must be an int"),
    (dict(channels=()), "channels must name at least one conv stage"),
    (dict(channels=(4, 0)), "channels must be >= 1"),
    (dict(max_train=0), "max_train must be >= 1"),
    (dict(test_fraction=1.0), r"test_fraction must be in \(0, 1\)"),
]


@pytest.mark.parametrize("changes, message", BAD_CONFIGS, ids=[next(iter(case[0])) for case in BAD_CONFIGS])
def test_train_config_rejects_bad_values_naming_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        train.TrainConfig(**changes)


def test_train_config_errors_through_the_cli_and_fit(tmp_path, capsys):
    assert main(["train", "--epochs", "0", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == "jaxconv train: error: epochs must be >= 1, got 0\n"
    assert main(["train", "--lr", "-1", "--out", str(tmp_path / "run")]) == 2
    assert "learning_rate must be a positive number" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--optimizer", "rmsprop"])  # argparse's choices
    assert exit_info.value.code == 2
    assert "invalid choice: 'rmsprop'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        train.TrainConfig.from_dict({"epochs": 1, "momentum": 0.9})
    with pytest.raises(ValueError, match="batch_size 100 is larger than the 64 training examples"):
        train.fit(train.TrainConfig(batch_size=100, channels=(4,)), data=data.synthetic(num_train=64))
    assert not (tmp_path / "run").exists()
