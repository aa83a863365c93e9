"""Ctrl-C in a real ``jaxconv train`` process: recorded by jaxconv._interrupts, honoured between JAX calls.

Each test starts the command in a subprocess and delivers SIGINT at one point
of its life: inside XLA's compilation of the train step, inside a
garbage-collection callback while the data loads (where Python drops a
``KeyboardInterrupt``), and between training steps. The process must end with
status 130, one message, no traceback and no crash.
"""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from _train_helpers import REPO, SMALL_ARGS, load_checkpoint

from jaxconv.train import rundir

# The child: `jaxconv train` with a hook that raises SIGINT at the point the test names.
CHILD = r"""
import gc, os, signal, sys, threading

signal.signal(signal.SIGINT, signal.default_int_handler)  # as from a shell, even if this test's runner ignores it
point, argv = sys.argv[1], sys.argv[2:]
from jaxconv.cli import main

if point == "compile":  # SIGINT 50 ms into XLA's compilation of the train step
    from jax._src import compiler

    compile_and_load = compiler.backend_compile_and_load

    def compile_with_sigint(backend, module, *args, **kwargs):
        timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
        if "train_step" in str(module.operation.attributes["sym_name"]):
            timer.start()
        try:
            return compile_and_load(backend, module, *args, **kwargs)
        except KeyboardInterrupt:
            print("KeyboardInterrupt escaped from an XLA compilation", file=sys.stderr, flush=True)
            raise
        finally:
            if timer.is_alive():  # a compilation faster than 50 ms: the SIGINT still comes before training
                timer.join()

    compiler.backend_compile_and_load = compile_with_sigint
elif point == "import":  # SIGINT inside a gc callback while `jaxconv train` imports JAX (Python drops it there)
    import gc
    import importlib

    from jaxconv import cli

    import_module = importlib.import_module

    def import_with_sigint_in_gc(name, *args, **kwargs):
        if name == "jaxconv.train.cli":
            def callback(phase, info):
                gc.callbacks.remove(callback)
                signal.raise_signal(signal.SIGINT)

            gc.callbacks.append(callback)
            gc.collect()
        return import_module(name, *args, **kwargs)

    cli.importlib = type("importlib", (), {"import_module": staticmethod(import_with_sigint_in_gc)})
elif point == "gc":  # SIGINT handled inside a gc callback (JAX has one) while the data set loads
    from jaxconv.train import data

    load_digits = data.load_digits

    def load_with_sigint_in_gc(*args, **kwargs):
        def callback(phase, info):
            gc.callbacks.remove(callback)
            signal.raise_signal(signal.SIGINT)

        gc.callbacks.append(callback)
        gc.collect()
        return load_digits(*args, **kwargs)

    data.load_digits = load_with_sigint_in_gc
sys.exit(main(["train", *argv]))
"""


def _start(point, out, *args):
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-c", CHILD, point, *SMALL_ARGS, "--out", str(out), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=out.parent)


def _sigint_after_line(process, prefix):
    """Sends SIGINT once the child prints a line starting with ``prefix``; returns (status, stdout, stderr)."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith(prefix):
            process.send_signal(signal.SIGINT)
            break
    out, err = process.communicate(timeout=120)
    return process.returncode, "".join(lines) + out, err


def _assert_stopped_cleanly(status, err, message):
    assert status == 130, (status, err)  # not -11 (SIGSEGV), not 0 (the Ctrl-C lost)
    assert "Traceback" not in err and "Exception ignored" not in err and "escaped" not in err, err
    assert err.strip() == message, err


@pytest.mark.parametrize("point", ["compile", "gc"])
def test_sigint_before_the_first_step_stops_cleanly_and_saves_nothing(tmp_path, point):
    out = tmp_path / "run"
    status, _, err = _sigint_after_line(_start(point, out, "--epochs", "2"), "never printed")
    _assert_stopped_cleanly(status, err, "interrupted before training started; nothing saved.")
    assert not (out / rundir.CHECKPOINT).exists()
    assert not out.exists()  # the run made the folder and saved nothing in it: it goes too


def test_sigint_while_jax_imports_is_not_lost(tmp_path):
    """Issue 12.3: a Ctrl-C 2-3 s after start (JAX importing) was dropped and the run trained to the end."""
    out = tmp_path / "run"
    status, printed, err = _sigint_after_line(_start("import", out, "--epochs", "2"), "never printed")
    _assert_stopped_cleanly(status, err, "interrupted while starting; nothing ran.")
    assert "test accuracy" not in printed and not out.exists()


def test_sigint_from_outside_while_the_steps_compile(tmp_path):
    out = tmp_path / "run"
    status, _, err = _sigint_after_line(_start("none", out, "--epochs", "2"), "model:")
    _assert_stopped_cleanly(status, err, "interrupted before training started; nothing saved.")
    assert not out.exists()


def test_sigint_between_steps_saves_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    status, printed, err = _sigint_after_line(_start("none", out, "--epochs", "200"), "epoch 1/200")
    assert status == 130 and "Traceback" not in err, err
    assert f"saved {rundir.checkpoint_path(out)}; continue with: jaxconv train --resume {out}" in err
    _, _, metadata = load_checkpoint(out)
    assert metadata["step"] >= 4 and len(metadata["history"]) >= 1
    assert np.isfinite(metadata["history"][0]["train_loss"])
