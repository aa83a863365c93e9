"""MkDocs hooks: the notebooks and their figure join the site from notebooks/, and the API reference must be whole.

The notebooks stay where the test suite and ``notebooks/execute.py`` keep them; this hook adds them to the
site's files before mkdocs-jupyter converts them (it renders their stored outputs, ``execute: false``).
"""

from __future__ import annotations

import pathlib
import sys

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"

sys.path.insert(0, str(ROOT / "docs"))
import check_api_coverage  # noqa: E402  (docs/ is not a package)


def on_config(config, **kwargs):
    """Stops the build when a public name has no entry in the API reference."""
    missing = check_api_coverage.missing()
    if missing:
        raise PluginError(check_api_coverage.message(missing))
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, which takes over the .ipynb files it finds
def on_files(files, config, **kwargs):
    """The executed notebooks and the figures they share, served as ``notebooks/...``."""
    sources = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")) + sorted((NOTEBOOKS / "figures").glob("*.png"))
    for path in sources:
        # Read from the repository root, so that src_uri notebooks/NAME lands at the same path in the site.
        uri = path.relative_to(ROOT).as_posix()
        files.append(File(uri, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files
