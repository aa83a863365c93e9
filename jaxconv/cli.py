"""The ``jaxconv`` command: ``jaxconv train``, ``jaxconv compare``, ``jaxconv check``.

Each subcommand lives in its own module, which provides
``add_arguments(parser)`` and ``run(args) -> int``; this file only dispatches,
and imports a subcommand's module (and its heavier dependencies) only when
that subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

SUBCOMMANDS = {
    "train": ("jaxconv.train", "train a small CNN with the custom-VJP conv (default data: sklearn digits)"),
    "compare": ("jaxconv.compare", "compare the custom VJP with jax.grad of lax.conv_general_dilated"),
    "check": ("jaxconv._check", "quick numerical check of the custom VJP against jax.grad(lax)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxconv`` console script and ``python -m jaxconv``."""
    parser = argparse.ArgumentParser(prog="jaxconv", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    argv = list(sys.argv[1:] if argv is None else argv)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        # Only the chosen subcommand's module is imported to build its options.
        if argv and argv[0] == name:
            importlib.import_module(module_name).add_arguments(sub_parser)
    args = parser.parse_args(argv)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
