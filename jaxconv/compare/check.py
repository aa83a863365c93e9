"""``jaxconv check``: the errors of ``jaxconv compare`` on the ``cpu-small`` preset, without timing.

jaxconv's gradients against ``jax.grad`` of lax's conv on five small cases (1-3
spatial dims, stride, SAME and asymmetric padding, groups, dilation, bias):
the output and every gradient against lax at ``precision=HIGHEST`` and at the
default precision, with the tolerance of :func:`jaxconv.compare.tolerance`.
Seconds on a CPU: one executable per case (ours, lax's, the reference) and no timing loop.
``--backend pallas`` checks the Pallas kernels (interpret mode off GPU) on the cases they take.
"""

from __future__ import annotations

import argparse
import time

from jaxconv.compare.cli import SEED, add_backend_argument
from jaxconv.compare.presets import PRESETS
from jaxconv.compare.report import format_accuracy, format_cases, format_notes
from jaxconv.compare.runners import compare


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``jaxconv check``."""
    parser.add_argument("--seed", type=SEED, default=0, help="seed of the random inputs (>= 0)")
    add_backend_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Exit status 0 when every error is within the tolerance, 1 otherwise (a case the backend refuses is skipped)."""
    start = time.perf_counter()
    results = compare(PRESETS["cpu-small"], torch=False, seed=args.seed, timing=False, backend=args.backend)
    print("\n".join([format_cases(results), "", format_accuracy(results), *format_notes(results)]))
    failed = [r.case.name for r in results if not r.ok]
    checked = [r.max_rel_error for r in results if not r.skipped]
    skipped = [r.case.name for r in results if r.skipped]
    verdict = f"FAIL in {', '.join(failed)}" if failed else "ok"
    worst = f"worst relative error {max(checked):.1e}" if checked else "no case ran"
    skips = f" ({len(skipped)} skipped: {', '.join(skipped)})" if skipped else ""
    print(f"{verdict}: {worst}{skips} in {time.perf_counter() - start:.1f} s")
    return 1 if failed else 0
