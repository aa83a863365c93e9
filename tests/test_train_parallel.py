"""Data-parallel training (jaxconv.train.parallel) on 4 CPU devices forced by XLA_FLAGS, and on 2 processes.

The device count of a process is fixed when JAX starts, so the 4-device runs
happen in one subprocess (``CHILD``) that reports what the tests check as JSON.
"""

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
from _train_helpers import REPO, SMALL_ARGS

from jaxconv.train import rundir

CHILD = r"""
import json, os, re, sys
import jax, numpy as np
from jaxconv.train import parallel, steps
from jaxconv.train.config import TrainConfig
from jaxconv.train.loop import fit

out = sys.argv[1]
config = TrainConfig(epochs=2, batch_size=16, channels=(4,), max_train=64, max_test=32)
report = {"devices": jax.device_count()}
lines = []
runs = {n: fit(config, devices=n, log=lines.append if n == 4 else None) for n in (4, 1)}
report["first_lines"] = lines[:3]
report["history"] = {n: result.history for n, result in runs.items()}
report["max_param_diff"] = max(
    float(np.max(np.abs(np.asarray(p) - np.asarray(q))))
    for p, q in zip(jax.tree.leaves(runs[4].params), jax.tree.leaves(runs[1].params))
)

# The compiled train step on 4 devices: which collectives it holds.
mesh = parallel.make_mesh(4)
model = steps.build_model(config, 10)
params, opt_state, _ = steps.init_state(config, model, (1, 8, 8))
params, opt_state = parallel.replicate((params, opt_state), mesh)
x, y = parallel.replicate((np.zeros((64, 1, 8, 8), np.float32), np.zeros(64, np.int32)), mesh)
indices = parallel.split_rows(np.arange(16, dtype=np.int32), mesh)
optimizer = steps.OptimizerSpec(config.optimizer, config.learning_rate)
lowered = steps.train_step.lower(params, opt_state, x, y, indices, model=model, optimizer=optimizer, mesh=mesh)
hlo = lowered.compile().as_text()
report["collectives"] = {
    op: re.findall(rf"= (.*) {op}(?:-start)?\(", hlo)
    for op in ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
}

# Checkpoints do not depend on the device count: 1 epoch on a, the second on b.
for a, b in ((4, 1), (1, 4)):
    run_dir = os.path.join(out, f"{a}to{b}")
    fit(config.__class__(**{**config.__dict__, "epochs": 1, "out_dir": run_dir}), devices=a)
    resumed = fit(config.__class__(**{**config.__dict__, "out_dir": run_dir}), resume=True, devices=b)
    report[f"resumed_{a}to{b}"] = resumed.history
    report[f"metrics_{a}to{b}"] = json.load(open(os.path.join(run_dir, "metrics.json")))
try:
    fit(config.__class__(**{**config.__dict__, "batch_size": 18}), devices=4)
except ValueError as error:
    report["indivisible"] = str(error)
print(json.dumps(report))
"""


def _env(**extra):
    return {
        **os.environ,
        "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "JAX_NUMPY_DTYPE_PROMOTION": "strict",
        "JAX_NUMPY_RANK_PROMOTION": "raise",
        **extra,
    }


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    out = tmp_path_factory.mktemp("parallel")
    env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=4")
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, str(out)], env=env, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _losses(history):
    return np.array([[entry["train_loss"], entry["test_loss"]] for entry in history])


def test_four_devices_train_like_one_to_float_rounding(four_devices):
    assert four_devices["devices"] == 4
    on_4, on_1 = (four_devices["history"][n] for n in ("4", "1"))
    # Only the order of the sums differs: 4 partial gradients added by the all-reduce.
    np.testing.assert_allclose(_losses(on_4), _losses(on_1), rtol=1e-6, atol=1e-6)
    assert [e["train_accuracy"] for e in on_4] == [e["train_accuracy"] for e in on_1]
    assert four_devices["max_param_diff"] < 1e-6
    assert four_devices["first_lines"][1] == "devices: 4 cpu devices (1 process), 4 examples each per step"


def test_the_compiled_step_sums_gradients_with_an_all_reduce_and_never_gathers_the_batch(four_devices):
    collectives = four_devices["collectives"]
    assert collectives["all-gather"] == [] and collectives["all-to-all"] == [] and collectives["reduce-scatter"] == []
    reduced = " ".join(collectives["all-reduce"])
    # Summed across devices: every gradient (in the layout the backward computes it), the loss and the count of
    # right answers; nothing of the size of the data.
    floats = sum(math.prod(int(n) for n in dims.split(",") if n) for dims in re.findall(r"f32\[([\d,]*)\]", reduced))
    params = 4 * 1 * 3 * 3 + 4 + 64 * 10 + 10  # conv 3x3 1->4, dense 64->10
    assert floats == params + 1, reduced
    assert re.findall(r"s32\[\]", reduced) == ["s32[]"], reduced
    assert 1 <= len(collectives["all-reduce"]) <= 3, collectives


@pytest.mark.parametrize("change", ["4to1", "1to4"])
def test_a_checkpoint_resumes_on_another_number_of_devices(four_devices, change):
    straight = four_devices["history"]["1"]
    resumed = four_devices[f"resumed_{change}"]
    np.testing.assert_allclose(_losses(resumed), _losses(straight), rtol=1e-6, atol=1e-6)
    metrics = four_devices[f"metrics_{change}"]
    assert metrics["num_devices"] == int(change[-1]) and metrics["num_processes"] == 1
    assert len(metrics["history"]) == 2


def test_a_batch_that_does_not_divide_among_the_devices_is_refused(four_devices):
    assert four_devices["indivisible"] == (
        "batch_size 18 does not divide among the 4 devices: each device takes an equal share of a batch, "
        "so use a multiple of 4 (or another --devices)"
    )


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Gloo prints "[Gloo] Rank 3 is connected to 3 peer ranks. Expected number of connected
# peer ranks is : 3" from one thread per rank, in pieces, so two ranks' lines can interleave
# mid-line: what is left once gloo's words and numbers are taken out must be nothing.
GLOO_WORDS = frozenset("[Gloo] Rank is connected to peer ranks . Expected number of : ".split())


def _words_not_from_gloo(printed):
    tokens = re.findall(r"\[Gloo\]|[A-Za-z]+|\d+|\S", printed)
    return [token for token in tokens if token not in GLOO_WORDS and not token.isdigit()]


def _start_two_processes(tmp_path, *args):
    """``jaxconv train *args`` as processes 0 and 1 of a 2-process run on 127.0.0.1 (2 CPU devices each)."""
    address = f"127.0.0.1:{_free_port()}"
    env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=2", PYTHONUNBUFFERED="1")
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jaxconv",
                "train",
                *SMALL_ARGS,
                *args,
                "--coordinator-address",
                address,
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )  # fmt: skip
        for i in range(2)
    ]


def _finish(processes, status=0, printed_before=""):
    """Waits for both; checks their exit status and that process 1 stays silent. Returns what process 0 printed."""
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_, err) in zip(processes, outputs):
        if process.returncode and "gloo" in err.lower() and "not" in err.lower():
            pytest.skip(f"multi-process CPU collectives unavailable: {err.strip().splitlines()[-1]}")
        assert process.returncode == status, err[-3000:]
    # Process 1 trains but leaves the talking and the writing to process 0 (gloo's own lines aside; stderr may
    # also carry JAX's own logging of the distributed shutdown).
    assert _words_not_from_gloo(outputs[1][0]) == []
    assert not any(word in outputs[1][1] for word in ("interrupted", "saved", "Traceback")), outputs[1][1]
    return printed_before + outputs[0][0], outputs[0][1]


def test_two_processes_on_the_loopback_address_train_stop_and_resume_like_one_process(four_devices, tmp_path):
    from jax._src.lib import _jax

    if not hasattr(_jax, "make_gloo_tcp_collectives"):
        pytest.skip("this jaxlib has no gloo collectives for multi-process CPU runs")
    out = tmp_path / "run"
    # Ctrl-C, as a terminal sends it to both processes, once the first epoch is done.
    processes = _start_two_processes(tmp_path, "--epochs", "1000", "--out", str(out))
    lines = []
    for line in processes[0].stdout:
        lines.append(line)
        if line.startswith("epoch 1/1000"):
            for process in processes:
                process.send_signal(signal.SIGINT)
            break
    printed, err = _finish(processes, status=130, printed_before="".join(lines))
    assert "devices: 4 cpu devices (2 processes), 4 examples each per step" in printed
    assert "Traceback" not in err and f"continue with: jaxconv train --resume {out}" in err, err
    # Both stopped at the end of the same epoch, and process 0 saved it.
    epochs_done = len(json.loads((out / rundir.METRICS).read_text())["history"])
    assert 1 <= epochs_done < 1000

    # Both processes read the checkpoint process 0 wrote and carry on for one more epoch.
    _finish(_start_two_processes(tmp_path, "--epochs", str(epochs_done + 1), "--resume", str(out)))
    metrics = json.loads((out / rundir.METRICS).read_text())
    assert metrics["num_devices"] == 4 and metrics["num_processes"] == 2
    assert len(metrics["history"]) == epochs_done + 1
    # The same 4-way split of each batch as the one-process, 4-device run: the same losses.
    np.testing.assert_allclose(_losses(metrics["history"][:2]), _losses(four_devices["history"]["4"]), rtol=1e-6)
    assert sorted(os.listdir(out)) == sorted([rundir.CHECKPOINT, rundir.METRICS, rundir.CURVES])
