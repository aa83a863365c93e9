"""What the jaxconv.train tests share: a tiny run, its reference result, and how to read back a run directory.

Every run is tiny (a 4-channel CNN, 64 training and 32 test images, 4 steps per
epoch), so the jitted steps compile once per process and each run takes well
under a second after that.
"""

import functools
import os
import signal

import jax
import numpy as np

from jaxconv.train import checkpoint, rundir, steps
from jaxconv.train.config import TrainConfig
from jaxconv.train.loop import fit

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


def small_config(**changes):
    return TrainConfig(**{"epochs": EPOCHS, **SMALL, **changes})


@functools.lru_cache(maxsize=1)
def straight_run():
    """The reference: one uninterrupted EPOCHS-epoch run of ``small_config()`` on the digits, writing nothing."""
    return fit(small_config())


def assert_trees_equal(actual, expected):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for leaf, expected_leaf in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        np.testing.assert_array_equal(leaf, expected_leaf)


def without_timings(history):
    return [{key: value for key, value in entry.items() if key not in TIMING_KEYS} for entry in history]


def load_checkpoint(out_dir, config=None):
    """The (params, opt_state, metadata) saved in ``out_dir``, restored into the structure of the saved config's run."""
    config = config or rundir.read_config(out_dir)
    params, opt_state, key = steps.init_state(config, steps.build_model(config, 10), (1, 8, 8))
    tree, metadata = checkpoint.load(
        rundir.checkpoint_path(out_dir), {"params": params, "opt_state": opt_state, "key": key}
    )
    return tree["params"], tree["opt_state"], metadata


def interrupt_after(monkeypatch, count, *, sigint=False):
    """Makes ``steps.train_step`` stop the run with Ctrl-C when asked for training step ``count + 1``.

    ``fit`` calls ``train_step`` once to compile it before training: that call is not counted.
    With ``sigint``, a real SIGINT goes to this process (Python's default handler raises KeyboardInterrupt).
    """
    original = steps.train_step
    calls = []

    def interrupting_step(*args, **kwargs):
        calls.append(None)
        if len(calls) == count + 2:  # the compiling call, then `count` training steps
            if sigint:
                signal.raise_signal(signal.SIGINT)
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(steps, "train_step", interrupting_step)


def stray_files(out_dir):
    """Anything in ``out_dir`` besides the run's three outputs, such as a leftover temporary file."""
    return sorted(set(os.listdir(out_dir)) - {rundir.CHECKPOINT, rundir.METRICS, rundir.CURVES})


def write_npz(path, **changes):
    """A valid 64/16-image uint8 .npz of 8x8 images and 10 classes, with ``changes`` (None deletes a key)."""
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
