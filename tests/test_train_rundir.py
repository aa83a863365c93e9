"""Tests for jaxconv.train.rundir: what a run's folder holds at every moment, and damaged or unusable folders."""

import json
import os
import re
import zipfile

import numpy as np
import pytest
from _train_helpers import SMALL_ARGS, interrupt_after, load_checkpoint, stray_files

from jaxconv.cli import main
from jaxconv.train import rundir


def _snapshot(out_dir):
    """Each file's bytes and modification time: what must not change when nothing is written."""
    return {
        name: (path.read_bytes(), path.stat().st_mtime_ns) for name in os.listdir(out_dir) if (path := out_dir / name)
    }


@pytest.fixture
def saved_run(tmp_path):
    """A finished 2-epoch run in tmp_path/run."""
    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", *SMALL_ARGS, "--out", str(out), "--quiet"]) == 0
    return out


# ---------------------------------------------------------------------------------------------------------------
# --overwrite keeps the saved run until the new one has saved.


def test_overwrite_interrupted_before_its_first_checkpoint_leaves_the_saved_run(saved_run, monkeypatch, capsys):
    before = _snapshot(saved_run)
    interrupt_after(monkeypatch, -1)  # Ctrl-C while the new run compiles
    args = ["train", "--epochs", "30", "--seed", "1", *SMALL_ARGS, "--out", str(saved_run), "--quiet"]
    assert main([*args, "--overwrite"]) == 130
    monkeypatch.undo()
    assert "nothing saved" in capsys.readouterr().err
    assert _snapshot(saved_run) == before
    assert main(["train", "--resume", str(saved_run), "--quiet"]) == 0  # still a whole, resumable run

    interrupt_after(monkeypatch, 2)  # now after two steps of the new run: its checkpoint replaces the old one
    assert main([*args, "--overwrite"]) == 130
    monkeypatch.undo()
    params, _, metadata = load_checkpoint(saved_run)
    assert metadata["config"]["seed"] == 1 and metadata["step"] == 2 and metadata["history"] == []
    assert json.loads((saved_run / rundir.METRICS).read_text())["history"] == []
    assert not (saved_run / rundir.CURVES).exists()  # the old run's curves went with it
    assert stray_files(saved_run) == []


# ---------------------------------------------------------------------------------------------------------------
# Damaged checkpoints: one line naming the file and the damage, exit status 2, the file untouched.


def _rewrite_header(path, change):
    """Rewrites the checkpoint's JSON header through ``change(header) -> header``, keeping every array."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["__metadata__"] = np.array(json.dumps(change(json.loads(str(arrays["__metadata__"][()])))))
    np.savez(path, **arrays)


def _flip_a_byte_of_a_leaf(path):
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("leaf_00001.npy")  # the first conv's filters
    data = bytearray(path.read_bytes())
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + 128 + 8  # past the .npy header
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _metadata(change):
    def on_header(header):
        change(header["metadata"])
        return header

    return lambda path: _rewrite_header(path, on_header)


DAMAGE = [
    ("truncated", lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]), r"File is not a zip"),
    ("flipped_bytes", _flip_a_byte_of_a_leaf, r"is not a jaxconv checkpoint or is damaged \(Bad CRC-32"),
    ("header_list", lambda path: _rewrite_header(path, lambda header: [header]), r"header is a JSON list"),
    ("no_leaves", lambda path: _rewrite_header(path, lambda h: {**h, "leaves": None}), r"'leaves' is not a list"),
    ("no_config", _metadata(lambda m: m.pop("config")), r"its metadata has no config"),
    ("bad_config", _metadata(lambda m: m["config"].update(epochs="x")), r"saved config is not valid \(epochs"),
    ("config_list", _metadata(lambda m: m.update(config=[1])), r"saved config is not valid"),
    ("no_step", _metadata(lambda m: m.pop("step")), r"its metadata has no 'step'"),
    ("step_10000", _metadata(lambda m: m.update(step=10000)), r"step 10000 is not a step of epoch 3"),
    ("history", _metadata(lambda m: m["history"][0].pop("test_loss")), r"history is not a list of 2 epoch records"),
    ("running", _metadata(lambda m: m["running"].update(seen=-16)), r"running totals \(0 right of -16\)"),
    ("running_kind", _metadata(lambda m: m["running"].update(loss_sum="0")), r"loss_sum must be a number"),
    ("leaf_shape", lambda path: _rewrite_header(path, _leaf_shape), r"has shape \(9, 1, 3, 3\) .* expect shape"),
]


def _leaf_shape(header):
    header["leaves"][1]["shape"] = [9, 1, 3, 3]
    return header


@pytest.mark.parametrize("name, damage, message", DAMAGE, ids=[case[0] for case in DAMAGE])
def test_a_damaged_checkpoint_is_refused_naming_the_file_and_left_as_it_was(saved_run, capsys, name, damage, message):
    path = saved_run / rundir.CHECKPOINT
    damage(path)
    before = _snapshot(saved_run)
    capsys.readouterr()
    assert main(["train", "--resume", str(saved_run), "--epochs", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"jaxconv train: error: {path}") and err.count("\n") == 1, err
    assert re.search(message, err), err
    assert _snapshot(saved_run) == before


def test_a_folder_in_place_of_the_checkpoint_is_a_one_line_error(saved_run, capsys):
    path = saved_run / rundir.CHECKPOINT
    path.unlink()
    path.mkdir()
    capsys.readouterr()
    assert main(["train", "--resume", str(saved_run), "--epochs", "3", "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"jaxconv train: error: {path} is not a jaxconv checkpoint or is damaged (Is a directory)\n"
    )
    assert path.is_dir() and os.listdir(path) == []


# ---------------------------------------------------------------------------------------------------------------
# Folders that cannot be written, runs with nothing left to train.


def test_an_output_path_that_is_a_file_is_called_a_file(tmp_path, capsys):
    out = tmp_path / "somefile.py"
    out.write_text("print('hello')\n")
    assert main(["train", "--epochs", "1", *SMALL_ARGS, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    expected = f"cannot write to the output folder {out}: it is a file, not a folder"
    assert captured.err == f"jaxconv train: error: {expected}\n"
    assert "epoch 1/1" not in captured.out
    assert out.read_text() == "print('hello')\n"


def test_ctrl_c_before_anything_is_saved_removes_the_folders_the_run_created(tmp_path, monkeypatch, capsys):
    out = tmp_path / "new" / "run"
    interrupt_after(monkeypatch, -1)  # Ctrl-C while the steps compile: after the folder is made, before a save
    assert main(["train", "--epochs", "1", *SMALL_ARGS, "--out", str(out), "--quiet"]) == 130
    assert "nothing saved" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []  # run/ and its parent new/, both made by the run
    monkeypatch.undo()

    # A folder that was there before stays, although empty.
    out.mkdir(parents=True)
    interrupt_after(monkeypatch, -1)
    assert main(["train", "--epochs", "1", *SMALL_ARGS, "--out", str(out), "--quiet"]) == 130
    monkeypatch.undo()
    assert out.is_dir() and os.listdir(out) == []


def test_a_folder_the_run_created_stays_once_it_holds_a_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    interrupt_after(monkeypatch, 2)
    assert main(["train", "--epochs", "1", *SMALL_ARGS, "--out", str(out), "--quiet"]) == 130
    monkeypatch.undo()
    assert (out / rundir.CHECKPOINT).exists() and stray_files(out) == []


def test_an_unwritable_output_folder_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a regular file, so nothing can be created under it (even by root)")
    out = blocker / "run"
    assert main(["train", "--epochs", "1", *SMALL_ARGS, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"jaxconv train: error: cannot write to the output folder {out}: Not a directory\n"
    assert "epoch 1/1" not in captured.out  # refused before training, not after the first epoch


def test_resuming_with_fewer_epochs_than_trained_trains_and_writes_nothing(saved_run, capsys):
    before = _snapshot(saved_run)
    capsys.readouterr()
    assert main(["train", "--resume", str(saved_run), "--epochs", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"nothing to train: {saved_run} holds 2 epochs and --epochs is 1; no files written" in printed
    assert "wrote" not in printed and "epoch 1/1" not in printed
    assert _snapshot(saved_run) == before


def test_resuming_a_finished_run_reports_only_that_there_is_nothing_to_train(saved_run, capsys):
    capsys.readouterr()
    assert main(["train", "--resume", str(saved_run), "--epochs", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"nothing to train: {saved_run} holds 2 epochs and --epochs is 2")
    assert lines[1].startswith("saved run: test accuracy") and lines[1].endswith("after 2 epochs, 8 steps")
    assert len(lines) == 2  # no "resuming at epoch 3", no data, devices or model lines
