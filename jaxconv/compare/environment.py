"""The machine and the versions a measurement must be read with, and the malloc settings for stable timings.

XLA allocates its large temporary buffers on every call; with glibc's default
thresholds each buffer is a fresh ``mmap`` whose page faults can cost tens of
ms, and the same configuration flips between two speeds from one process to
the next. Start the process with ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` raised (:data:`MALLOC_ENV`); ``benchmarks/run.py``
does this itself, and ``jaxconv compare`` prints a note when they are not set.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from typing import Any

import jax
import numpy as np

MALLOC_ENV: dict[str, str] = {
    "MALLOC_MMAP_THRESHOLD_": str(2**30),
    "MALLOC_TRIM_THRESHOLD_": str(2**30),
}
"""glibc settings for stable timings: keep freed buffers up to 1 GiB in the heap instead of unmapping them."""


def cpu_count() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def malloc_note() -> str | None:
    """A warning when glibc's malloc thresholds are not raised (see :data:`MALLOC_ENV`); None when they are."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    unset = [name for name in MALLOC_ENV if name not in os.environ]
    if not unset:
        return None
    settings = " ".join(f"{name}={value}" for name, value in MALLOC_ENV.items())
    return (
        f"note: {', '.join(unset)} not set; XLA's big temp buffers are then mmapped afresh on every call and "
        f"timings can flip between two speeds from one process to the next. For stable timings run with: {settings}"
    )


def version(package: str) -> str | None:
    """The installed version of ``package``, None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """The machine and the versions: what a benchmark result must be read with."""
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": version("jaxlib"),
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "malloc_env": {name: os.environ.get(name) for name in MALLOC_ENV},
        "numpy": np.__version__,
        "torch": version("torch"),
    }
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    return info
