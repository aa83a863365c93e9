"""Plain-text tables of :class:`CaseResult` s, and their JSON and CSV files."""

from __future__ import annotations

import csv
import json
import math
import os
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jaxconv.compare.environment import environment
from jaxconv.compare.errors import ARITHMETIC_TOLERANCES
from jaxconv.compare.results import CaseResult
from jaxconv.compare.timing import Timing


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _ratio(value: float | None) -> str:
    return _fmt(value, ".3g")


def _mib(size: int | None) -> str:
    return "n/a" if size is None else f"{size / 2**20:.1f}"


WIDTH = 100
"""The widest line of the plain-text report: a table wider than this is cut into column blocks."""


def wrap(text: str, indent: str = "  ", first: str = "") -> list[str]:
    """``text`` in lines of at most :data:`WIDTH` characters: the first led by ``first``, the rest by ``indent``."""
    return textwrap.wrap(text, WIDTH, initial_indent=first, subsequent_indent=indent, break_on_hyphens=False) or [""]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, left: Sequence[int] = ()) -> str:
    """Aligned columns, the first and those in ``left`` left-aligned, the others right-aligned.

    A table wider than :data:`WIDTH` is cut into blocks of columns, each led by the first column.

    >>> print(_table(["case", "a", "b"], [["x", "1", "22"]]))
    case  a   b
    ----  -  --
    x     1  22
    """
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    blocks: list[list[int]] = [[]]
    used = widths[0]
    for i in range(1, len(widths)):
        if blocks[-1] and used + 2 + widths[i] > WIDTH:
            blocks.append([])
            used = widths[0]
        blocks[-1].append(i)
        used += 2 + widths[i]

    def line(cells: Sequence[str], columns: Sequence[int]) -> str:
        align = lambda i: str(cells[i]).ljust(widths[i]) if i in left else str(cells[i]).rjust(widths[i])
        return "  ".join([str(cells[0]).ljust(widths[0]), *map(align, columns)]).rstrip()

    return "\n\n".join(
        "\n".join([line(header, columns), line(["-" * w for w in widths], columns), *(line(r, columns) for r in rows)])
        for columns in blocks
    )


def geometric_mean(values: Iterable[float | None]) -> float | None:
    """Of the values that are not None; None if none are.

    >>> geometric_mean([0.5, 2.0, None])
    1.0
    """
    present = [v for v in values if v is not None]
    return math.exp(sum(map(math.log, present)) / len(present)) if present else None


def describe_precision(result: CaseResult) -> str:
    """What the GEMMs computed in, e.g. ``float32 at precision=default on gpu: tensorfloat32 arithmetic``."""
    precision = result.precision or "default"
    return f"{result.dtype} at precision={precision} on {result.platform}: {result.arithmetic} arithmetic"


def _ints(values: Sequence[int]) -> str:
    return ",".join(map(str, values))


def format_cases(results: Sequence[CaseResult]) -> str:
    """The cases' shapes and options, and the strategy jaxconv runs for each."""
    header = ["case", "x", "w", "strategy", "options"]
    rows = []
    for r in dict((r.case, r) for r in results).values():  # one row per case, whatever its dtypes
        c = r.case
        rows.append([c.name, _ints(c.x), _ints(c.w), r.strategy, " ".join(c.spec.split()[3:]) or "-"])
    return "\n".join(
        [
            "Cases (x: N,C,*spatial; w: FN,C/groups,*kernel; strategy: jaxconv's contraction)",
            _table(header, rows, left=(3, 4)),
        ]
    )


def format_accuracy(results: Sequence[CaseResult]) -> str:
    """The errors of every case, against lax at HIGHEST and against lax at the same precision."""
    header = ["case", "dtype", "out", "dL/dx", "dL/dw", "dL/db", "max abs", "vs lax", "torch", "tol", "ok"]
    rows = []
    for r in results:
        cells = [r.case.name, r.dtype]
        if r.skipped:
            rows.append(cells + ["-"] * 7 + [f"{r.tolerance:.0e}", "skip"])
            continue
        cells += ["-" if name not in r.errors else f"{r.errors[name].rel:.1e}" for name in ("out", "dx", "dw", "db")]
        cells += [f"{max(e.abs for e in r.errors.values()):.1e}"]
        cells += [_fmt(r.max_rel_error_vs_lax, ".1e"), _fmt(r.torch_max_rel_error, ".1e")]
        cells += [f"{r.tolerance:.0e}", "ok" if r.ok else "FAIL"]
        rows.append(cells)
    intro = (
        "Accuracy (reference: lax at precision=HIGHEST): relative errors (max abs error over max "
        "|reference|) of the output and the gradients; max abs: the largest abs error of them; vs lax: our "
        "largest relative difference from lax at the same precision as ours; torch: PyTorch's largest "
        "relative error; tol: the tolerance on the relative errors, for"
    )
    arithmetics = [f"  {a}" for a in dict.fromkeys(describe_precision(r) for r in results)]
    return "\n".join([*wrap(intro), *arithmetics, _table(header, rows)])


def _ms(timing: Timing | None) -> str:
    return "n/a" if timing is None else f"{timing.median * 1e3:.2f}"


def format_speed(results: Sequence[CaseResult]) -> str:
    """Times, rates and memory of the timed cases (and PyTorch's times), and the geometric means of the ratios."""
    timed = [r for r in results if r.timed]
    speed, rates, torch = [], [], []
    for r in timed:
        f, v = r.forward, r.value_and_grad
        noise = max(t.iqr / t.median for t in (v["jaxconv"], v["lax"]))
        speed.append([r.case.name, r.strategy, _ms(f["jaxconv"]), _ms(f["lax"]), _ratio(r.ratio("forward"))])
        speed[-1] += [_ms(v["jaxconv"]), _ms(v["lax"]), _ratio(r.ratio("value_and_grad")), f"{noise:.0%}"]
        rates.append(
            [
                r.case.name,
                f"{r.case.flops / 1e9:.3g}",
                _fmt(r.gflops("forward"), ".1f"),
                _fmt(r.gflops("value_and_grad"), ".1f"),
                _fmt(r.gemm_gflops, ".1f"),
                _fmt(r.gemm_fraction(), ".0%"),
                _mib(r.temp_bytes["jaxconv_value_and_grad"]),
                _mib(r.temp_bytes["lax_value_and_grad"]),
                _ratio(r.temp_ratio),
            ]
        )
        if "torch" in v:
            torch.append([r.case.name, _ms(f.get("torch")), _ms(v["torch"])])
            torch[-1] += [_ratio(r.ratio("forward", "torch")), _ratio(r.ratio("value_and_grad", "torch"))]
    means = {
        "forward vs lax": geometric_mean(r.ratio("forward") for r in timed),
        "value_and_grad vs lax": geometric_mean(r.ratio("value_and_grad") for r in timed),
        "forward vs torch": geometric_mean(r.ratio("forward", "torch") for r in timed),
        "value_and_grad vs torch": geometric_mean(r.ratio("value_and_grad", "torch") for r in timed),
    }
    lines = [
        "Speed (median ms; ratio = jaxconv / lax; vag = value_and_grad; noise = IQR/median, worst of the two)",
        _table(["case", "strategy", "fwd ms", "lax", "ratio", "vag ms", "lax", "ratio", "noise"], speed, left=(1,)),
        "",
        "Rates and memory (GFLOP: the forward's; fwd/GEMM = our forward GFLOP/s over a plain GEMM of the",
        "                  same M, K, N; temp = vag's XLA temp bytes, ratio = jaxconv / lax)",
        _table(["case", "GFLOP", "GFLOP/s fwd", "vag", "GEMM", "fwd/GEMM", "temp MiB", "lax", "ratio"], rates),
    ]
    if torch:
        header = ["case", "torch fwd ms", "vag ms", "jaxconv/torch fwd", "vag"]
        lines += ["", "PyTorch (median ms, and jaxconv's time over PyTorch's)", _table(header, torch)]
    lines += ["", "geometric means of jaxconv's time ratios:"]
    lines += wrap(", ".join(f"{k} {_ratio(v)}" for k, v in means.items()), first="  ")
    return "\n".join(lines)


def format_notes(results: Sequence[CaseResult]) -> list[str]:
    """Each note once, with the cases it concerns ("all cases" when every case has it), wrapped to :data:`WIDTH`."""
    cases: dict[str, list[str]] = {}
    for r in results:
        for note in r.notes:
            cases.setdefault(note, []).append(
                f"{r.case.name} ({r.dtype})" if len({x.dtype for x in results}) > 1 else r.case.name
            )
    lines = []
    for note, names in cases.items():
        where = "all cases" if len(names) == len(results) > 1 else ", ".join(dict.fromkeys(names))
        lines += wrap(f"{where}: {note}")
    return lines


def format_results(results: Sequence[CaseResult]) -> str:
    """The cases, then plain tables one row per case: accuracy, speed and memory (when timed), and the notes.

    With several dtypes the accuracy and speed tables come once per dtype.
    """
    parts = [format_cases(results)]
    dtypes = list(dict.fromkeys(r.dtype for r in results))
    for dtype in dtypes:
        group = [r for r in results if r.dtype == dtype]
        parts += ["", f"== {dtype} ==", ""] if len(dtypes) > 1 else [""]
        parts.append(format_accuracy(group))
        if any(r.timed for r in group):
            parts += ["", format_speed(group)]
    notes = format_notes(results)
    if notes:
        parts += ["", *notes]
    return "\n".join(parts)


def check_writable(path: str | os.PathLike, name: str) -> None:
    """Raises ValueError naming ``name`` unless a file can be written at ``path``; leaves no file behind.

    Called before any measurement, so that a bad ``--json`` or ``--csv`` fails in a second, not after minutes.

    >>> check_writable("/proc/no/such/dir/out.json", "--json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: --json /proc/no/such/dir/out.json: cannot write a file there (...)
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{name} {path}: is a directory")
    existed = os.path.exists(path)
    try:
        with open(path, "a"):
            pass
    except OSError as error:
        raise ValueError(f"{name} {path}: cannot write a file there ({error.strerror})") from None
    if not existed:
        os.remove(path)


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def write_json(path: str | os.PathLike, results: Sequence[CaseResult], **meta: Any) -> None:
    """``{"environment": ..., "tolerances": ..., "results": [...]}`` with each result's :meth:`CaseResult.to_dict`."""
    document = {
        "environment": environment(),
        "tolerances": ARITHMETIC_TOLERANCES,
        **meta,
        "results": [r.to_dict() for r in results],
    }
    with open(path, "w") as file:
        json.dump(document, file, indent=2, default=str)
        file.write("\n")


def write_csv(path: str | os.PathLike, results: Sequence[CaseResult]) -> None:
    """One row per case: the flattened :meth:`CaseResult.to_dict` (columns like ``errors.dx.rel``)."""
    rows = [_flatten(r.to_dict()) for r in results]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
