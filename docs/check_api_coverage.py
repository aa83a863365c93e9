"""Every public name of jaxconv has an entry in the API reference: ``python docs/check_api_coverage.py``.

The public names are ``__all__`` of ``jaxconv``, ``jaxconv.nn``, ``jaxconv.train`` and ``jaxconv.compare``;
an entry is a mkdocstrings directive ``::: jaxconv.NAME`` (or ``jaxconv.nn.NAME``, ...) on a page of
``docs/api/``. Exit status 1, naming the missing ones, when any has none. The mkdocs build runs the same
check (``docs/hooks.py``) and stops, and ``tests/test_docs.py`` runs it in the test suite.
"""

from __future__ import annotations

import importlib
import pathlib
import re
import sys

API_DIR = pathlib.Path(__file__).resolve().parent / "api"
MODULES = ("jaxconv", "jaxconv.nn", "jaxconv.train", "jaxconv.compare")


def public_names(modules: tuple[str, ...] = MODULES) -> list[str]:
    """``module.name`` for each name in each module's ``__all__``."""
    return [f"{module}.{name}" for module in modules for name in importlib.import_module(module).__all__]


def documented(api_dir: pathlib.Path = API_DIR) -> set[str]:
    """The identifiers of the ``::: identifier`` directives on the pages of ``api_dir``."""
    return {
        identifier
        for page in sorted(api_dir.glob("*.md"))
        for identifier in re.findall(r"^:::[ \t]+([\w.]+)", page.read_text(encoding="utf-8"), flags=re.M)
    }


def missing(api_dir: pathlib.Path = API_DIR, modules: tuple[str, ...] = MODULES) -> list[str]:
    """The public names with no entry, sorted."""
    return sorted(set(public_names(modules)) - documented(api_dir))


def message(names: list[str]) -> str:
    return f"{len(names)} public name(s) without an entry in docs/api/ (add a '::: NAME' directive): " + ", ".join(
        names
    )


def main() -> int:
    names = missing()
    if names:
        print(message(names), file=sys.stderr)
        return 1
    print(f"docs/api/ documents all {len(public_names())} public names of {', '.join(MODULES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
