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
from types import ModuleType

DESCRIPTION = "Convolution as im2col + GEMM with a hand-derived custom VJP: train a CNN, compare with lax, check."

SUBCOMMANDS: dict[str, tuple[tuple[str, ...], str]] = {
    # jaxconv.train is becoming a package with a cli module; the plain module serves until then.
    "train": (
        ("jaxconv.train.cli", "jaxconv.train"),
        "train a small CNN with the custom-VJP conv (default data: sklearn digits)",
    ),
    "compare": (("jaxconv.compare.cli",), "compare the custom VJP with jax.grad of lax.conv_general_dilated"),
    "check": (("jaxconv.compare.check",), "ten-second numerical check of the custom VJP against jax.grad(lax)"),
}
"""Name: (the modules that may implement it, first importable wins; its one-line help)."""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): ``jaxconv compare: error: argument --seed: ...``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def subcommand_module(name: str) -> ModuleType:
    """The module implementing subcommand ``name``: the first of its candidates that exists."""
    candidates = SUBCOMMANDS[name][0]
    for module_name in candidates[:-1]:
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:  # the module exists but an import inside it failed
                raise
    return importlib.import_module(candidates[-1])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxconv`` console script and ``python -m jaxconv``."""
    parser = _Parser(prog="jaxconv", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    argv = list(sys.argv[1:] if argv is None else argv)
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        # Only the chosen subcommand's module is imported to build its options.
        if argv and argv[0] == name:
            subcommand_module(name).add_arguments(sub_parser)
    args = parser.parse_args(argv)
    return int(subcommand_module(args.command).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
