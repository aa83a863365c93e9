"""Tests of benchmarks/: the targets are computed from the results; the design variants are correct."""

from __future__ import annotations

import dataclasses
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


def _fake_result(name, vag_ratio, fwd_ratio, gemm_fraction, temp_ratio, *, preset="cnn", torch_ratio=None):
    t = lambda seconds: Timing(seconds, seconds, 0.0, 3)
    case = next(c for c in PRESETS[preset] if c.name == name)
    torch = {} if torch_ratio is None else {"torch": t(1.0 / torch_ratio)}
    gemm_time = 1.0 * gemm_fraction  # our forward takes 1 s
    return CaseResult(
        case=case,
        dtype="float32",
        tolerance=1e-4,
        errors={"out": Error(0.0, 0.0)},
        torch_errors=None,
        forward={"jaxconv": t(1.0), "lax": t(1.0 / fwd_ratio), "gemm": t(gemm_time), **torch},
        value_and_grad={"jaxconv": t(1.0), "lax": t(1.0 / vag_ratio), **torch},
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
    sections = [(run.SECTIONS["cnn"], results)]
    report = run.render(sections, compare_module.environment(), command="test", repeats=3, min_time=0.0, partial=True)
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


def test_slowpath_targets():
    run = _benchmark_module("run")
    results = [
        _fake_result("tconv2d_s2", 0.1, 0.5, 0.5, 1.0, preset="slowpaths", torch_ratio=0.5),
        _fake_result("dw3x3", 0.4, 0.9, 0.5, 1.0, preset="slowpaths", torch_ratio=2.0),
        _fake_result("grouped32", 0.6, 1.2, 0.5, 1.0, preset="slowpaths", torch_ratio=1.0),
    ]
    targets = {t.name: t for t in run.evaluate_slowpath_targets(results)}
    vag = targets["value_and_grad time vs lax, every case"]
    assert (vag.goal, vag.met, vag.measured) == ("<= 0.5x", False, "worst 0.6x (grouped32)")
    fwd = targets["forward time vs lax, every case"]
    assert (fwd.goal, fwd.met) == ("<= 1x", False) and "grouped32" in fwd.measured
    torch_vag = targets["value_and_grad time vs PyTorch autograd, geometric mean"]
    assert torch_vag.met is True and torch_vag.measured.startswith("1x over 3 cases")
    torch_fwd = targets["forward time vs PyTorch, geometric mean"]
    assert torch_fwd.goal == "<= 1.25x" and torch_fwd.met is True
    depthwise = targets["depthwise: value_and_grad time vs PyTorch, every case"]
    assert (depthwise.goal, depthwise.met, depthwise.measured) == ("<= 1.5x", False, "worst 2x (dw3x3)")
    without_torch = [_fake_result("dw3x3", 0.4, 0.9, 0.5, 1.0, preset="slowpaths")]
    assert [t.met for t in run.evaluate_slowpath_targets(without_torch)] == [True, True, None, None, None]


def test_results_md_has_a_section_per_preset():
    run = _benchmark_module("run")
    cnn = [_fake_result("cifar2", 0.25, 0.9, 0.7, 1.2)]
    slow = [_fake_result("tconv2d_s2", 0.1, 0.5, 0.5, 1.0, preset="slowpaths", torch_ratio=0.5)]
    slow += [dataclasses.replace(slow[0], dtype="bfloat16")]
    sections = [(run.SECTIONS["cnn"], cnn), (run.SECTIONS["slowpaths"], slow)]
    info = compare_module.environment()
    report = run.render(sections, info, command="t", repeats=3, min_time=0, partial=False, extra=["## Whole models"])
    headings = [line for line in report.splitlines() if line.startswith("#")]
    assert headings == [
        "# jaxconv benchmark results",
        "## Machine",
        "## CNN layers (`cnn`)",
        "### Cases",
        "### Results",
        "### Targets",
        "## Slow paths of lax (`slowpaths`)",
        "### Cases",
        "### Results",
        "#### float32",
        "#### bfloat16",
        "### Targets",
        "## Whole models",
    ]
    assert "lhs_dilation=2" in report and "depthwise: value_and_grad time vs PyTorch" in report


def test_presets_and_cases_of_a_run():
    run = _benchmark_module("run")
    assert run.presets_of(None) == ["cnn"]
    assert run.presets_of(["all"]) == ["cnn", "slowpaths", "models"]
    assert run.presets_of(["slowpaths", "cnn", "slowpaths"]) == ["slowpaths", "cnn"]
    with pytest.raises(ValueError, match="--preset gpu runs alone"):
        run.presets_of(["gpu", "cnn"])
    cases = run.cases_of(["cnn", "slowpaths", "models"], ["cifar2", "dw3x3"])
    assert {p: [c.name for c in cs] for p, cs in cases.items()} == {"cnn": ["cifar2"], "slowpaths": ["dw3x3"]}
    assert list(run.cases_of(["cnn", "slowpaths"], ["dw3x3"])) == ["slowpaths"]
    with pytest.raises(ValueError, match="--only nope: no such case"):
        run.cases_of(["cnn"], ["nope"])


def test_slowpaths_and_models_smoke(tmp_path, capsys, monkeypatch):
    # Two small slow-path cases and a stand-in for benchmarks/models.py, one RESULTS-style file; no timing checks.
    run = _benchmark_module("run")
    calls = []

    def models_section(*, quick, torch):
        calls.append((quick, torch))
        return ["## Whole models", "", "stand-in"]

    monkeypatch.setattr(run, "models_section_function", lambda: models_section)
    output = tmp_path / "RESULTS.md"
    argv = ["--preset", "slowpaths", "--preset", "models", "--only", "tconv1d_s4", "--only", "dw3x3_s2"]
    argv += ["--quick", "--torch", "off", "--repeats", "1", "--min-time", "0", "--no-reexec"]
    assert run.main(argv + ["--dtype", "float32", "--output", str(output)]) == 0
    report = output.read_text()
    assert "## Slow paths of lax (`slowpaths`)" in report and "| tconv1d_s4 |" in report and "| dw3x3_s2 |" in report
    assert report.rstrip().endswith("stand-in") and calls == [(True, False)]
    assert max(len(line) for line in capsys.readouterr().out.split("# jaxconv benchmark")[0].splitlines()) <= 100


def test_models_preset_without_models_py_fails_before_measuring(monkeypatch, capsys):
    run = _benchmark_module("run")
    monkeypatch.setattr(run, "models_section_function", lambda: None)
    monkeypatch.setattr(run, "compare", lambda *a, **k: pytest.fail("measured"))
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--preset", "all", "--no-reexec"])
    assert exit_info.value.code == 2 and "benchmarks/models.py" in capsys.readouterr().err
