"""Tests of the jaxconv command: dispatch, help, jaxconv compare's options and files, and jaxconv check."""

from __future__ import annotations

import csv
import importlib
import json
import pathlib
import subprocess
import sys

import pytest

from jaxconv import cli as cli_module
from jaxconv import lax_conv
from jaxconv.cli import main
from jaxconv.compare import PRESETS, TOLERANCES
from jaxconv.compare import cli as compare_cli
from jaxconv.compare import runners as runners_module

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = "x=2,3,7,7 w=4,3,3,3 padding=1 bias=1"
TRANSPOSED = "x=2,4,5,5 w=3,4,3,3 lhs_dilation=2 padding=1:2,1:2"
FAST = ["--repeats", "1", "--min-time", "0", "--torch", "off", "--quiet"]


# --- dispatch and help -----------------------------------------------------------


@pytest.mark.parametrize("argv", [["--help"], ["compare", "--help"], ["check", "--help"]])
def test_help_is_plain_text(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: jaxconv")
    assert "``" not in out and ":func:" not in out


def test_subcommand_modules():
    for name, (module_name, _) in cli_module.SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        assert callable(module.add_arguments) and callable(module.run), name
    assert [cli_module.SUBCOMMANDS[name][0] for name in ("train", "compare", "check")] == [
        "jaxconv.train.cli",
        "jaxconv.compare.cli",
        "jaxconv.compare.check",
    ]


def test_the_command_imports_no_jax_before_it_holds_ctrl_c():
    """``import jaxconv`` and ``jaxconv.cli`` are light: JAX loads inside main(), where Ctrl-C is recorded."""
    code = "import sys, jaxconv, jaxconv.cli; print('jax' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert run.stdout.strip() == "False"


def test_public_names_load_on_first_use():
    import jaxconv

    assert set(jaxconv.__all__) <= set(dir(jaxconv))
    for name in jaxconv.__all__:
        assert getattr(jaxconv, name).__module__.startswith("jaxconv"), name
    assert jaxconv.nn.__name__ == "jaxconv.nn"
    with pytest.raises(AttributeError, match="module 'jaxconv' has no attribute 'conv4d'"):
        jaxconv.conv4d  # noqa: B018


def test_unknown_command_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["nope"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'nope'" in err


# --- jaxconv compare ---------------------------------------------------------------


def test_cli_writes_json_and_csv(tmp_path, capsys):
    json_path, csv_path = tmp_path / "out.json", tmp_path / "out.csv"
    argv = ["compare", "--preset", "cpu-small", "--repeats", "2", "--min-time", "0", "--torch", "off"]
    status = main(argv + ["--json", str(json_path), "--csv", str(csv_path)])
    assert status == 0
    document = json.loads(json_path.read_text())
    names = [case.name for case in PRESETS["cpu-small"]]
    assert [r["case"]["name"] for r in document["results"]] == names
    assert all(r["ok"] and r["derived"]["value_and_grad_ratio_vs_lax"] > 0 for r in document["results"])
    assert all(r["max_rel_error_vs_lax"] <= TOLERANCES["float32"] for r in document["results"])
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


def test_cli_precision(capsys):
    assert main(["compare", "--case", TINY, "--precision", "highest", *FAST]) == 0
    assert "float32 at precision=highest on cpu: float32 arithmetic" in capsys.readouterr().out


def test_cli_fails_when_an_error_exceeds_the_tolerance(monkeypatch, capsys):
    wrong = lambda x, w, b=None, **options: lax_conv(x, w, b, **options) + 1e-2
    monkeypatch.setattr(runners_module, "conv", wrong)
    argv = ["compare", "--case", TINY, "--repeats", "1", "--min-time", "0", "--torch", "off", "--quiet"]
    assert main(argv) == 1
    assert "FAIL" in capsys.readouterr().err


def test_cli_rejects_bad_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--case", "x=1,1,5,5"])
    assert exit_info.value.code == 2
    assert "lacks w" in capsys.readouterr().err
    assert main(["compare", "--preset", "cpu-small", "--only", "nope"]) == 2


@pytest.fixture
def no_measuring(monkeypatch):
    """Fails the test if anything is measured: bad options must stop the run first."""
    monkeypatch.setattr(compare_cli, "run_cases", lambda *a, **k: pytest.fail("measured before checking"))
    monkeypatch.setattr(runners_module, "_compare_case", lambda *a, **k: pytest.fail("measured before checking"))


@pytest.mark.parametrize(
    "options, message",
    [
        (["--min-time", "-1"], "argument --min-time: must be >= 0, got -1.0"),
        (["--min-time", "nan"], "argument --min-time: must be finite, got nan"),
        (["--min-time", "inf"], "argument --min-time: must be finite, got inf"),
        (["--min-time", "soon"], "argument --min-time: must be a number, got 'soon'"),
        (["--seed", "-5"], "argument --seed: must be >= 0, got -5"),
        (["--seed", "1.5"], "argument --seed: must be an int, got '1.5'"),
        (["--repeats", "0"], "argument --repeats: must be >= 1, got 0"),
        (["--tolerance", "0"], "argument --tolerance: must be > 0, got 0.0"),
        (["--tolerance", "nan"], "argument --tolerance: must be finite"),
        (["--precision", "fast"], "argument --precision: invalid choice: 'fast'"),
    ],
)
def test_cli_bad_numbers_are_one_line_before_measuring(no_measuring, capsys, options, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--case", TINY, *options])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("jaxconv compare: error: ") and message in err


@pytest.mark.parametrize("option", ["--json", "--csv"])
def test_cli_unwritable_output_fails_before_measuring(no_measuring, tmp_path, capsys, option):
    # Tests run as root, whom permissions do not stop: nobody can create a file under a regular file.
    blocker = tmp_path / "file"
    blocker.write_text("")
    target = blocker / "out.json"
    assert main(["compare", "--case", TINY, *FAST, option, str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{option} {target}: cannot write a file there" in err
    assert main(["compare", "--case", TINY, *FAST, option, str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_cli_torch_on_without_torch_fails_before_measuring(no_measuring, capsys):
    try:
        import torch  # noqa: F401
    except ImportError:
        assert main(["compare", "--case", TINY, "--torch", "on"]) == 2
        assert "PyTorch cannot be imported" in capsys.readouterr().err
    else:
        pytest.skip("torch is installed")


def test_cli_says_a_missing_torch_once(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    argv = ["compare", "--case", TINY, "--case", "x=1,2,6 w=2,2,3", "--repeats", "1", "--min-time", "0", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert (out.out + out.err).count("torch not installed") == 1


def test_cli_tables_fit_100_columns(capsys):
    argv = ["compare", "--case", "name=a_long_case_name " + TINY, "--case", "name=t " + TRANSPOSED, *FAST]
    assert main(argv + ["--dtype", "float32", "--dtype", "bfloat16"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "== float32 ==" in out and "== bfloat16 ==" in out and "lhs_dilation=2" in out


def test_cli_backend(monkeypatch, capsys):
    seen = []
    real = runners_module.conv
    monkeypatch.setattr(runners_module, "conv", lambda *a, **k: seen.append(k["backend"]) or real(*a, **k))
    assert main(["compare", "--case", TINY, *FAST, "--backend", "auto"]) == 0
    assert set(seen) == {"auto"} and "backend auto" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--case", TINY, "--backend", "cudnn"])
    assert exit_info.value.code == 2 and "argument --backend: invalid choice: 'cudnn'" in capsys.readouterr().err


# --- jaxconv check -----------------------------------------------------------------


def test_check_passes_and_prints_the_errors(capsys):
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert all(case.name in out for case in PRESETS["cpu-small"])
    assert "reference: lax at precision=HIGHEST" in out and "Speed" not in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("ok: worst relative error") and last.endswith(" s")


def test_check_fails_on_a_wrong_conv(monkeypatch, capsys):
    wrong = lambda x, w, b=None, **options: lax_conv(x, w, b, **options) * 1.01
    monkeypatch.setattr(runners_module, "conv", wrong)
    assert main(["check", "--seed", "3"]) == 1
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("FAIL in small, strided")


def test_check_rejects_a_negative_seed(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--seed", "-1"])
    assert exit_info.value.code == 2
    assert "argument --seed: must be >= 0, got -1" in capsys.readouterr().err


def test_check_prints_its_cases_shapes(capsys):
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    for case in PRESETS["cpu-small"]:
        row = next(line for line in out.splitlines() if line.startswith(case.name + " "))
        assert ",".join(map(str, case.x)) in row and ",".join(map(str, case.w)) in row, row


def test_check_backend_pallas_reports_a_refusal_per_case(monkeypatch, capsys):
    def pallas_like(x, w, b=None, *, backend="xla", **options):
        if backend == "pallas" and options["groups"] > 1:
            raise ValueError("backend='pallas' does not support this convolution: groups > 1")
        return lax_conv(x, w, b, **options)

    monkeypatch.setattr(runners_module, "conv", pallas_like)
    assert main(["check", "--backend", "pallas"]) == 0
    out = capsys.readouterr().out
    assert "grouped: backend='pallas' refused it: backend='pallas' does not support this convolution" in out
    assert out.strip().splitlines()[-1].startswith("ok: worst relative error")
    assert "(1 skipped: grouped)" in out
