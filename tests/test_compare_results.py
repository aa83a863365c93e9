"""Tests of jaxconv.compare.results: what passes, and the ratios derived from the measurements."""

from __future__ import annotations

import dataclasses
import math

from jaxconv.compare import PRESETS, CaseResult, Error, Timing


def _result(**fields) -> CaseResult:
    t = lambda seconds: Timing(seconds, seconds, 0.0, 3)
    base = CaseResult(
        case=PRESETS["cpu-small"][0],
        dtype="float32",
        tolerance=1e-4,
        errors={"out": Error(1e-6, 5e-5)},
        torch_errors=None,
        forward={"jaxconv": t(2.0), "lax": t(4.0), "gemm": t(1.0)},
        value_and_grad={"jaxconv": t(3.0), "lax": t(1.5), "torch": t(6.0)},
        temp_bytes={"jaxconv_value_and_grad": 300, "lax_value_and_grad": 200},
    )
    return dataclasses.replace(base, **fields)


def test_ok_follows_each_tolerance():
    assert _result().ok
    assert not _result(errors={"out": Error(1e-6, 2e-4)}).ok
    assert not _result(errors={"out": Error(math.nan, math.nan)}).ok, "NaN fails"
    # PyTorch runs at its own default precision: TF32 on a GPU even when ours runs at HIGHEST.
    tf32_torch = {"out": Error(1e-4, 1e-3)}
    assert not _result(torch_errors=tf32_torch).ok, "without its own tolerance, torch's shares ours"
    assert _result(torch_errors=tf32_torch, torch_tolerance=5e-3).ok
    assert not _result(torch_errors={"out": Error(1.0, 1e-2)}, torch_tolerance=5e-3).ok


def test_ratios_rates_and_memory():
    r = _result()
    assert r.ratio("forward") == 0.5 and r.ratio("value_and_grad") == 2.0
    assert r.ratio("value_and_grad", "torch") == 0.5 and r.ratio("forward", "torch") is None
    assert r.gflops("forward") == r.case.flops / 2.0 / 1e9
    assert r.gflops("value_and_grad", "lax") == 3 * r.case.flops / 1.5 / 1e9
    assert r.gemm_fraction() == 0.5 and r.temp_ratio == 1.5
    assert r.timed and not _result(forward={}, value_and_grad={}).timed
    assert r.to_dict()["derived"]["value_and_grad_temp_ratio"] == 1.5
