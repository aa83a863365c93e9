"""Tests for jaxconv.train.cli: the ``jaxconv train`` command end to end, its refusals and messages."""

import argparse
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
from _train_helpers import (
    EPOCHS,
    HISTORY_KEYS,
    PNG_SIGNATURE,
    REPO,
    SMALL_ARGS,
    STEPS_PER_EPOCH,
    assert_trees_equal,
    interrupt_after,
    load_checkpoint,
    small_config,
    straight_run,
    stray_files,
    write_npz,
)

from jaxconv.cli import main
from jaxconv.train import checkpoint, cli, data, rundir, steps
from jaxconv.train.config import RESUMABLE_CHANGES, TrainConfig, resumable_options
from jaxconv.train.loop import TrainingInterrupted, fit


def test_cli_one_epoch_writes_metrics_curves_checkpoint_and_summary(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", *SMALL_ARGS, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    config = small_config(epochs=1, out_dir=str(out))

    metrics = json.loads((out / rundir.METRICS).read_text())
    assert TrainConfig.from_dict(metrics["config"]) == config
    (entry,) = metrics["history"]
    assert set(entry) == HISTORY_KEYS
    assert entry["epoch"] == 1 and entry["steps"] == STEPS_PER_EPOCH and entry["step"] == STEPS_PER_EPOCH
    for key in ("train_accuracy", "test_accuracy"):
        assert 0.0 <= entry[key] <= 1.0
    for key in ("train_loss", "test_loss", "train_time_s", "steps_per_s", "eval_time_s"):
        assert np.isfinite(entry[key]) and entry[key] > 0

    assert (out / rundir.CURVES).read_bytes().startswith(PNG_SIGNATURE)
    assert stray_files(out) == []

    # The checkpoint holds what the same run through the Python API ends with.
    params, opt_state, metadata = load_checkpoint(out)
    assert metadata["step"] == STEPS_PER_EPOCH and metadata["epoch"] == 1
    assert metadata["history"] == metrics["history"]
    result = fit(dataclasses.replace(config, out_dir=None))
    assert_trees_equal(params, result.params)
    assert_trees_equal(opt_state, result.opt_state)

    assert printed.startswith("data: digits, 64 train / 32 test images of 8x8, 1 channel; 10 classes\n")
    assert "epoch 1/1: train loss" in printed
    summary = f"test accuracy {entry['test_accuracy']:.2%} (loss {entry['test_loss']:.4f}) after 1 epoch, 4 steps"
    assert summary in printed and "1 epochs" not in printed
    assert f"wrote {out / rundir.METRICS}" in printed


def test_python_m_jaxconv_train_help():
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    completed = subprocess.run(
        [sys.executable, "-m", "jaxconv", "train", "--help"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: jaxconv train")
    for flag in ("--data", "--layout", "--conv", "--optimizer", "--lr", "--epochs", "--resume", "--out", "--quiet"):
        assert flag in completed.stdout


def test_config_from_args_defaults_out_dir_and_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # what the working directory holds (an earlier runs/digits) must not matter
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    config, resume = cli.config_from_args(parser.parse_args([]))
    assert not resume and config == TrainConfig(out_dir=os.path.join("runs", "digits"))
    config, _ = cli.config_from_args(parser.parse_args(["--data", "some/where/mine.npz", "--lr", "0.1"]))
    assert config.out_dir == os.path.join("runs", "mine") and config.learning_rate == 0.1
    assert config.data == str(tmp_path / "some" / "where" / "mine.npz")  # absolute: resumable from anywhere
    config, _ = cli.config_from_args(parser.parse_args(["--channels", "3", "5", "--out", str(tmp_path)]))
    assert config.channels == (3, 5) and config.out_dir == str(tmp_path)
    with pytest.raises(ValueError, match="give --out only without --resume"):
        cli.config_from_args(parser.parse_args(["--resume", str(tmp_path / "a"), "--out", str(tmp_path / "b")]))


# ---------------------------------------------------------------------------------------------------------------
# Ctrl-C through the command.


def test_cli_sigint_exits_130_with_the_resume_command_and_resume_is_exact(tmp_path, monkeypatch, capsys):
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT does not raise KeyboardInterrupt in this process")
    straight = straight_run()
    out = tmp_path / "run"
    interrupt_after(monkeypatch, 5, sigint=True)
    assert main(["train", "--epochs", str(EPOCHS), *SMALL_ARGS, "--out", str(out), "--quiet"]) == 130
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert "interrupted in epoch 2 after step 5." in err
    assert f"saved {rundir.checkpoint_path(out)}; continue with: jaxconv train --resume {out}" in err

    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "note: starting a new run" not in printed
    assert f"after {EPOCHS} epochs, {EPOCHS * STEPS_PER_EPOCH} steps" in printed
    params, opt_state, _ = load_checkpoint(out)
    assert_trees_equal(params, straight.params)
    assert_trees_equal(opt_state, straight.opt_state)


def test_a_second_ctrl_c_while_saving_after_the_first_still_reports_the_checkpoint(tmp_path, monkeypatch, capsys):
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT does not raise KeyboardInterrupt in this process")
    original_save = checkpoint.save

    def save_with_sigint(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # the impatient second Ctrl-C, during the save the first one asked for
        original_save(*args, **kwargs)

    interrupt_after(monkeypatch, 2)
    monkeypatch.setattr(checkpoint, "save", save_with_sigint)
    out = tmp_path / "run"
    assert main(["train", "--epochs", str(EPOCHS), *SMALL_ARGS, "--out", str(out), "--quiet"]) == 130
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert "interrupted in epoch 1 after step 2." in err
    assert f"continue with: jaxconv train --resume {out}" in err
    assert load_checkpoint(out)[2]["step"] == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---------------------------------------------------------------------------------------------------------------
# --data FILE.npz.


def test_cli_trains_on_an_npz(tmp_path, capsys):
    path = str(write_npz(tmp_path / "mine.npz"))
    out = tmp_path / "run"
    args = ["train", "--data", path, "--epochs", "1", "--batch-size", "16", "--channels", "4", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert (
        printed.splitlines()[0]
        == "data: mine, 64 train / 16 test images of 8x8, 1 channel, read as (N, H, W); 10 classes"
    )
    metrics = json.loads((out / rundir.METRICS).read_text())
    assert metrics["config"]["data"] == path and len(metrics["history"]) == 1
    config = TrainConfig(data=path, epochs=1, batch_size=16, channels=(4,))
    expected = fit(config, data=data.load_npz(path))
    params, _, _ = load_checkpoint(out)
    assert_trees_equal(params, expected.params)


MALFORMED_NPZ = [
    ("missing", dict(y_test=None), r"missing key\(s\) y_test"),
    ("rank", dict(x_train=np.zeros(64)), r"x_train must have shape \(N, H, W\), \(N, C, H, W\) or \(N, H, W, C\)"),
    (
        "ambiguous",
        dict(x_train=np.zeros((64, 3, 8, 3)), x_test=np.zeros((16, 3, 8, 3))),
        r"x_train has shape \(64, 3, 8, 3\), which reads two ways: channels-first \(N, C, H, W\), 3 channels of 8x3, "
        r"or channels-last \(N, H, W, C\), 3 channels of 3x8; pass --layout NCHW or --layout NHWC",
    ),
    ("count", dict(y_train=np.arange(63) % 10), r"y_train has 63 labels but x_train has 64 images"),
    ("labels", dict(y_test=np.zeros(16)), r"y_test must hold integer class labels"),
    ("object", dict(x_test=np.array([None] * 16, dtype=object)), r"x_test .* without pickle"),
    (
        "uint8_and_float",
        dict(x_test=np.random.default_rng(1).random((16, 8, 8), np.float32)),
        r"x_train has dtype uint8 but x_test float32: uint8 images are scaled by 1/255 and others are not",
    ),
    (
        "huge_label",
        dict(y_train=np.where(np.arange(64) == 5, 2**32 + 1, np.arange(64) % 10)),
        r"y_train has a label of 4294967297: .* a model of 4294967298 classes is refused \(at most 65536\)",
    ),
    (
        "uint64_label",
        dict(y_train=np.where(np.arange(64) == 5, 2**63 + 5, np.arange(64) % 10).astype(np.uint64)),
        r"y_train has a label of 9223372036854775813",
    ),
    ("no_channels", dict(x_train=np.zeros((64, 0, 8, 8)), x_test=np.zeros((16, 0, 8, 8))), r"empty dimension"),
    (
        "tiny_images",
        dict(x_train=np.zeros((64, 3, 3), np.uint8), x_test=np.zeros((16, 3, 3), np.uint8)),
        r"images of 3x3 are too small for 2 conv stages \(channels 16 32\): each stage's 2x2 max pool halves",
    ),
]


@pytest.mark.parametrize("name, changes, message", MALFORMED_NPZ, ids=[case[0] for case in MALFORMED_NPZ])
def test_cli_rejects_a_malformed_npz_naming_the_key(tmp_path, capsys, name, changes, message):
    path = write_npz(tmp_path / f"{name}.npz", **changes)
    assert main(["train", "--data", str(path), "--epochs", "1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxconv train: error: ")
    assert err.count("\n") == 1, err  # one line, no traceback
    assert re.search(message, err), err
    assert not (tmp_path / "run").exists()


def test_cli_refuses_more_pooling_stages_than_the_images_allow(tmp_path, capsys):
    assert main(["train", "--channels", "4", "4", "4", "4", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == (
        "jaxconv train: error: images of 8x8 are too small for 4 conv stages (channels 4 4 4 4): each stage's "
        "2x2 max pool halves H and W, so 4 stages need images of at least 16x16; use fewer stages or larger images\n"
    )
    assert not (tmp_path / "run").exists()


def test_a_run_on_a_relative_data_path_resumes_from_another_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "elsewhere").mkdir()
    absolute = str(write_npz(tmp_path / "data" / "mine.npz"))
    out = str(tmp_path / "run")
    monkeypatch.chdir(tmp_path / "data")
    assert main(["train", "--data", "mine.npz", "--epochs", "1", *SMALL_ARGS, "--out", out, "--quiet"]) == 0
    assert rundir.read_config(out).data == absolute
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["train", "--resume", out, "--epochs", "2", "--quiet"]) == 0
    # The same file, however it is named, is the same data.
    assert main(["train", "--resume", out, "--epochs", "3", "--data", absolute, "--quiet"]) == 0
    assert main(["train", "--resume", out, "--epochs", "4", "--data", "../data/mine.npz", "--quiet"]) == 0
    assert len(rundir.read_config(out).data) and load_checkpoint(out)[2]["epoch"] == 4
    capsys.readouterr()
    write_npz(tmp_path / "elsewhere" / "mine.npz")
    assert main(["train", "--resume", out, "--epochs", "5", "--data", "mine.npz", "--quiet"]) == 2
    assert "cannot resume with a different --data" in capsys.readouterr().err


def _channels_last_npz(path, shape, **changes):
    rng = np.random.default_rng(0)
    arrays = dict(
        x_train=rng.integers(0, 256, (64, *shape), dtype=np.uint8),
        y_train=np.arange(64) % 10,
        x_test=rng.integers(0, 256, (16, *shape), dtype=np.uint8),
        y_test=np.arange(16) % 10,
    )
    np.savez(path, **{**arrays, **changes})
    return str(path)


# (64, 32, 32, 3) with 2 stages was refused as "images of 32x3 are too small"; (N, 16, 16, 3) with 1 stage trained,
# silently, on 16 channels of 16x3.
@pytest.mark.parametrize("shape, channels", [((32, 32, 3), ["4", "4"]), ((16, 16, 3), ["4"])])
def test_cli_reads_channels_last_images_and_says_so_first(tmp_path, capsys, shape, channels):
    path = _channels_last_npz(tmp_path / "rgb.npz", shape)
    out = tmp_path / "run"
    args = ["train", "--data", path, "--epochs", "1", "--batch-size", "16", "--channels", *channels, "--out", str(out)]
    assert main(args) == 0
    first = capsys.readouterr().out.splitlines()[0]
    images = f"64 train / 16 test images of {shape[0]}x{shape[1]}, 3 channels"
    assert first == f"data: rgb, {images}, read as channels-last (N, H, W, C); 10 classes"
    # The saved model takes 3 channels of H x W: loading it into that template checks every shape.
    config = rundir.read_config(out)
    params, opt_state, key = steps.init_state(config, steps.build_model(config, 10), (3, *shape[:2]))
    tree, _ = checkpoint.load(rundir.checkpoint_path(out), {"params": params, "opt_state": opt_state, "key": key})
    assert tree["params"][0]["w"].shape == (4, 3, 3, 3)


def test_cli_layout_settles_an_ambiguous_shape(tmp_path, capsys):
    path = _channels_last_npz(tmp_path / "odd.npz", (3, 8, 3))
    args = ["train", "--data", path, "--epochs", "1", *SMALL_ARGS]
    assert main([*args, "--out", str(tmp_path / "auto")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "reads two ways" in err and "pass --layout NCHW or --layout NHWC" in err
    assert not (tmp_path / "auto").exists()
    readings = {"NCHW": "8x3, 3 channels, read as channels-first", "NHWC": "3x8, 3 channels, read as channels-last"}
    for layout, read_as in readings.items():
        assert main([*args, "--layout", layout, "--out", str(tmp_path / layout)]) == 0
        assert read_as in capsys.readouterr().out.splitlines()[0]
        assert rundir.read_config(tmp_path / layout).layout == layout
    # The layout is part of the run: a resume may not change it.
    assert main(["train", "--resume", str(tmp_path / "NCHW"), "--layout", "NHWC", "--epochs", "2"]) == 2
    assert "cannot resume with a different --layout ('NCHW' -> 'NHWC')" in capsys.readouterr().err


def test_cli_warns_of_a_class_with_no_training_image_naming_labels_from_1(tmp_path, capsys):
    path = write_npz(tmp_path / "one_based.npz", y_train=np.arange(64) % 10 + 1, y_test=np.arange(16) % 10 + 1)
    args = ["train", "--data", str(path), "--epochs", "1", "--batch-size", "16", "--channels", "4"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    first = "data: one_based, 64 train / 16 test images of 8x8, 1 channel, read as (N, H, W); 11 classes"
    assert captured.out.splitlines()[0] == first
    (warning,) = [line for line in captured.err.splitlines() if "warning" in line]
    assert warning.startswith("jaxconv train: warning: y_train has no image of class 0 (of 11 classes, 0..10)")
    assert "the labels start at 1" in warning and "subtract 1 from y_train and y_test" in warning
    # A warning, not an error: it trains; and --quiet does not hide it.
    assert main([*args, "--quiet", "--out", str(tmp_path / "quiet")]) == 0
    assert "jaxconv train: warning: y_train has no image of class 0" in capsys.readouterr().err


def test_cli_rejects_a_missing_npz(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "absent.npz"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxconv train: error: ") and "absent.npz" in err
    assert err == f"jaxconv train: error: --data {tmp_path / 'absent.npz'}: no such file\n"


def test_cli_names_a_data_file_that_is_not_a_zip(tmp_path, capsys):
    path = tmp_path / "d.npz"
    path.write_text("not a zip\n")
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == f"jaxconv train: error: {path} is not an .npz archive: not a zip file, the format np.savez writes\n"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("option", ["--data", "--out", "--resume"])
def test_cli_refuses_an_empty_path_quoting_it(tmp_path, monkeypatch, capsys, option):
    monkeypatch.chdir(tmp_path)  # what "" would have meant
    assert main(["train", option, "", *SMALL_ARGS]) == 2
    kind = "file" if option == "--data" else "folder"
    assert capsys.readouterr().err == f"jaxconv train: error: {option} '' is an empty path: give a {kind}\n"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("seed", ["-3", str(2**32)])
def test_cli_refuses_a_seed_out_of_range_for_every_data_source(tmp_path, capsys, seed):
    npz = str(write_npz(tmp_path / "mine.npz"))
    for data_args in ([], ["--data", npz]):
        assert main(["train", "--seed", seed, *data_args, *SMALL_ARGS, "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("jaxconv train: error: --seed must be ") and err.count("\n") == 1, err
        assert "random_state" not in err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------------------------
# Refusals.


def test_resume_refuses_options_that_would_not_continue_the_same_run(tmp_path, capsys):
    out = str(tmp_path / "run")
    fit(small_config(epochs=1, out_dir=out))
    for change in (dict(seed=1), dict(batch_size=8), dict(optimizer="sgd"), dict(max_test=16)):
        (name,) = change
        with pytest.raises(ValueError, match=rf"cannot resume with a different {name} \("):
            fit(small_config(out_dir=out, **change), resume=True)
    assert main(["train", "--resume", out, "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxconv train: error: cannot resume with a different --seed (0 -> 1): only --epochs, ")
    assert "--devices may change" in err and err.count("\n") == 1
    # The refused attempts left the checkpoint alone.
    assert checkpoint.read_metadata(rundir.checkpoint_path(out))["step"] == STEPS_PER_EPOCH


# Every option of the run, changed on resume (what a resume does with each is checked below).
RESUME_CHANGES = {
    "data": ["--data", "other.npz"],
    "layout": ["--layout", "NHWC"],
    "conv": ["--conv", "lax"],
    "optimizer": ["--optimizer", "sgd"],
    "learning_rate": ["--lr", "0.1"],
    "epochs": ["--epochs", "30"],
    "batch_size": ["--batch-size", "8"],
    "seed": ["--seed", "1"],
    "channels": ["--channels", "8"],
    "test_fraction": ["--test-fraction", "0.3"],
    "max_train": ["--max-train", "10"],
    "max_test": ["--max-test", "10"],
    "dtype": ["--dtype", "bfloat16"],
}


def test_resume_help_and_refusal_state_the_one_list_of_options_that_may_change(tmp_path, monkeypatch):
    listed = "--epochs, --conv, --dtype and --devices"
    assert resumable_options(cli._flag) == listed  # the one source of both texts
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert f"only {listed} may differ from that run" in " ".join(parser.format_help().split())
    assert set(RESUME_CHANGES) == set(cli._CLI_OPTIONS)  # a new option must be classed here too
    saved = TrainConfig(out_dir=str(tmp_path))
    monkeypatch.setattr(rundir, "read_config", lambda out_dir: saved)
    for option, change in RESUME_CHANGES.items():
        args = parser.parse_args(["--resume", str(tmp_path), *change])
        if option in RESUMABLE_CHANGES:
            config, resume = cli.config_from_args(args)
            assert resume and config != saved, option
            continue
        with pytest.raises(ValueError) as error:
            cli.config_from_args(args)
        message = str(error.value)
        assert message.startswith(f"cannot resume with a different {change[0]} ("), message
        assert f": only {listed} may change; start a new run" in message
    # --devices is fit's argument, not part of the saved run: nothing to refuse (test_train_parallel resumes 4 -> 1).
    assert cli.config_from_args(parser.parse_args(["--resume", str(tmp_path), "--devices", "2"])) == (saved, True)


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    expected = f"no checkpoint to resume in {empty}"
    with pytest.raises(FileNotFoundError, match=expected):
        fit(small_config(out_dir=str(empty)), resume=True)
    with pytest.raises(ValueError, match="resume needs config.out_dir"):
        fit(small_config(), resume=True)
    assert main(["train", "--resume", str(empty)]) == 2
    assert capsys.readouterr().err.startswith(f"jaxconv train: error: {expected}")
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / rundir.CHECKPOINT).write_bytes(b"not a checkpoint")
    assert main(["train", "--resume", str(garbage)]) == 2
    assert "is not a jaxconv checkpoint" in capsys.readouterr().err


def test_a_new_run_never_replaces_a_saved_one_unless_asked(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    args = ["train", "--epochs", "1", *SMALL_ARGS, "--out", str(out), "--quiet"]
    assert main(args) == 0
    saved = (out / rundir.CHECKPOINT).read_bytes()
    capsys.readouterr()

    with pytest.raises(FileExistsError, match=f"{out} holds the checkpoint of an earlier run"):
        fit(small_config(epochs=1, seed=1, out_dir=str(out)))
    assert main([*args, "--seed", "1"]) == 2
    err = capsys.readouterr().err
    assert f"--resume {out}" in err
    assert err == (
        f"jaxconv train: error: {out} holds the checkpoint of an earlier run: continue it with --resume {out}, "
        "start over with --overwrite, or choose another --out folder\n"
    )  # the command's options only; the Python API's message names its keywords
    with pytest.raises(FileExistsError, match="continue it with resume=True, start over with overwrite=True"):
        fit(small_config(epochs=1, seed=1, out_dir=str(out)))
    assert (out / rundir.CHECKPOINT).read_bytes() == saved

    assert main(["train", "--resume", str(out), "--overwrite"]) == 2
    assert "give one of them" in capsys.readouterr().err

    # An overwriting run that fails its own checks removes nothing.
    with pytest.raises(ValueError, match="batch_size 128 is larger"):
        fit(small_config(epochs=1, batch_size=128, out_dir=str(out)), overwrite=True)
    assert (out / rundir.CHECKPOINT).read_bytes() == saved

    # An overwriting run stopped before its first checkpoint leaves the saved run as it was.
    interrupt_after(monkeypatch, -1)
    with pytest.raises(TrainingInterrupted):
        fit(small_config(epochs=1, seed=1, out_dir=str(out)), overwrite=True)
    monkeypatch.undo()
    assert (out / rundir.CHECKPOINT).read_bytes() == saved and stray_files(out) == []

    assert main([*args, "--seed", "1", "--overwrite"]) == 0
    assert "is replaced by a new one" in capsys.readouterr().out
    assert (out / rundir.CHECKPOINT).read_bytes() != saved
    assert rundir.read_config(out).seed == 1


@pytest.mark.parametrize("name", [rundir.CHECKPOINT, rundir.METRICS, rundir.CURVES])
@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_where_an_output_file_goes_is_refused_before_training(tmp_path, capsys, name, overwrite):
    (tmp_path / "run" / name).mkdir(parents=True)
    args = ["train", *SMALL_ARGS, "--out", str(tmp_path / "run"), "--quiet", *(["--overwrite"] if overwrite else [])]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.err == f"jaxconv train: error: cannot write {tmp_path / 'run' / name}: it is a folder, not a file\n"
    assert "epoch" not in captured.out and "replaced" not in captured.out
    assert os.listdir(tmp_path / "run") == [name]


def test_the_default_output_directory_moves_on_past_earlier_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["train", "--epochs", "1", *SMALL_ARGS, "--quiet"]
    assert main(args) == 0
    first = (tmp_path / "runs" / "digits" / rundir.CHECKPOINT).read_bytes()
    assert main([*args, "--seed", "1"]) == 0
    assert main([*args, "--seed", "2"]) == 0
    assert (tmp_path / "runs" / "digits" / rundir.CHECKPOINT).read_bytes() == first
    seeds = [rundir.read_config(tmp_path / "runs" / name).seed for name in ("digits", "digits-2", "digits-3")]
    assert seeds == [0, 1, 2]
    assert "wrote runs/digits-3/metrics.json" in capsys.readouterr().out


def test_device_and_process_options_are_checked_before_training(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", "--devices", "64", *SMALL_ARGS, "--out", out]) == 2
    assert capsys.readouterr().err.startswith("jaxconv train: error: devices is 64 but this process has ")
    assert main(["train", "--devices", "0", *SMALL_ARGS, "--out", out]) == 2
    assert capsys.readouterr().err == "jaxconv train: error: devices must be >= 1, got 0\n"
    assert main(["train", "--num-processes", "2", "--out", out]) == 2
    assert capsys.readouterr().err == (
        "jaxconv train: error: a multi-process run needs all of --coordinator-address, --num-processes, "
        "--process-id; missing --coordinator-address, --process-id\n"
    )
    assert not (tmp_path / "run").exists()


def test_train_config_errors_through_the_cli_name_the_flag(tmp_path, capsys):
    # TrainConfig names its fields; the command line names the flag the user typed.
    for args, message in (
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--lr", "-1"], "--lr must be > 0, got -1.0"),
        (["--test-fraction", "2"], "--test-fraction must be in (0, 1), got 2.0"),
        (["--max-train", "0"], "--max-train must be >= 1, got 0"),
        (["--channels", "4", "0"], "--channels must be >= 1, got 0"),
    ):
        assert main(["train", *args, "--out", str(tmp_path / "run")]) == 2
        assert capsys.readouterr().err == f"jaxconv train: error: {message}\n"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--optimizer", "rmsprop"])  # argparse's choices
    assert exit_info.value.code == 2
    assert "invalid choice: 'rmsprop'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
