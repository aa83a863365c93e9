""":class:`CaseResult`: what :func:`jaxconv.compare.compare` measured on one case, and the ratios derived from it."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

from jaxconv.compare.cases import Case
from jaxconv.compare.errors import Error, max_rel
from jaxconv.compare.timing import Timing

Kind = Literal["forward", "value_and_grad"]


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """Everything :func:`compare` measured on one case.

    Attributes:
      case: the case.
      dtype: the dtype's name.
      tolerance: the largest relative error that passes (see :func:`jaxconv.compare.tolerance`).
      errors: ours against lax at ``precision=HIGHEST``, keyed ``out``, ``dx``, ``dw`` (and ``db``).
      torch_errors: PyTorch's errors against the same reference, or None when torch did not run.
      forward: forward times keyed ``jaxconv``, ``lax``, ``gemm`` (and ``torch``); empty when not timed.
      value_and_grad: value-and-grad times keyed ``jaxconv``, ``lax`` (and ``torch``); empty when not timed.
      temp_bytes: XLA temp bytes keyed ``jaxconv_forward``, ``lax_forward``,
        ``jaxconv_value_and_grad``, ``lax_value_and_grad``; None where not reported.
      notes: anything skipped, e.g. why torch did not run.
      errors_vs_lax: ours against lax at the same precision as ours (what a user of lax gets).
      precision: the ``precision`` argument both convs ran with (None: JAX's default).
      platform: the backend, e.g. ``cpu`` or ``gpu``.
      arithmetic: what the float GEMMs really computed in (see :func:`jaxconv.compare.arithmetic`).
      torch_tolerance: the tolerance of PyTorch's errors, which runs at its own default precision;
        None: ``tolerance``.
      strategy: the contraction strategy jaxconv runs for this conv (``jaxconv.conv_strategy``), e.g.
        ``gemm``; ``-`` where the core does not say.
      backend: jaxconv's ``backend=`` argument (None: the function's default).
      skipped: jaxconv refused the case (e.g. ``backend="pallas"`` cannot run it; the first note says
        why): no errors and no times, and it does not fail the run.
    """

    case: Case
    dtype: str
    tolerance: float
    errors: dict[str, Error]
    torch_errors: dict[str, Error] | None
    forward: dict[str, Timing]
    value_and_grad: dict[str, Timing]
    temp_bytes: dict[str, int | None]
    notes: tuple[str, ...] = ()
    errors_vs_lax: dict[str, Error] | None = None
    precision: str | None = None
    platform: str = "cpu"
    arithmetic: str = "float32"
    torch_tolerance: float | None = None
    strategy: str = "-"
    backend: str | None = None
    skipped: bool = False

    @property
    def max_rel_error(self) -> float:
        """Our largest relative error against lax at HIGHEST (NaN when skipped)."""
        return math.nan if self.skipped else max_rel(self.errors)

    @property
    def max_rel_error_vs_lax(self) -> float | None:
        """Our largest relative difference from lax at the same precision."""
        return max_rel(self.errors_vs_lax)

    @property
    def torch_max_rel_error(self) -> float | None:
        return max_rel(self.torch_errors)

    @property
    def ok(self) -> bool:
        """Every error of ours, and of torch when it ran, within its tolerance (NaN fails); True when skipped."""
        if self.skipped:
            return True
        if not self.max_rel_error <= self.tolerance:
            return False
        torch_tolerance = self.tolerance if self.torch_tolerance is None else self.torch_tolerance
        return self.torch_errors is None or max_rel(self.torch_errors) <= torch_tolerance

    @property
    def timed(self) -> bool:
        return "jaxconv" in self.value_and_grad

    def ratio(self, kind: Kind, other: str = "lax") -> float | None:
        """Median time of ours over ``other``'s (below 1: ours is faster); None when either was not timed."""
        times = getattr(self, kind)
        return times["jaxconv"].median / times[other].median if "jaxconv" in times and other in times else None

    def gflops(self, kind: Kind, who: str = "jaxconv") -> float | None:
        """GFLOP/s: the case's FLOPs (three times the forward's for value_and_grad) over the median time."""
        times = getattr(self, kind)
        if who not in times:
            return None
        flops = self.case.flops * (3 if kind == "value_and_grad" else 1)
        return flops / times[who].median / 1e9

    @property
    def gemm_gflops(self) -> float | None:
        """The measured rate of a plain GEMM of the forward's shape."""
        return self.case.flops / self.forward["gemm"].median / 1e9 if "gemm" in self.forward else None

    def gemm_fraction(self, kind: Kind = "forward") -> float | None:
        """Our rate as a fraction of the GEMM rate."""
        ours, gemm = self.gflops(kind), self.gemm_gflops
        return None if ours is None or gemm is None else ours / gemm

    @property
    def temp_ratio(self) -> float | None:
        """Our value_and_grad temp bytes over lax's."""
        ours, theirs = self.temp_bytes.get("jaxconv_value_and_grad"), self.temp_bytes.get("lax_value_and_grad")
        if ours is None or theirs is None:
            return None
        return ours / theirs if theirs else (1.0 if ours == 0 else math.inf)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the raw measurements and the ratios and rates derived from them."""
        raw = dataclasses.asdict(self)
        raw["case"] = dict(raw["case"], spec=self.case.spec, out_shape=self.case.out_shape, flops=self.case.flops)
        raw["max_rel_error"] = self.max_rel_error
        raw["max_rel_error_vs_lax"] = self.max_rel_error_vs_lax
        raw["torch_max_rel_error"] = self.torch_max_rel_error
        raw["ok"] = self.ok
        raw["derived"] = {
            "forward_ratio_vs_lax": self.ratio("forward"),
            "value_and_grad_ratio_vs_lax": self.ratio("value_and_grad"),
            "forward_ratio_vs_torch": self.ratio("forward", "torch"),
            "value_and_grad_ratio_vs_torch": self.ratio("value_and_grad", "torch"),
            "forward_gflops": self.gflops("forward"),
            "value_and_grad_gflops": self.gflops("value_and_grad"),
            "lax_forward_gflops": self.gflops("forward", "lax"),
            "lax_value_and_grad_gflops": self.gflops("value_and_grad", "lax"),
            "gemm_gflops": self.gemm_gflops,
            "forward_gemm_fraction": self.gemm_fraction("forward"),
            "value_and_grad_gemm_fraction": self.gemm_fraction("value_and_grad"),
            "value_and_grad_temp_ratio": self.temp_ratio,
        }
        return raw
