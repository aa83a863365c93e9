"""The jaxconv command: jaxconv train, jaxconv compare, jaxconv check.

Each subcommand lives in its own module, which provides
``add_arguments(parser)`` and ``run(args) -> int``; this file only dispatches,
and imports a subcommand's module (and its heavier dependencies) only when
that subcommand runs. Bad options end in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from jaxconv import _interrupts

DESCRIPTION = "Convolution as im2col + GEMM with a hand-derived backward pass: train a CNN, compare with lax, check."

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("jaxconv.train.cli", "train a small CNN with the custom-VJP conv (default data: sklearn digits)"),
    "compare": ("jaxconv.compare.cli", "compare jaxconv with jax.grad of lax.conv_general_dilated"),
    "check": ("jaxconv.compare.check", "ten-second numerical check of jaxconv against jax.grad(lax)"),
}
"""Name: (the module that implements it, its one-line help)."""
INTERRUPTED_STATUS = 130  # 128 + SIGINT, what shells report for Ctrl-C


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): ``jaxconv compare: error: argument --seed: ...``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxconv`` console script and ``python -m jaxconv``."""
    parser = _Parser(prog="jaxconv", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    argv = list(sys.argv[1:] if argv is None else argv)
    # Importing JAX takes seconds, and a KeyboardInterrupt raised inside it (in JAX's garbage-collection
    # callback) is printed and dropped: Ctrl-C is recorded until the subcommand is ready, then honoured.
    with _interrupts.recording():
        for name, (module_name, help_text) in SUBCOMMANDS.items():
            sub_parser = sub.add_parser(name, help=help_text, description=help_text)
            # Only the chosen subcommand's module is imported to build its options.
            if argv and argv[0] == name:
                importlib.import_module(module_name).add_arguments(sub_parser)
        args = parser.parse_args(argv)
        module = importlib.import_module(SUBCOMMANDS[args.command][0])
        if _interrupts.requested():
            print("interrupted while starting; nothing ran.", file=sys.stderr)
            return INTERRUPTED_STATUS
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
