"""Tests of jaxconv.compare.report and .environment: tables, files, the writability check, the malloc note."""

from __future__ import annotations

import dataclasses

import pytest

from jaxconv import compare as compare_module
from jaxconv.compare import PRESETS, CaseResult, Error, Timing, format_accuracy, format_results, geometric_mean
from jaxconv.compare.report import WIDTH, _table, check_writable, format_cases


def _result(timed: bool, case=PRESETS["cpu-small"][0], dtype="float32") -> CaseResult:
    t = Timing(1e-3, 1e-3, 0.0, 3)
    return CaseResult(
        case=case,
        dtype=dtype,
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
    row = next(line for line in text.splitlines() if line.startswith("small ") and "float32" in line)
    assert row.endswith("5e-03  ok")


def test_format_results_without_timing_has_no_speed_table():
    result = _result(timed=False)
    assert result.ratio("value_and_grad") is None and result.gemm_fraction() is None and result.temp_ratio is None
    text = format_results([result])
    assert "Speed" not in text and text == format_cases([result]) + "\n\n" + format_accuracy([result])


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


def _slow_result(case, dtype, *, torch=True, notes=()):
    t = lambda ms: Timing(ms * 1e-3, ms * 1e-3, ms * 1e-4, 10)
    times = {"jaxconv": t(1234.56), "lax": t(98765.43)} | ({"torch": t(4321.0)} if torch else {})
    errors = {name: Error(1.5e-1, 2.5e-3) for name in ("out", "dx", "dw", "db")}
    return CaseResult(
        case=case,
        dtype=dtype,
        tolerance=4e-2,
        errors=errors,
        torch_errors=errors if torch else None,
        forward={**times, "gemm": t(10.0)},
        value_and_grad=times,
        temp_bytes={"jaxconv_value_and_grad": 123 * 2**20, "lax_value_and_grad": 4567 * 2**20},
        errors_vs_lax=errors,
        notes=notes,
        strategy="transposed/gemm",
    )


def test_format_results_fits_100_columns():
    # Every kind of row at once: long names and shapes, torch columns, two dtypes, a skipped case, long notes.
    long_note = "torch failed on bfloat16 (cpu): " + "a long PyTorch message " * 8
    results = [
        _slow_result(case, dtype, notes=(long_note,) if dtype == "bfloat16" else ())
        for dtype in ("float32", "bfloat16")
        for case in PRESETS["slowpaths"] + PRESETS["slowpaths-gpu"]
    ]
    skipped = CaseResult(
        case=PRESETS["cnn"][0],
        dtype="float32",
        tolerance=1e-4,
        errors={},
        torch_errors=None,
        forward={},
        value_and_grad={},
        temp_bytes={},
        notes=("backend='pallas' refused it: " + "the reason why " * 10,),
        skipped=True,
    )
    text = format_results([*results, skipped])
    widths = [len(line) for line in text.splitlines()]
    assert max(widths) <= WIDTH == 100, [line for line in text.splitlines() if len(line) > WIDTH]
    for heading in ("== float32 ==", "== bfloat16 ==", "Speed", "Rates and memory", "PyTorch"):
        assert heading in text
    assert "transposed/gemm" in text and "tconv2d_s2op" in text
    skipped_row = next(line for line in text.splitlines() if line.startswith("lenet1 ") and "float32" in line)
    assert skipped_row.endswith("skip")
    assert text.count("torch failed on bfloat16") == 1, "a note common to many cases is printed once"


def test_a_table_wider_than_the_page_is_cut_into_blocks_led_by_the_first_column():
    header = ["case", *(f"column{i}" for i in range(20))]
    rows = [["a_case_name", *(f"{i * 1000.5:.1f}" for i in range(20))]]
    lines = _table(header, rows).splitlines()
    assert max(map(len, lines)) <= WIDTH
    blocks = [line for line in lines if line.startswith("case ")]
    assert len(blocks) >= 2 and sum(line.count("column") for line in blocks) == 20
    assert sum(line.startswith("a_case_name ") for line in lines) == len(blocks)


def test_notes_shared_by_every_case_are_said_once():
    note = "something every case shares"
    results = [dataclasses.replace(_result(True, case), notes=(note,)) for case in PRESETS["cpu-small"]]
    text = format_results(results)
    assert text.count(note) == 1 and f"all cases: {note}" in text
