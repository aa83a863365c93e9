"""``jaxconv compare``: options, checked before anything is measured, and the run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, Literal

import jax

from jaxconv._api import BACKENDS
from jaxconv._validate import as_finite, as_int
from jaxconv.compare.cases import CASE_KEYS, Case
from jaxconv.compare.environment import environment, malloc_note
from jaxconv.compare.errors import TOLERANCES
from jaxconv.compare.presets import PRESETS, select_cases
from jaxconv.compare.report import check_writable, format_results, wrap, write_csv, write_json
from jaxconv.compare.runners import Settings, check_settings, run_cases

PRECISIONS = ("default", "high", "highest")
# --torch -> compare()'s torch argument.
TORCH_CHOICES: dict[str, bool | Literal["auto"]] = {"auto": "auto", "on": True, "off": False}


def option_type(
    parse: Callable[[str], Any], check: Callable[..., Any], kind: str, **limits: Any
) -> Callable[[str], Any]:
    """An argparse ``type=``: ``parse`` the text, then ``check(value, "value", **limits)`` from ``jaxconv._validate``.

    >>> option_type(float, as_finite, "a number", minimum=0)("-1")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be >= 0, got -1.0
    """

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {kind}, got {text!r}") from None
        try:
            return check(value, "value", **limits)
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix("value ")) from None

    return convert


SEED = option_type(int, as_int, "an int", minimum=0)
"""``--seed``: an int >= 0."""


def _case_argument(text: str) -> Case:
    try:
        return Case.parse(text)
    except (TypeError, ValueError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    """``--backend``, of ``jaxconv compare`` and ``jaxconv check``."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="jaxconv's backend= (default: the conv's own, xla; input-dilated cases run "
        "jaxconv.conv_general_dilated, which picks its own); pallas runs in interpret mode off GPU, and a "
        "case it cannot run is reported as skipped",
    )


def torch_status(settings: Settings, info: dict[str, Any]) -> str:
    """``torch 2.x`` when PyTorch runs, else why not (``torch off``, ``torch not installed``): said once per run."""
    if settings.torch is not None:
        return f"torch {info['torch']}"
    return settings.torch_note or "torch off"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``jaxconv compare``."""
    parser.add_argument(
        "--preset",
        action="append",
        choices=sorted(PRESETS),
        help="a named case set (repeatable); default cpu-small when no --case is given",
    )
    parser.add_argument(
        "--case",
        action="append",
        type=_case_argument,
        metavar="SPEC",
        help='a case such as "x=64,64,32,32 w=64,64,3,3 stride=1 padding=1" (repeatable; keys: '
        + ", ".join(CASE_KEYS)
        + "; padding also lo:hi,lo:hi or VALID/SAME/SAME_LOWER)",
    )
    parser.add_argument("--only", action="append", metavar="NAME", help="run only the cases of this name (repeatable)")
    parser.add_argument(
        "--dtype",
        action="append",
        choices=sorted(TOLERANCES),
        help="repeatable: every case in each dtype (default float32)",
    )
    add_backend_argument(parser)
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="precision of both convs' GEMMs (default: JAX's; the reference is always lax at highest)",
    )
    parser.add_argument(
        "--repeats",
        type=option_type(int, as_int, "an int", minimum=1),
        default=10,
        help="at least N timed calls per measurement",
    )
    parser.add_argument(
        "--min-time",
        type=option_type(float, as_finite, "a number", minimum=0),
        default=0.5,
        help="and about this many seconds per measurement (default 0.5)",
    )
    parser.add_argument(
        "--torch", choices=tuple(TORCH_CHOICES), default="auto", help="also time PyTorch (auto: when installed)"
    )
    parser.add_argument(
        "--tolerance",
        type=option_type(float, as_finite, "a number", positive=True),
        help="override the tolerance on relative errors (default: by dtype, precision and backend)",
    )
    parser.add_argument("--seed", type=SEED, default=0, help="seed of the random inputs (>= 0)")
    parser.add_argument("--json", metavar="FILE", help="write all measurements as JSON")
    parser.add_argument("--csv", metavar="FILE", help="write one row per case as CSV")
    parser.add_argument("--quiet", action="store_true", help="no progress messages on stderr")


def run(args: argparse.Namespace) -> int:
    """``jaxconv compare``: exit status 0 when every error is within tolerance, 1 otherwise, 2 on bad options.

    Every option, and whether the output files can be written, is checked before the first compile.
    """
    dtypes = list(dict.fromkeys(args.dtype or ["float32"]))
    if "float64" in dtypes:
        jax.config.update("jax_enable_x64", True)
    try:
        cases = select_cases(args.preset, args.case, args.only)
        runs = [
            check_settings(
                dtype=dtype,
                repeats=args.repeats,
                min_time=args.min_time,
                torch=TORCH_CHOICES[args.torch],
                tolerance=args.tolerance,
                seed=args.seed,
                precision=args.precision,
                backend=args.backend,
            )
            for dtype in dtypes
        ]
        for option, path in (("--json", args.json), ("--csv", args.csv)):
            if path is not None:
                check_writable(path, option)
    except (TypeError, ValueError) as error:
        print(f"jaxconv compare: error: {error}", file=sys.stderr)
        return 2
    note = malloc_note()
    if note:
        print(note, file=sys.stderr)
    info = environment()
    machine = f"jax {info['jax']} on {info['backend']} ({info['device']}, {info['cpu']}, {info['cores']} cores)"
    run = (
        f"{torch_status(runs[0], info)}; dtype {', '.join(dtypes)}; precision {args.precision or 'default'}; "
        f"backend {args.backend or 'default'}"
    )
    print("\n".join([*wrap(machine), *wrap(run)]), flush=True)
    results = [result for settings in runs for result in run_cases(cases, settings, progress=not args.quiet)]
    print(format_results(results))
    if args.json:
        write_json(args.json, results)
    if args.csv:
        write_csv(args.csv, results)
    failed = [r.case.name for r in results if not r.ok]
    if failed:
        print(f"FAIL: errors above the tolerance in {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
