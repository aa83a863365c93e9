"""Tests of benchmarks/: the targets are computed from the results; the design variants are correct."""

from __future__ import annotations

import functools
import importlib.util
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

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
