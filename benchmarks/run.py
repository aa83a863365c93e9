"""The jaxconv benchmark: ``jaxconv compare`` on fixed case sets, written to ``benchmarks/RESULTS.md``.

Runs :func:`jaxconv.compare.compare` on one or more presets and writes the
machine, the versions, the date and, per preset, one row per case, the
geometric means and each target with its measured value and whether it is
met (``targets.py``; Markdown by ``render.py``). Every number in the file is
computed from this run.

* ``cnn`` (the default): CNN layers, float32, issue 5's targets, then the design measurements (``design.py``);
* ``slowpaths``: the convs lax handles badly (transposed, depthwise, grouped, dilated 1-d), float32 and bfloat16;
* ``slowpaths-gpu``: the same kinds at GPU sizes;
* ``models``: whole flax models (``benchmarks/models.py``'s ``models_section``), when that file exists;
* ``all``: ``cnn``, ``slowpaths`` and ``models``, one RESULTS.md with a section each;
* ``gpu``: CIFAR and ResNet-50 layers in bf16/f32, NCHW/NHWC (``gpu.py``), alone, printed only.

Run from the repository root::

    python benchmarks/run.py                 # cnn -> benchmarks/RESULTS.md
    python benchmarks/run.py --preset all    # cnn, slowpaths and models -> benchmarks/RESULTS.md
    python benchmarks/run.py --preset cnn --preset slowpaths   # both sections -> benchmarks/RESULTS.md
    python benchmarks/run.py --preset slowpaths --quick        # printed only
    python benchmarks/run.py --only cifar2   # one case, printed only
    python benchmarks/run.py --preset gpu    # on a GPU: bf16/f32, NCHW/NHWC, vs lax and PyTorch (cuDNN)

The script re-executes itself with glibc's ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` raised (see ``jaxconv.compare.MALLOC_ENV``) unless
they are set already: glibc reads them only at process start.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from jaxconv._validate import as_finite, as_int
from jaxconv.compare import MALLOC_ENV, PRESETS, compare, environment, format_results, select_cases, write_json
from jaxconv.compare.cli import option_type
from jaxconv.compare.report import check_writable
from jaxconv.compare.torch_conv import import_torch

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the modules beside this script, also when it is imported by path
    sys.path.insert(0, str(HERE))

from gpu import DTYPES, add_gpu_arguments, run_gpu  # noqa: E402
from render import PRESETS as SECTIONS  # noqa: E402
from render import render  # noqa: E402
from targets import Target, evaluate_slowpath_targets, evaluate_targets  # noqa: E402, F401 - re-exported

DEFAULT_OUTPUT = HERE / "RESULTS.md"
CHOICES = ("cnn", "slowpaths", "slowpaths-gpu", "models", "all", "gpu")
ALL = ("cnn", "slowpaths", "models")
DEFAULT_DTYPES = {"cnn": ("float32",), "slowpaths": DTYPES, "slowpaths-gpu": DTYPES}
"""The dtypes each compare preset runs in unless ``--dtype`` says (``cnn``'s targets are float32's)."""


def reexec_with_malloc_env(argv: Sequence[str]) -> None:
    """Replaces this process with one started under :data:`MALLOC_ENV`, unless it already is (Linux only)."""
    if not sys.platform.startswith("linux") or all(name in os.environ for name in MALLOC_ENV):
        return
    env = {**MALLOC_ENV, **os.environ}
    os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *argv], env)


def models_section_function():
    """``benchmarks/models.py``'s ``models_section(*, quick, torch) -> list[str]``, or None while it is absent."""
    if not (HERE / "models.py").exists():
        return None
    return getattr(importlib.import_module("models"), "models_section", None)


def presets_of(chosen: Sequence[str] | None) -> list[str]:
    """The ``--preset`` values in order, ``all`` expanded, each once; ValueError for ``gpu`` with others."""
    presets = list(dict.fromkeys(p for name in chosen or ["cnn"] for p in (ALL if name == "all" else (name,))))
    if "gpu" in presets and len(presets) > 1:
        raise ValueError(f"--preset gpu runs alone (its own tables, printed only), got {', '.join(presets)}")
    return presets


def cases_of(presets: Sequence[str], only: Sequence[str] | None) -> dict[str, list]:
    """Each compare preset's cases, filtered by ``--only``; ValueError for a name no chosen preset has."""
    measured = [p for p in presets if p in PRESETS]
    names = {case.name for p in measured for case in PRESETS[p]}
    unknown = sorted(set(only or ()) - names)
    if unknown:
        raise ValueError(f"--only {', '.join(unknown)}: no such case (cases: {', '.join(sorted(names))})")
    selected = {p: select_cases([p], None, None) for p in measured}
    if only:
        selected = {p: [c for c in cases if c.name in only] for p, cases in selected.items()}
    return {p: cases for p, cases in selected.items() if cases}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--preset",
        action="append",
        choices=CHOICES,
        help="repeatable, default cnn. cnn: CNN layers; slowpaths: transposed, depthwise, grouped and dilated 1-d "
        "convs (f32 and bf16); slowpaths-gpu: the same at GPU sizes; models: whole models (benchmarks/models.py); "
        "all: cnn, slowpaths and models; gpu: alone, CIFAR and ResNet-50 layers in bf16 and f32, NCHW and NHWC, "
        "with a pallas column (benchmarks/gpu.py; printed only)",
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
        help=f"the Markdown report (default {DEFAULT_OUTPUT.relative_to(HERE.parent)} for a full run that includes "
        "cnn; any other run is only printed unless this is given)",
    )
    parser.add_argument("--json", type=Path, help="also write every measurement as JSON")
    parser.add_argument("--no-reexec", action="store_true", help="do not restart with the malloc settings")
    parser.add_argument(
        "--no-design", action="store_true", help="skip the design measurements (benchmarks/design.py; ~2 min)"
    )
    add_gpu_arguments(parser.add_argument_group("gpu and slowpaths presets"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.no_reexec:
        reexec_with_malloc_env(argv)
    try:  # everything checked before the first measurement
        presets = presets_of(args.preset)
        cases = {"gpu": select_cases(["gpu"], None, args.only)} if presets == ["gpu"] else cases_of(presets, args.only)
        use_torch = {"auto": "auto", "on": True, "off": False}[args.torch]
        torch = import_torch(use_torch)[0]  # the module, or None; refuses --torch on without PyTorch
        models_section = models_section_function() if "models" in presets else None
        if "models" in presets and models_section is None:
            raise ValueError("--preset models: benchmarks/models.py with models_section() is not there yet")
        for option, path in (("--output", args.output), ("--json", args.json)):
            if path is not None:
                check_writable(path, option)
    except ValueError as error:
        parser.error(str(error))

    repeats = args.repeats or (3 if args.quick else 10)
    min_time = args.min_time if args.min_time is not None else (0.1 if args.quick else 1.0)
    command = "python benchmarks/run.py" + "".join(" " + shlex.quote(a) for a in argv)
    if presets == ["gpu"]:
        return run_gpu(args, cases["gpu"], torch=torch, repeats=repeats, min_time=min_time, command=command)

    partial = bool(args.quick or args.only)
    output = args.output or (None if partial or "cnn" not in presets else DEFAULT_OUTPUT)
    sections, everything = [], []
    for preset, preset_cases in cases.items():
        results = []
        for dtype in args.dtype or DEFAULT_DTYPES[preset]:
            print(f"{preset}: {len(preset_cases)} cases in {dtype}", file=sys.stderr, flush=True)
            results += compare(
                preset_cases, dtype=dtype, repeats=repeats, min_time=min_time, torch=use_torch, progress=True
            )
        sections.append((SECTIONS[preset], results))
        everything += results
    extra = []
    if "cnn" in cases and not (partial or args.no_design):
        from design import design_sections  # imported only when it runs

        print("design measurements (benchmarks/design.py) ...", file=sys.stderr)
        extra += design_sections(repeats)
    if models_section is not None:
        print("models (benchmarks/models.py) ...", file=sys.stderr)
        extra += [*models_section(quick=args.quick, torch=args.torch != "off"), ""]
    info = environment()
    report = render(sections, info, command=command, repeats=repeats, min_time=min_time, partial=partial, extra=extra)
    if everything:
        print(format_results(everything))
        print()
    print(report)
    if output is not None:
        output.write_text(report)
        print(f"wrote {output}", file=sys.stderr)
    if args.json is not None:
        meta = dict(command=command, repeats=repeats, min_time=min_time, presets=list(cases))
        write_json(args.json, everything, **meta)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0 if all(r.ok for r in everything) else 1


if __name__ == "__main__":
    sys.exit(main())
