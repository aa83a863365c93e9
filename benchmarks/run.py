"""The jaxconv benchmark: ``jaxconv compare`` on a fixed CNN set, written to ``benchmarks/RESULTS.md``.

Runs :func:`jaxconv.compare.compare` on the ``cnn`` preset (NCHW x, OIHW w,
float32, ``value_and_grad`` with respect to x and w) and writes the machine,
the versions, the date, one row per case, the geometric means, and each
target of issue 5 with its measured value and whether it is met. Every number
in the file is computed from this run.

Run from the repository root::

    python benchmarks/run.py                 # the full set -> benchmarks/RESULTS.md
    python benchmarks/run.py --quick         # fewer repetitions, printed only
    python benchmarks/run.py --only cifar2   # one case, printed only
    python benchmarks/run.py --preset gpu    # on a GPU: bf16/f32, NCHW/NHWC, vs lax and PyTorch (cuDNN)
    python benchmarks/run.py --preset gpu --scale-down 16 --quick   # the same plumbing on a CPU, in seconds

The script re-executes itself with glibc's ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` raised (see ``jaxconv.compare.MALLOC_ENV``) unless
they are set already: glibc reads them only at process start.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from jaxconv._validate import as_finite, as_int
from jaxconv.compare import (
    MALLOC_ENV,
    PRESETS,
    CaseResult,
    compare,
    environment,
    format_results,
    geometric_mean,
    select_cases,
    write_json,
)
from jaxconv.compare.cli import option_type
from jaxconv.compare.report import check_writable
from jaxconv.compare.torch_conv import import_torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # design.py and gpu.py sit beside this script, also when it is imported by path
    sys.path.insert(0, str(HERE))

from gpu import add_gpu_arguments, run_gpu  # noqa: E402

DEFAULT_OUTPUT = HERE / "RESULTS.md"
GEMM_BOUND_CASES = ("cifar2", "cifar3", "conv1x1")


def reexec_with_malloc_env(argv: Sequence[str]) -> None:
    """Replaces this process with one started under :data:`MALLOC_ENV`, unless it already is (Linux only)."""
    if not sys.platform.startswith("linux") or all(name in os.environ for name in MALLOC_ENV):
        return
    env = {**MALLOC_ENV, **os.environ}
    os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *argv], env)


# --- targets ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Target:
    """One target of the issue: what it asks, what this run measured, and whether that meets it."""

    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run

    @property
    def status(self) -> str:
        return {True: "met", False: "NOT MET", None: "n/a"}[self.met]


def _worst(results: Sequence[CaseResult], value: Callable[[CaseResult], float | None]) -> tuple[float, str] | None:
    measured = [(v, r.case.name) for r in results if (v := value(r)) is not None]
    return max(measured) if measured else None


def evaluate_targets(results: Sequence[CaseResult], backend: str = "cpu") -> list[Target]:
    """Each target of issue 5 against this run's results."""
    targets = []
    count = f"{len(results)} cases"

    vag_mean = geometric_mean(r.ratio("value_and_grad") for r in results)
    targets.append(
        Target(
            "value_and_grad time vs lax, geometric mean",
            "<= 0.5x",
            f"{vag_mean:.3g}x over {count}",
            vag_mean <= 0.5,
        )
    )
    for kind, label in (("value_and_grad", "value_and_grad"), ("forward", "forward")):
        ratio, name = _worst(results, lambda r, kind=kind: r.ratio(kind))
        targets.append(
            Target(f"{label} time vs lax, every case", "<= 1.0x", f"worst {ratio:.3g}x ({name})", ratio <= 1)
        )

    bound = [r for r in results if r.case.name in GEMM_BOUND_CASES]
    if bound:
        fraction, name = min((r.gemm_fraction("forward"), r.case.name) for r in bound)
        measured = ", ".join(f"{r.case.name} {r.gemm_fraction('forward'):.0%}" for r in bound)
        targets.append(
            Target(
                "forward rate vs measured GEMM rate on " + ", ".join(GEMM_BOUND_CASES),
                ">= 60%",
                f"{measured} (lowest {name})",
                fraction >= 0.6,
            )
        )
    else:
        targets.append(Target("forward rate vs GEMM rate", ">= 60%", "cases not run", None))

    worst_memory = _worst(results, lambda r: r.temp_ratio)
    if worst_memory is None:
        targets.append(Target("value_and_grad temp memory vs lax", "<= 1.5x", "not reported by XLA", None))
    else:
        ratio, name = worst_memory
        targets.append(
            Target(
                "value_and_grad temp memory vs lax, every case", "<= 1.5x", f"worst {ratio:.3g}x ({name})", ratio <= 1.5
            )
        )

    torch_mean = geometric_mean(r.ratio("value_and_grad", "torch") for r in results)
    targets.append(
        Target(
            "value_and_grad time vs PyTorch autograd, geometric mean (moonshot)",
            "<= 1.25x",
            "torch did not run" if torch_mean is None else f"{torch_mean:.3g}x",
            None if torch_mean is None else torch_mean <= 1.25,
        )
    )
    if backend == "gpu":
        targets.append(
            Target(
                "GPU: value_and_grad time vs cuDNN-backed lax, geometric mean",
                "<= 1.3x",
                f"{vag_mean:.3g}x",
                vag_mean <= 1.3,
            )
        )
    else:
        targets.append(
            Target("GPU: value_and_grad vs cuDNN-backed lax", "<= 1.3x", f"not measured ({backend} run)", None)
        )
    return targets


# --- the report ---------------------------------------------------------------


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def _g(value: float | None, spec: str = ".3g") -> str:
    return "n/a" if value is None else format(value, spec)


def _mib(size: int | None) -> str:
    return "n/a" if size is None else f"{size / 2**20:.1f}"


def _case_table(results: Sequence[CaseResult]) -> list[str]:
    lines = [
        _row(["case", "x (N,C,H,W)", "w (FN,C/g,FH,FW)", "stride", "padding", "dilation", "groups", "GFLOP fwd"]),
        _row(["---"] * 8),
    ]
    for r in results:
        c = r.case
        lines.append(
            _row(
                [
                    c.name,
                    ",".join(map(str, c.x)),
                    ",".join(map(str, c.w)),
                    c.stride,
                    c.padding,
                    c.dilation,
                    c.groups,
                    f"{c.flops / 1e9:.3f}",
                ]
            )
        )
    return lines


def _results_table(results: Sequence[CaseResult], has_torch: bool) -> list[str]:
    header = [
        "case",
        "fwd ms jaxconv / lax",
        "**fwd ratio**",
        "vag ms jaxconv / lax",
        "**vag ratio**",
        "GFLOP/s fwd / vag",
        "GEMM GFLOP/s",
        "% of GEMM fwd / vag",
        "vag temp MiB jaxconv / lax",
        "temp ratio",
    ]
    if has_torch:
        header += ["torch ms fwd / vag", "vs torch fwd / vag"]
    header += ["noise", "max rel error"]
    lines = [_row(header), _row(["---"] + ["--:"] * (len(header) - 1))]
    for r in results:
        f, v = r.forward, r.value_and_grad
        noise = max(t.iqr / t.median for t in (*f.values(), *v.values()))
        cells = [
            r.case.name,
            f"{_ms(f['jaxconv'].median)} / {_ms(f['lax'].median)}",
            f"{r.ratio('forward'):.3g}",
            f"{_ms(v['jaxconv'].median)} / {_ms(v['lax'].median)}",
            f"{r.ratio('value_and_grad'):.3g}",
            f"{r.gflops('forward'):.1f} / {r.gflops('value_and_grad'):.1f}",
            f"{r.gemm_gflops:.1f}",
            f"{r.gemm_fraction('forward'):.0%} / {r.gemm_fraction('value_and_grad'):.0%}",
            f"{_mib(r.temp_bytes['jaxconv_value_and_grad'])} / {_mib(r.temp_bytes['lax_value_and_grad'])}",
            _g(r.temp_ratio),
        ]
        if has_torch:
            torch_ms = f"{_ms(f['torch'].median)} / {_ms(v['torch'].median)}" if "torch" in v else "n/a"
            versus = f"{_g(r.ratio('forward', 'torch'))} / {_g(r.ratio('value_and_grad', 'torch'))}"
            cells += [torch_ms, versus]
        cells += [f"{noise:.0%}", f"{r.max_rel_error:.1e}" + ("" if r.ok else " FAIL")]
        lines.append(_row(cells))
    mean = lambda value: _g(geometric_mean(map(value, results)))
    means = ["**geometric mean**", "", mean(lambda r: r.ratio("forward")), ""]
    means += [mean(lambda r: r.ratio("value_and_grad")), "", "", "", "", mean(lambda r: r.temp_ratio)]
    if has_torch:
        fwd = geometric_mean(r.ratio("forward", "torch") for r in results)
        vag = geometric_mean(r.ratio("value_and_grad", "torch") for r in results)
        means += ["", f"{_g(fwd)} / {_g(vag)}"]
    means += ["", ""]
    lines.append(_row(means))
    return lines


def render(
    results: Sequence[CaseResult],
    info: dict,
    *,
    command: str,
    repeats: int,
    min_time: float,
    partial: bool,
    design: Sequence[str] = (),
) -> str:
    """RESULTS.md: machine, versions, date, the per-case table, the means, the targets, the design measurements."""
    has_torch = any("torch" in r.value_and_grad for r in results)
    malloc = ", ".join(f"`{k}={v}`" for k, v in info["malloc_env"].items())
    lines = [
        "# jaxconv benchmark results",
        "",
        f"Written by `{command}` on {info['date']}. Every number below is computed by that run; "
        "re-run the script rather than editing this file.",
    ]
    if partial:
        lines += ["", "**Partial or quick run**: not the full benchmark; indicative only."]
    lines += [
        "",
        "## Machine",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores usable by the process"
        + (f"; load average at the end {info['load_average']}" if "load_average" in info else ""),
        f"- JAX {info['jax']} (jaxlib {info['jaxlib']}) on {info['backend']} ({info['device']}); "
        f"PyTorch {info['torch'] or 'not installed'}; NumPy {info['numpy']}; Python {info['python']}",
        f"- {info['platform']}; malloc: {malloc}",
        f"- Timing: medians of at least {repeats} calls and about {min_time:g} s per measurement, after compile "
        "and warm-up, `block_until_ready`; jaxconv, lax and the GEMM interleaved call by call, PyTorch in "
        "blocks between them (its threads spin after a call). float32, `value_and_grad` with respect to x and w "
        "of `sum(conv(x, w) * g)`.",
        "",
        "## Cases",
        "",
        *_case_table(results),
        "",
        "## Results",
        "",
        "Ratios are jaxconv time over the other's (below 1: jaxconv is faster). vag = `value_and_grad`. "
        "GFLOP/s count 2·N·FN·prod(out)·C/groups·prod(k) for the forward and three times that for vag. "
        "GEMM GFLOP/s: a jitted `(M,K) @ (K,N)` of the forward's shape (M = N·prod(out), K = C/groups·prod(k), "
        "N = FN; per group for grouped convs), the practical limit. temp MiB: XLA `memory_analysis()` "
        "temp bytes of the compiled vag. noise: the largest IQR/median of the case's timings. "
        "max rel error: jaxconv's worst of out, dL/dx, dL/dw against lax at `precision=HIGHEST`, "
        "as max abs error / max |reference|.",
        "",
        *_results_table(results, has_torch),
        "",
        "## Targets",
        "",
        _row(["target", "goal", "measured", "status"]),
        _row(["---"] * 4),
        *(_row([t.name, t.goal, t.measured, t.status]) for t in evaluate_targets(results, info["backend"])),
        "",
    ]
    lines += list(design)
    notes = [f"- {r.case.name}: {note}" for r in results for note in r.notes]
    if notes:
        lines += ["## Notes", "", *notes, ""]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--preset",
        choices=("cnn", "gpu"),
        default="cnn",
        help="cnn: the CPU set, written to RESULTS.md; gpu: CIFAR and ResNet-50 layers in bf16 and f32, NCHW and "
        "NHWC, with a pallas column (benchmarks/gpu.py; printed only)",
    )
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this case (repeatable)")
    parser.add_argument("--quick", action="store_true", help="3 repetitions and about 0.1 s per measurement")
    parser.add_argument(
        "--repeats",
        type=option_type(int, as_int, "an int", minimum=1),
        help="at least N timed calls per measurement (default 10)",
    )
    parser.add_argument(
        "--min-time",
        type=option_type(float, as_finite, "a number", minimum=0),
        help="about this many seconds per measurement (default 1.0)",
    )
    parser.add_argument("--torch", choices=("auto", "on", "off"), default="auto", help="also time PyTorch")
    parser.add_argument(
        "--output",
        type=Path,
        help=f"the Markdown report (default {DEFAULT_OUTPUT.relative_to(HERE.parent)} for a full cnn run; "
        "a --quick, --only or gpu run is only printed unless this is given)",
    )
    parser.add_argument("--json", type=Path, help="also write every measurement as JSON")
    parser.add_argument("--no-reexec", action="store_true", help="do not restart with the malloc settings")
    parser.add_argument(
        "--no-design", action="store_true", help="skip the design measurements (benchmarks/design.py; ~2 min)"
    )
    add_gpu_arguments(parser.add_argument_group("gpu preset"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.no_reexec:
        reexec_with_malloc_env(argv)
    try:  # everything checked before the first measurement
        cases = select_cases([args.preset], None, args.only)
        use_torch = {"auto": "auto", "on": True, "off": False}[args.torch]
        torch = import_torch(use_torch)[0]  # the module, or None; refuses --torch on without PyTorch
        for option, path in (("--output", args.output), ("--json", args.json)):
            if path is not None:
                check_writable(path, option)
    except ValueError as error:
        parser.error(f"{error} (cases: {', '.join(c.name for c in PRESETS[args.preset])})")

    repeats = args.repeats or (3 if args.quick else 10)
    min_time = args.min_time if args.min_time is not None else (0.1 if args.quick else 1.0)
    command = "python benchmarks/run.py" + "".join(" " + shlex.quote(a) for a in argv)
    if args.preset == "gpu":
        return run_gpu(args, cases, torch=torch, repeats=repeats, min_time=min_time, command=command)

    partial = bool(args.quick or args.only)
    output = args.output or (None if partial else DEFAULT_OUTPUT)
    results = compare(cases, dtype="float32", repeats=repeats, min_time=min_time, torch=use_torch, progress=True)
    design = []
    if not (partial or args.no_design):
        from design import design_sections  # imported only when it runs

        print("design measurements (benchmarks/design.py) ...", file=sys.stderr)
        design = design_sections(repeats)
    info = environment()
    report = render(results, info, command=command, repeats=repeats, min_time=min_time, partial=partial, design=design)
    print(format_results(results))
    print()
    print(report)
    if output is not None:
        output.write_text(report)
        print(f"wrote {output}", file=sys.stderr)
    if args.json is not None:
        write_json(args.json, results, command=command, repeats=repeats, min_time=min_time)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
