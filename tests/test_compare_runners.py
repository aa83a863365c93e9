"""Tests of jaxconv.compare.runners: the comparison itself, its errors, its tolerance and its option checks."""

from __future__ import annotations

import importlib.util
import inspect
import json
import math

import jax
import jax.numpy as jnp
import pytest
from jax import lax

import jaxconv
from jaxconv import conv, lax_conv
from jaxconv.compare import PRESETS, TOLERANCES, compare, tolerance
from jaxconv.compare import runners as runners_module

TINY = "x=2,3,7,7 w=4,3,3,3 padding=1 bias=1"


def _check_result(result):
    assert result.ok
    for error in result.errors.values():
        assert math.isfinite(error.abs) and 0 <= error.rel <= TOLERANCES["float32"]
    for timing in (*result.forward.values(), *result.value_and_grad.values()):
        assert timing.median > 0 and timing.repeats >= 2
    assert {"jaxconv", "lax", "gemm"} <= set(result.forward)
    assert result.ratio("value_and_grad") > 0 and result.gemm_gflops > 0
    assert all(size is None or size >= 0 for size in result.temp_bytes.values())


def test_compare_cpu_small():
    # PyTorch, when installed, runs too: on every kind of case (1-3 spatial dims, groups, asymmetric padding).
    has_torch = importlib.util.find_spec("torch") is not None
    results = compare("cpu-small", repeats=2, min_time=0, torch="auto")
    assert [r.case for r in results] == list(PRESETS["cpu-small"])
    for result in results:
        _check_result(result)
        expected = {"out", "dx", "dw"} | ({"db"} if result.case.with_bias else set())
        assert set(result.errors) == expected
        assert set(result.errors_vs_lax) == expected
        if has_torch:
            assert set(result.torch_errors) == expected
            assert result.torch_max_rel_error <= TOLERANCES["float32"]
            assert result.forward["torch"].median > 0 and result.value_and_grad["torch"].median > 0
        else:
            assert result.torch_errors is None and "torch" not in result.value_and_grad
    json.dumps([r.to_dict() for r in results])


def test_compare_detects_a_wrong_implementation():
    def off_by_a_little(x, w, b=None, **options):
        return lax_conv(x, w, b, **options) * 1.001

    [result] = compare(TINY, repeats=1, min_time=0, torch=False, conv_fn=off_by_a_little)
    assert not result.ok
    assert result.errors["out"].rel == pytest.approx(1e-3, rel=1e-2)
    assert result.errors_vs_lax["out"].rel == pytest.approx(1e-3, rel=1e-2)
    [result] = compare(TINY, repeats=1, min_time=0, torch=False, conv_fn=off_by_a_little, tolerance=1e-2)
    assert result.ok


def test_compare_lax_against_itself_is_exact_on_cpu():
    # An independent check of the error plumbing: lax at default precision is lax at HIGHEST on CPU in float32.
    [result] = compare(TINY, repeats=1, min_time=0, torch=False, conv_fn=lax_conv)
    assert all(error.abs == 0 for error in result.errors.values())
    assert all(error.abs == 0 for error in result.errors_vs_lax.values())


def test_compare_without_timing_compiles_one_executable_per_case(monkeypatch):
    # What keeps `jaxconv check` within seconds: ours, lax and the reference in one executable, no timer.
    compiled = []
    real = runners_module._compiled
    monkeypatch.setattr(runners_module, "_compiled", lambda fn, args: compiled.append(fn) or real(fn, args))
    monkeypatch.setattr(runners_module, "time_interleaved", lambda *a, **k: pytest.fail("timed"))
    results = compare("cpu-small", torch=False, timing=False)
    assert len(compiled) == len(results)
    assert all(r.ok and not r.timed and r.forward == {} and r.ratio("forward") is None for r in results)
    assert set(results[0].errors) == {"out", "dx", "dw", "db"}


# --- precision: the tolerance follows the arithmetic the GEMMs really use ------


def _tf32(a):
    return lax.reduce_precision(a, exponent_bits=8, mantissa_bits=10)


def tf32_conv(x, w, b=None, **options):
    """A correct conv whose GEMMs see TF32-rounded operands, as on an Ampere+ GPU at default precision."""
    return conv(_tf32(x), _tf32(w), b, **options)


def flipped_conv(x, w, b=None, **options):
    """A classic bug: convolution instead of cross-correlation."""
    return conv(x, jnp.flip(w, axis=(2, 3)), b, **options)


def test_compare_tolerance_follows_the_platform(monkeypatch):
    [on_cpu] = compare(TINY, torch=False, timing=False, conv_fn=tf32_conv)
    assert on_cpu.tolerance == 1e-4 and on_cpu.arithmetic == "float32"
    assert not on_cpu.ok, "TF32 rounding is well above float32's tolerance"
    assert 1e-4 < on_cpu.max_rel_error < 2e-3

    monkeypatch.setattr(runners_module, "current_platform", lambda: "gpu")
    with jax.default_matmul_precision(None):  # precision=None: JAX's own default (the suite sets "highest")
        [tf32] = compare(TINY, torch=False, timing=False, conv_fn=tf32_conv)
        assert (tf32.platform, tf32.arithmetic, tf32.tolerance) == ("gpu", "tensorfloat32", 5e-3)
        assert tf32.ok, "a correct conv in TF32 passes on a GPU"
        for wrong in (flipped_conv, lambda x, w, b=None, **o: conv(x, w, b, **o) * 1.01):
            [result] = compare(TINY, torch=False, timing=False, conv_fn=wrong)
            assert result.tolerance == 5e-3 and not result.ok, "a wrong conv still fails at the GPU's tolerance"
    [highest] = compare(TINY, torch=False, timing=False, conv_fn=tf32_conv, precision="highest")
    assert (highest.arithmetic, highest.tolerance, highest.precision) == ("float32", 1e-4, "highest")
    assert not highest.ok, "at HIGHEST a GPU computes in float32 and so must we"
    with jax.default_matmul_precision("float32"):  # None follows JAX's config
        [configured] = compare(TINY, torch=False, timing=False, conv_fn=tf32_conv)
        assert (configured.arithmetic, configured.precision, configured.ok) == ("float32", None, False)


def test_compare_precision_is_passed_to_both_convs():
    seen = []

    def recording_conv(x, w, b=None, **options):
        seen.append(options["precision"])
        return conv(x, w, b, **options)

    [result] = compare(TINY, torch=False, timing=False, conv_fn=recording_conv, precision="high")
    assert seen and set(seen) == {lax.Precision.HIGH}
    assert result.precision == "high" and result.tolerance == tolerance("float32", "high")
    assert result.ok


# --- options are checked before anything is compiled -------------------------


@pytest.mark.parametrize(
    "options, error, message",
    [
        (dict(dtype="int32"), ValueError, "dtype must be one of"),
        (dict(dtype="float64"), ValueError, "float64 needs 64-bit JAX"),
        (dict(repeats=0), ValueError, "repeats must be >= 1"),
        (dict(min_time=-1), ValueError, "min_time must be >= 0"),
        (dict(min_time=math.nan), ValueError, "min_time must be finite"),
        (dict(seed=-5), ValueError, "seed must be >= 0"),
        (dict(seed=1.5), TypeError, "seed must be an int"),
        (dict(tolerance=0), ValueError, "tolerance must be > 0"),
        (dict(tolerance=math.inf), ValueError, "tolerance must be finite"),
        (dict(precision="fast"), ValueError, "precision must be None"),
        (dict(torch="maybe"), ValueError, "torch must be True, False or 'auto'"),
        (dict(timing=1), TypeError, "timing must be a bool"),
        (dict(backend="cuda"), ValueError, "backend must be one of"),
    ],
)
def test_compare_argument_errors(monkeypatch, options, error, message):
    monkeypatch.setattr(runners_module, "_compare_case", lambda *a, **k: pytest.fail("measured before checking"))
    with pytest.raises(error, match=message):
        compare(TINY, **{"torch": False, **options})


def test_compare_torch_on_without_torch(monkeypatch):
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("torch is installed")
    monkeypatch.setattr(runners_module, "_compare_case", lambda *a, **k: pytest.fail("measured before checking"))
    with pytest.raises(ValueError, match="torch=True but PyTorch cannot be imported"):
        compare(TINY, torch=True)


# --- input-dilated (transposed) cases, backends, strategies ------------------------

TRANSPOSED = "name=t x=2,4,5,5 w=3,4,3,3 lhs_dilation=2 padding=1:2,1:2 bias=1"


def test_a_transposed_case_runs_the_drop_in_beside_lax(monkeypatch):
    calls = []
    real = runners_module.conv_general_dilated

    def spy(lhs, rhs, *args, **kwargs):
        calls.append(kwargs["lhs_dilation"])
        return real(lhs, rhs, *args, **kwargs)

    monkeypatch.setattr(runners_module, "conv_general_dilated", spy)
    [result] = compare(TRANSPOSED, repeats=2, min_time=0, torch="auto")
    _check_result(result)
    assert set(calls) == {(2, 2)}
    assert set(result.errors) == {"out", "dx", "dw", "db"}
    if importlib.util.find_spec("torch") is not None:  # conv_transpose2d's values agree too
        assert result.torch_max_rel_error <= TOLERANCES["float32"] and "torch" in result.value_and_grad
    assert result.to_dict()["case"]["lhs_dilation"] == 2


def test_a_wrong_drop_in_fails_a_transposed_case(monkeypatch):
    wrong = lambda lhs, rhs, *args, **kwargs: lax.conv_general_dilated(lhs, rhs, *args, **kwargs) * 1.01
    monkeypatch.setattr(runners_module, "conv_general_dilated", wrong)
    [result] = compare(TRANSPOSED, torch=False, timing=False)
    assert not result.ok and result.errors["out"].rel == pytest.approx(1e-2, rel=0.1)  # the bias is not scaled


def test_a_conv_fn_cannot_take_a_transposed_case(monkeypatch):
    monkeypatch.setattr(runners_module, "_compare_case", lambda *a, **k: pytest.fail("measured"))
    with pytest.raises(ValueError, match="cases t are input-dilated"):
        compare([TINY, TRANSPOSED], torch=False, conv_fn=conv)


def test_backend_is_passed_and_a_refusal_is_a_skipped_case(monkeypatch):
    seen = []

    def pallas_like(x, w, b=None, *, backend="xla", **options):
        seen.append(backend)
        if backend == "pallas" and options["groups"] > 1:
            raise ValueError("backend='pallas' does not support this convolution: groups")
        return conv(x, w, b, **options)

    monkeypatch.setattr(runners_module, "conv", pallas_like)
    results = compare("cpu-small", torch=False, timing=False, backend="pallas")
    assert set(seen) == {"pallas"}
    skipped = [r for r in results if r.skipped]
    assert [r.case.name for r in skipped] == ["grouped"]
    assert skipped[0].ok and skipped[0].errors == {} and "does not support this convolution" in skipped[0].notes[0]
    assert all(r.ok and not r.skipped and r.backend == "pallas" for r in results if r.case.name != "grouped")
    # The timed path refuses the same way; xla never hides a ValueError.
    [timed] = compare(PRESETS["cpu-small"][2], torch=False, repeats=1, min_time=0, backend="pallas")
    assert timed.skipped and not timed.timed
    with pytest.raises(ValueError, match="does not support"):
        monkeypatch.setattr(runners_module, "conv", lambda *a, **k: pallas_like(*a, **{**k, "backend": "pallas"}))
        compare(PRESETS["cpu-small"][2], torch=False, timing=False, backend="xla")


def test_a_backend_the_drop_in_does_not_take_skips_a_transposed_case(monkeypatch):
    monkeypatch.setattr(runners_module, "conv_general_dilated", lambda lhs, rhs, *a, **k: pytest.fail("ran"))
    if "backend" in inspect.signature(jaxconv.conv_general_dilated).parameters:
        pytest.skip("the drop-in takes backend=")
    [result] = compare(TRANSPOSED, torch=False, timing=False, backend="xla")
    assert result.skipped and "takes no backend argument" in result.notes[0]


def test_the_strategy_is_the_cores():
    results = compare([TINY, TRANSPOSED], torch=False, timing=False)
    assert [r.strategy for r in results] == ["gemm", "transposed/gemm"]


def test_bfloat16_cases_compare_in_bfloat16():
    results = compare([TINY, TRANSPOSED], dtype="bfloat16", torch="auto", repeats=1, min_time=0)
    assert all(r.dtype == "bfloat16" and r.tolerance == TOLERANCES["bfloat16"] and r.ok for r in results)
    assert all(0 < r.max_rel_error <= TOLERANCES["bfloat16"] for r in results)
