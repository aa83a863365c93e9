"""Tests of jaxconv.compare: case specs, the comparison, the timing helper and the CLI."""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import pytest

from jaxconv import compare as compare_module
from jaxconv import lax_conv
from jaxconv.cli import main
from jaxconv.compare import PRESETS, TOLERANCES, Case, Error, compare, time_interleaved

TINY = "x=2,3,7,7 w=4,3,3,3 padding=1 bias=1"


# --- Case ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "x=64,64,32,32 w=64,64,3,3 stride=1 padding=1",
        "name=dw x=8,6,12,12 w=6,1,3,3 groups=6 padding=SAME bias=1",
        "x=4,6,12,12 w=6,2,5,5 groups=3 dilation=2,1 padding=2:3,4:1 stride=1,2",
        "x=4,4,32 w=8,4,7 stride=3 padding=valid",
        "x=2,2,6,7,8 w=4,2,3,2,3 padding=1,0,1",
        "x=2,3,9,9 w=4,3,3,3 padding=1,-1:2",
    ],
)
def test_parse_round_trips(spec):
    case = Case.parse(spec)
    assert Case.parse(case.spec) == case
    assert hash(Case.parse(case.spec)) == hash(case)


def test_parse_reads_every_key():
    case = Case.parse("name=a x=4,6,12,12 w=6,2,5,5 stride=2,1 padding=2:3,4 dilation=2 groups=3 bias=true")
    assert case == Case(
        "a", (4, 6, 12, 12), (6, 2, 5, 5), stride=(2, 1), padding=((2, 3), 4), dilation=2, groups=3, with_bias=True
    )
    assert Case.parse("x=1,1,5,5 w=1,1,3,3 padding=same").padding == "SAME"
    assert Case.parse("x=1,1,5,5 w=1,1,3,3", name="given").name == "given"


def test_case_shapes_and_flops():
    case = Case.parse("x=2,3,8,8 w=4,3,3,3 stride=2 padding=1")
    assert case.out_shape == (2, 4, 4, 4)
    # 2 * N * FN * OH * OW * C * FH * FW
    assert case.flops == 2 * 2 * 4 * 4 * 4 * 3 * 3 * 3
    assert case.gemm_shape == (1, 2 * 4 * 4, 3 * 3 * 3, 4)
    grouped = Case.parse("x=1,6,5,5 w=9,2,3,3 groups=3")
    assert grouped.gemm_shape == (3, 9, 2 * 9, 3)
    assert grouped.flops == 2 * 1 * 9 * 3 * 3 * 2 * 3 * 3
    assert lax_conv(jnp.ones(case.x), jnp.ones(case.w), **case.options).shape == case.out_shape


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "lacks x and w"),
        ("x=1,1,5,5", "lacks w"),
        ("x=1,1,5,5 w=1,1,3,3 kernel=3", "unknown key 'kernel'"),
        ("x=1,1,5,5 w=1,1,3,3 stride", "expected key=value"),
        ("x=1,1,5,5 w=1,1,3,3 stride=", "expected key=value"),
        ("x=1,1,5,5 w=1,1,3,3 x=1,1,5,5", "given twice"),
        ("x=1,1,five,5 w=1,1,3,3", "x must be comma-separated ints"),
        ("x=1,1,5,5 w=1,1,3,3 padding=1:2:3", "padding must be comma-separated ints"),
        ("x=1,1,5,5 w=1,1,3,3 bias=maybe", "bias must be 0/1"),
        ("x=1,1,5,5 w=1,1,3,3 groups=1,2", "groups must be one int"),
        ("x=1,4,5,5 w=2,3,3,3", "x has C=4 channels"),
        ("x=1,1,5,5 w=1,1,3", "rank of x"),
        ("x=1,1,5,5 w=1,1,7,7", "larger than the padded input"),
        ("x=1,1,5,5 w=1,1,3,3 stride=0", "stride must be >= 1"),
        ("x=1,1,0,5 w=1,1,3,3", "positive ints"),
        ("x=1,1,5,5 w=1,1,3,3 name=a=b", "name"),
    ],
)
def test_parse_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        Case.parse(spec)


def test_presets():
    assert {"cpu-small", "cnn"} <= set(PRESETS)
    cnn = {case.name: case for case in PRESETS["cnn"]}
    assert cnn["cifar2"] == Case("cifar2", (64, 64, 32, 32), (64, 64, 3, 3), padding=1)
    assert cnn["cifar_s2"] == Case("cifar_s2", (64, 64, 32, 32), (128, 64, 3, 3), stride=2, padding=1)
    assert {"lenet1", "lenet2", "cifar1", "cifar3", "conv1x1"} < set(cnn)
    assert any(c.groups == c.x[1] > 1 for c in cnn.values()), "a depthwise case"
    assert any(c.dilation != 1 for c in cnn.values()), "a dilated case"
    assert not any(c.with_bias for c in cnn.values())
    assert sum(c.flops for c in PRESETS["cpu-small"]) < 1e8


# --- helpers ------------------------------------------------------------------


def test_error_of():
    error = Error.of(jnp.array([1.0, -3.5]), jnp.array([1.5, -4.0]))
    assert error == Error(0.5, 0.125)
    assert Error.of(jnp.zeros(3), jnp.zeros(3)) == Error(0.0, 0.0)
    assert math.isnan(Error.of(jnp.array([jnp.nan]), jnp.array([1.0])).abs)


def test_time_interleaved_counts_and_orders_calls():
    calls = []
    slow = lambda: (calls.append("slow"), time.sleep(0.003))
    fast = lambda: calls.append("fast")
    other = lambda: calls.append("other")
    timings = time_interleaved([{"slow": slow, "fast": fast}, {"other": other}], repeats=4, min_time=0, blocks=2)
    assert {name: t.repeats for name, t in timings.items()} == {"slow": 4, "fast": 4, "other": 4}
    assert timings["slow"].median >= 0.003 > timings["fast"].median
    assert timings["slow"].min <= timings["slow"].median
    # Warm-up and estimate: 2 calls each. Then per block and group: one untimed call each after the switch,
    # then 2 rounds rotating which goes first.
    block = ["slow", "fast", "slow", "fast", "fast", "slow", "other", "other", "other"]
    assert calls[6:] == block + block


def test_time_interleaved_min_time_adds_repeats():
    timings = time_interleaved([{"nap": lambda: time.sleep(0.002)}], repeats=1, min_time=0.03)
    assert 5 <= timings["nap"].repeats <= 15


# --- compare ------------------------------------------------------------------


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
    [result] = compare(TINY, repeats=1, min_time=0, torch=False, conv_fn=off_by_a_little, tolerance=1e-2)
    assert result.ok


def test_compare_lax_against_itself_is_exact_on_cpu():
    # An independent check of the error plumbing: lax at default precision is lax at HIGHEST on CPU in float32.
    [result] = compare(TINY, repeats=1, min_time=0, torch=False, conv_fn=lax_conv)
    assert all(error.abs == 0 for error in result.errors.values())


def test_compare_argument_errors():
    with pytest.raises(ValueError, match="dtype must be one of"):
        compare(TINY, dtype="int32")
    with pytest.raises(ValueError, match="float64 needs 64-bit JAX"):
        compare(TINY, dtype="float64")
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        compare(TINY, repeats=0, torch=False)


# --- the CLI ------------------------------------------------------------------


def test_cli_writes_json_and_csv(tmp_path, capsys):
    json_path, csv_path = tmp_path / "out.json", tmp_path / "out.csv"
    argv = ["compare", "--preset", "cpu-small", "--repeats", "2", "--min-time", "0", "--torch", "off"]
    status = main(argv + ["--json", str(json_path), "--csv", str(csv_path)])
    assert status == 0
    document = json.loads(json_path.read_text())
    names = [case.name for case in PRESETS["cpu-small"]]
    assert [r["case"]["name"] for r in document["results"]] == names
    assert all(r["ok"] and r["derived"]["value_and_grad_ratio_vs_lax"] > 0 for r in document["results"])
    assert document["environment"]["cores"] >= 1
    with open(csv_path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["case.name"] for row in rows] == names
    assert float(rows[0]["errors.out.rel"]) <= TOLERANCES["float32"]
    out = capsys.readouterr()
    assert all(name in out.out for name in names)
    assert "[1/5]" in out.err


def test_cli_case_and_only(capsys):
    argv = ["compare", "--case", "name=one " + TINY, "--case", "name=two x=1,2,6 w=2,2,3", "--only", "two"]
    assert main(argv + ["--repeats", "1", "--min-time", "0", "--torch", "off", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "two " in out.out and "one " not in out.out and out.err.count("[1/1]") == 0


def test_cli_fails_when_an_error_exceeds_the_tolerance(monkeypatch, capsys):
    wrong = lambda x, w, b=None, **options: lax_conv(x, w, b, **options) + 1e-2
    monkeypatch.setattr(compare_module, "conv", wrong)
    argv = ["compare", "--case", TINY, "--repeats", "1", "--min-time", "0", "--torch", "off", "--quiet"]
    assert main(argv) == 1
    assert "FAIL" in capsys.readouterr().err


def test_cli_rejects_bad_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--case", "x=1,1,5,5"])
    assert exit_info.value.code == 2
    assert "lacks w" in capsys.readouterr().err
    assert main(["compare", "--preset", "cpu-small", "--only", "nope"]) == 2


def test_malloc_note(monkeypatch):
    for name in compare_module.MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    note = compare_module.malloc_note()
    if note is not None:  # glibc only
        assert "MALLOC_MMAP_THRESHOLD_" in note
    for name, value in compare_module.MALLOC_ENV.items():
        monkeypatch.setenv(name, value)
    assert compare_module.malloc_note() is None


# --- benchmarks/run.py: the targets are computed from the results -------------


@functools.cache
def _benchmark_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
    spec = importlib.util.spec_from_file_location("jaxconv_benchmark_run", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _fake_result(name, vag_ratio, fwd_ratio, gemm_fraction, temp_ratio):
    from jaxconv.compare import CaseResult, Timing

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
    run = _benchmark_module()
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
