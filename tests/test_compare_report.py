"""Tests of jaxconv.compare.report and .environment: tables, files, the writability check, the malloc note."""

from __future__ import annotations

import pytest

from jaxconv import compare as compare_module
from jaxconv.compare import PRESETS, CaseResult, Error, Timing, format_accuracy, format_results, geometric_mean
from jaxconv.compare.report import check_writable


def _result(timed: bool) -> CaseResult:
    t = Timing(1e-3, 1e-3, 0.0, 3)
    return CaseResult(
        case=PRESETS["cpu-small"][0],
        dtype="float32",
        tolerance=5e-3,
        errors={"out": Error(1e-6, 2e-4), "dx": Error(1e-6, 1e-4)},
        torch_errors=None,
        forward={"jaxconv": t, "lax": t, "gemm": t} if timed else {},
        value_and_grad={"jaxconv": t, "lax": t} if timed else {},
        temp_bytes={"jaxconv_value_and_grad": 2**20, "lax_value_and_grad": 2**21} if timed else {},
        errors_vs_lax={"out": Error(1e-6, 3e-4)},
        platform="gpu",
        arithmetic="tensorfloat32",
    )


def test_format_results_names_the_arithmetic_and_both_references():
    text = format_results([_result(timed=True)])
    assert "reference: lax at precision=HIGHEST" in text
    assert "float32 at precision=default on gpu: tensorfloat32 arithmetic" in text
    assert "3.0e-04" in text  # vs lax at the same precision
    assert "Speed" in text and "value_and_grad vs lax 1" in text
    row = next(line for line in text.splitlines() if line.startswith("small "))
    assert row.endswith("5e-03  ok")


def test_format_results_without_timing_has_no_speed_table():
    result = _result(timed=False)
    assert result.ratio("value_and_grad") is None and result.gemm_fraction() is None and result.temp_ratio is None
    text = format_results([result])
    assert "Speed" not in text and text == format_accuracy([result])


def test_geometric_mean():
    assert geometric_mean([None]) is None
    assert geometric_mean([4.0, 1.0]) == pytest.approx(2.0)


def test_check_writable(tmp_path):
    check_writable(tmp_path / "new.json", "--json")
    assert not (tmp_path / "new.json").exists(), "the check leaves no file behind"
    existing = tmp_path / "old.csv"
    existing.write_text("kept")
    check_writable(existing, "--csv")
    assert existing.read_text() == "kept"
    # Tests run as root, whom permissions do not stop: a path under a regular file cannot be written by anyone.
    with pytest.raises(ValueError, match=r"--json .*/old.csv/out.json: cannot write a file there \(Not a directory\)"):
        check_writable(existing / "out.json", "--json")
    with pytest.raises(ValueError, match="No such file or directory"):
        check_writable(tmp_path / "absent" / "out.json", "--json")
    with pytest.raises(ValueError, match="is a directory"):
        check_writable(tmp_path, "--csv")


def test_malloc_note(monkeypatch):
    for name in compare_module.MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    note = compare_module.malloc_note()
    if note is not None:  # glibc only
        assert "MALLOC_MMAP_THRESHOLD_" in note
    for name, value in compare_module.MALLOC_ENV.items():
        monkeypatch.setenv(name, value)
    assert compare_module.malloc_note() is None
