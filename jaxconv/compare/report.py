"""Plain-text tables of :class:`CaseResult` s, and their JSON and CSV files."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jaxconv.compare.environment import environment
from jaxconv.compare.errors import ARITHMETIC_TOLERANCES
from jaxconv.compare.results import CaseResult


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _ratio(value: float | None) -> str:
    return _fmt(value, ".3g")


def _mib(size: int | None) -> str:
    return "n/a" if size is None else f"{size / 2**20:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
    )
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


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


def format_accuracy(results: Sequence[CaseResult]) -> str:
    """The errors of every case, against lax at HIGHEST and against lax at the same precision."""
    header = ["case", "dtype", "out abs/rel", "dL/dx abs/rel", "dL/dw abs/rel", "dL/db abs/rel"]
    header += ["vs lax rel", "torch rel", "tolerance", "ok"]
    rows = []
    for r in results:
        cells = [r.case.name, r.dtype]
        for name in ("out", "dx", "dw", "db"):
            e = r.errors.get(name)
            cells.append("-" if e is None else f"{e.abs:.1e}/{e.rel:.1e}")
        cells += [_fmt(r.max_rel_error_vs_lax, ".1e"), _fmt(r.torch_max_rel_error, ".1e")]
        cells += [f"{r.tolerance:.0e}", "ok" if r.ok else "FAIL"]
        rows.append(cells)
    arithmetics = ", ".join(dict.fromkeys(describe_precision(r) for r in results))
    return "\n".join(
        [
            "Accuracy (max abs error / the same over max |reference|; reference: lax at precision=HIGHEST;",
            "          vs lax: our largest relative difference from lax at the same precision as ours;",
            f"          tolerance on the relative errors: {arithmetics})",
            _table(header, rows),
        ]
    )


def format_speed(results: Sequence[CaseResult]) -> str:
    """Times, rates and memory of the timed cases, and the geometric means of the ratios."""
    header = ["case", "fwd ms", "lax", "ratio", "vag ms", "lax", "ratio", "noise", "GFLOP/s fwd", "vag"]
    header += ["GEMM", "fwd/GEMM", "temp MiB", "lax", "ratio", "torch vag ms", "ours/torch"]
    timed = [r for r in results if r.timed]
    rows = []
    for r in timed:
        f, v = r.forward, r.value_and_grad
        noise = max(t.iqr / t.median for t in (v["jaxconv"], v["lax"]))
        rows.append(
            [
                r.case.name,
                f"{f['jaxconv'].median * 1e3:.2f}",
                f"{f['lax'].median * 1e3:.2f}",
                _ratio(r.ratio("forward")),
                f"{v['jaxconv'].median * 1e3:.2f}",
                f"{v['lax'].median * 1e3:.2f}",
                _ratio(r.ratio("value_and_grad")),
                f"{noise:.0%}",
                _fmt(r.gflops("forward"), ".1f"),
                _fmt(r.gflops("value_and_grad"), ".1f"),
                _fmt(r.gemm_gflops, ".1f"),
                _fmt(r.gemm_fraction(), ".0%"),
                _mib(r.temp_bytes["jaxconv_value_and_grad"]),
                _mib(r.temp_bytes["lax_value_and_grad"]),
                _ratio(r.temp_ratio),
                _fmt(v["torch"].median * 1e3 if "torch" in v else None, ".2f"),
                _ratio(r.ratio("value_and_grad", "torch")),
            ]
        )
    means = {
        "forward vs lax": geometric_mean(r.ratio("forward") for r in timed),
        "value_and_grad vs lax": geometric_mean(r.ratio("value_and_grad") for r in timed),
        "value_and_grad vs torch": geometric_mean(r.ratio("value_and_grad", "torch") for r in timed),
    }
    return "\n".join(
        [
            "Speed (median ms; ratio = jaxconv / lax; vag = value_and_grad; noise = IQR/median, worst of the two;",
            "       fwd/GEMM = our forward GFLOP/s over a plain GEMM of the same M, K, N; temp = vag's XLA temp bytes)",
            _table(header, rows),
            "",
            "geometric means of jaxconv time ratios: " + ", ".join(f"{k} {_ratio(v)}" for k, v in means.items()),
        ]
    )


def format_results(results: Sequence[CaseResult]) -> str:
    """Two plain tables, one row per case: accuracy, then (for timed results) speed and memory, and the means."""
    parts = [format_accuracy(results)]
    if any(r.timed for r in results):
        parts += ["", format_speed(results)]
    parts += [f"{r.case.name}: {note}" for r in results for note in r.notes]
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
