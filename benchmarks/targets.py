"""The targets of the benchmark presets, each evaluated on a run's results: what it asks, what was measured, met or not.

``cnn``: issue 5's targets on CNN layers. ``slowpaths``: the convolutions lax
handles badly (transposed, depthwise, grouped, dilated 1-d), where jaxconv
should beat lax on every case and match PyTorch on average.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from jaxconv.compare import CaseResult, geometric_mean

GEMM_BOUND_CASES = ("cifar2", "cifar3", "conv1x1")


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


def _label(result: CaseResult, results: Sequence[CaseResult]) -> str:
    """The case's name, and its dtype when the run has several."""
    return result.case.name + (f" {result.dtype}" if len({r.dtype for r in results}) > 1 else "")


def _worst(results: Sequence[CaseResult], value: Callable[[CaseResult], float | None]) -> tuple[float, str] | None:
    measured = [(v, _label(r, results)) for r in results if (v := value(r)) is not None]
    return max(measured) if measured else None


def _every_case(results: Sequence[CaseResult], name: str, limit: float, value: Callable) -> Target:
    """``value`` at most ``limit`` on every case that measured it."""
    worst = _worst(results, value)
    if worst is None:
        return Target(f"{name}, every case", f"<= {limit:g}x", "not measured", None)
    ratio, case = worst
    return Target(f"{name}, every case", f"<= {limit:g}x", f"worst {ratio:.3g}x ({case})", ratio <= limit)


def _mean(results: Sequence[CaseResult], name: str, limit: float, value: Callable, missing: str) -> Target:
    """The geometric mean of ``value`` at most ``limit``."""
    mean = geometric_mean(map(value, results))
    if mean is None:
        return Target(f"{name}, geometric mean", f"<= {limit:g}x", missing, None)
    count = sum(value(r) is not None for r in results)
    return Target(f"{name}, geometric mean", f"<= {limit:g}x", f"{mean:.3g}x over {count} cases", mean <= limit)


def evaluate_targets(results: Sequence[CaseResult], backend: str = "cpu") -> list[Target]:
    """Each target of issue 5 (the ``cnn`` preset) against this run's results."""
    vag = lambda r: r.ratio("value_and_grad")
    targets = [
        _mean(results, "value_and_grad time vs lax", 0.5, vag, "not measured"),
        _every_case(results, "value_and_grad time vs lax", 1.0, vag),
        _every_case(results, "forward time vs lax", 1.0, lambda r: r.ratio("forward")),
    ]
    bound = [r for r in results if r.case.name in GEMM_BOUND_CASES and r.gemm_fraction("forward") is not None]
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

    memory = _every_case(results, "value_and_grad temp memory vs lax", 1.5, lambda r: r.temp_ratio)
    if memory.met is None:
        memory = dataclasses.replace(memory, measured="not reported by XLA")
    targets.append(memory)
    torch_vag = lambda r: r.ratio("value_and_grad", "torch")
    moonshot = _mean(results, "value_and_grad time vs PyTorch autograd", 1.25, torch_vag, "torch did not run")
    targets.append(dataclasses.replace(moonshot, name=moonshot.name + " (moonshot)"))
    if backend == "gpu":
        on_gpu = _mean(results, "GPU: value_and_grad time vs cuDNN-backed lax", 1.3, vag, "not measured")
        targets.append(on_gpu)
    else:
        targets.append(
            Target("GPU: value_and_grad vs cuDNN-backed lax", "<= 1.3x", f"not measured ({backend} run)", None)
        )
    return targets


def is_depthwise(result: CaseResult) -> bool:
    """One input channel per group: ``groups == C`` (any channel multiplier ``FN / C``)."""
    return result.case.groups == result.case.x[1] > 1


def evaluate_slowpath_targets(results: Sequence[CaseResult]) -> list[Target]:
    """The ``slowpaths`` preset's targets against this run's results (every dtype it ran)."""
    vag = lambda r: r.ratio("value_and_grad")
    torch_vag = lambda r: r.ratio("value_and_grad", "torch")
    torch_fwd = lambda r: r.ratio("forward", "torch")
    missing = "torch did not run"
    depthwise = [r for r in results if is_depthwise(r)]
    targets = [
        _every_case(results, "value_and_grad time vs lax", 0.5, vag),
        _every_case(results, "forward time vs lax", 1.0, lambda r: r.ratio("forward")),
        _mean(results, "value_and_grad time vs PyTorch autograd", 1.0, torch_vag, missing),
        _mean(results, "forward time vs PyTorch", 1.25, torch_fwd, missing),
    ]
    depthwise_target = _every_case(depthwise, "depthwise: value_and_grad time vs PyTorch", 1.5, torch_vag)
    if depthwise_target.met is None:
        depthwise_target = dataclasses.replace(depthwise_target, measured=missing if depthwise else "no depthwise case")
    return targets + [depthwise_target]
