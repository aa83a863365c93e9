"""Tests of benchmarks/: the targets are computed from the results; the design variants are correct."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv
from jaxconv import compare as compare_module
from jaxconv.compare import PRESETS, CaseResult, Error, Timing

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@functools.cache
def _benchmark_module(name):
    spec = importlib.util.spec_from_file_location(f"jaxconv_benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _fake_result(name, vag_ratio, fwd_ratio, gemm_fraction, temp_ratio):
    t = lambda seconds: Timing(seconds, seconds, 0.0, 3)
    case = next(c for c in PRESETS["cnn"] if c.name == name)
    gemm_time = 1.0 * gemm_fraction  # our forward takes 1 s
    return CaseResult(
        case=case,
        dtype="float32",
        tolerance=1e-4,
        errors={"out": Error(0.0, 0.0)},
        torch_errors=None,
        forward={"jaxconv": t(1.0), "lax": t(1.0 / fwd_ratio), "gemm": t(gemm_time)},
        value_and_grad={"jaxconv": t(1.0), "lax": t(1.0 / vag_ratio)},
        temp_bytes={"jaxconv_value_and_grad": int(100 * temp_ratio), "lax_value_and_grad": 100},
    )


def test_benchmark_targets():
    run = _benchmark_module("run")
    results = [_fake_result("cifar2", 0.25, 0.9, 0.7, 1.2), _fake_result("lenet1", 0.9, 1.1, 0.1, 1.6)]
    targets = {t.name: t for t in run.evaluate_targets(results)}
    mean = targets["value_and_grad time vs lax, geometric mean"]
    assert mean.met is True and mean.measured.startswith(f"{math.sqrt(0.25 * 0.9):.3g}x")
    every = [t for t in targets.values() if "every case" in t.name]
    assert [(t.met, "lenet1" in t.measured) for t in every] == [(True, True), (False, True), (False, True)]
    gemm = next(t for t in targets.values() if "GEMM" in t.name)
    assert gemm.met is True and "cifar2 70%" in gemm.measured
    torch = next(t for t in targets.values() if "PyTorch" in t.name)
    assert torch.met is None
    report = run.render(results, compare_module.environment(), command="test", repeats=3, min_time=0.0, partial=True)
    assert "| cifar2 |" in report and "NOT MET" in report and "Partial" in report


def test_design_variant_saving_phi_is_the_same_conv():
    # benchmarks/design.py times a conv whose forward saves phi^T: it must compute what jaxconv.conv computes.
    design = _benchmark_module("design")
    x, w = design._inputs((2, 3, 6, 6), (4, 3, 3, 3))
    spec = jaxconv.ConvSpec(jaxconv.conv_geometry((6, 6), (3, 3), padding=1), max_cols_bytes=None)
    g = jnp.asarray(np.random.default_rng(0).standard_normal((2, 4, 6, 6), dtype=np.float32))
    grads = [
        jax.grad(lambda x, w, fn=fn: jnp.sum(fn(x, w) * g), argnums=(0, 1))(x, w)
        for fn in (functools.partial(design.conv_saving_phi, spec=spec), functools.partial(jaxconv.conv, padding=1))
    ]
    for ours, theirs in zip(*grads):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    times = design._median_times({"a": jax.jit(lambda x: x + 1), "b": jax.jit(lambda x: x * 2)}, (x,), repeats=2)
    assert set(times) == {"a", "b"} and all(t > 0 for t in times.values())


def test_gpu_preset_scales_down():
    gpu = _benchmark_module("gpu")
    scaled = [gpu.scale_down(case, 32) for case in PRESETS["gpu"]]
    assert scaled[0].x == (2, 2, 1, 1) and scaled[0].w == (2, 2, 3, 3)
    assert all(
        c.name == p.name and c.stride == p.stride and c.padding == p.padding for c, p in zip(scaled, PRESETS["gpu"])
    )
    assert gpu.scale_down(PRESETS["gpu"][0], 1) == PRESETS["gpu"][0]


def test_gpu_preset_layouts_compute_the_same_conv():
    # NHWC through jaxconv.conv_general_dilated and lax's, NCHW through jaxconv.conv: one conv, two layouts.
    gpu = _benchmark_module("gpu")
    case = gpu.scale_down(PRESETS["gpu"][6], 16)  # the strided 7x7 stem
    rng = np.random.default_rng(0)
    x, w, g = (rng.standard_normal(s).astype(np.float32) for s in (case.x, case.w, case.out_shape))
    outs = {}
    for layout in gpu.LAYOUTS:
        fns = gpu.jax_convs(case, layout, pallas=False)
        assert set(fns) == {"jaxconv", "lax"}
        xl, wl, _ = gpu.to_layout(layout, x, w, g)
        for name, fn in fns.items():
            out = fn(jnp.asarray(xl), jnp.asarray(wl))
            outs[layout, name] = gpu.from_layout(layout, out, out, np.zeros_like(wl))[0]
    for out in outs.values():
        np.testing.assert_allclose(out, outs["NCHW", "lax"], rtol=1e-5, atol=1e-4)
    assert ("pallas" in gpu.jax_convs(case, "NCHW", pallas=True)) == gpu.takes_backend(jaxconv.conv)


def test_gpu_preset_smoke(tmp_path, capsys):
    # The GPU preset's plumbing on tiny shapes, every dtype and layout; no timing assertions.
    run = _benchmark_module("run")
    json_path = tmp_path / "gpu.json"
    argv = ["--preset", "gpu", "--scale-down", "32", "--only", "stem", "--only", "r50_1x1", "--torch", "off"]
    argv += ["--repeats", "1", "--min-time", "0", "--no-reexec", "--json", str(json_path)]
    assert run.main(argv) == 0
    out = capsys.readouterr().out
    for block in ("bfloat16, NCHW", "bfloat16, NHWC", "float32, NCHW", "float32, NHWC"):
        assert f"### {block}" in out
    assert "| stem |" in out and "| r50_1x1 |" in out and "jaxconv/lax" in out
    rows = json.loads(json_path.read_text())["rows"]
    assert len(rows) == 2 * 2 * 2 and all(r["ok"] for r in rows)
    assert all(r["ratios"]["value_and_grad_jaxconv_vs_lax"] > 0 for r in rows)
    if _benchmark_module("gpu").takes_backend(jaxconv.conv):
        assert all("pallas" in r["errors"] for r in rows if r["layout"] == "NCHW")
    else:
        assert "No pallas column in NCHW" in out


@pytest.mark.parametrize("torch", ["off", "auto"])
def test_cnn_preset_smoke(tmp_path, capsys, torch):
    # The default (CPU) preset end to end on one small layer, printed only; no timing assertions.
    run = _benchmark_module("run")
    argv = ["--quick", "--only", "lenet1", "--torch", torch, "--repeats", "1", "--min-time", "0", "--no-reexec"]
    assert run.main(argv) == 0
    out = capsys.readouterr().out
    assert "| lenet1 |" in out


def test_gpu_preset_checks_options_before_measuring(tmp_path, capsys):
    run = _benchmark_module("run")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--preset", "gpu", "--no-reexec", "--json", str(blocker / "x.json")])
    assert exit_info.value.code == 2 and "cannot write a file there" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run.main(["--preset", "gpu", "--no-reexec", "--scale-down", "0"])
    assert "argument --scale-down: must be >= 1, got 0" in capsys.readouterr().err
