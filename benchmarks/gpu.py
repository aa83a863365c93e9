"""The GPU benchmark: jaxconv beside lax (cuDNN) and PyTorch (cuDNN) on CIFAR and ResNet-50 layers.

``python benchmarks/run.py --preset gpu`` runs every case of ``jaxconv.compare.PRESETS["gpu"]`` in
bfloat16 and float32 and in two layouts, in one process:

* NCHW x / OIHW w: ``jaxconv.conv`` beside ``lax.conv_general_dilated``;
* NHWC x / HWIO w: ``jaxconv.conv_general_dilated`` beside ``lax.conv_general_dilated``, both with
  ``dimension_numbers=("NHWC", "HWIO", "NHWC")``;

each also beside PyTorch's ``conv2d`` with autograd (``channels_last`` for NHWC) when torch is
importable, and with a ``pallas`` column (jaxconv with ``backend="pallas"``) wherever the jaxconv
function of that layout takes a ``backend`` argument. It prints the median times of the forward and of
``value_and_grad`` of ``sum(conv(x, w) * g)`` with respect to x and w, at default precision (what users
run), the ratios jaxconv/lax, jaxconv/torch and pallas/lax with their geometric means, and each
implementation's largest relative error against lax at ``HIGHEST`` with the tolerance of
:func:`jaxconv.compare.tolerance` (float32 at default precision is TF32 on Ampere+ GPUs, as for cuDNN).

Timing is ``jaxconv.compare``'s interleaved timer: the JAX functions call by call, PyTorch in blocks.
On a CPU, ``--scale-down F`` divides batch, channels and spatial sizes by F (at least 1 each) so that
the preset runs in seconds: it exercises the plumbing, and its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxconv
from jaxconv._validate import as_int
from jaxconv.compare import Case, Error, Timing, environment, geometric_mean, time_interleaved, tolerance
from jaxconv.compare.cli import option_type
from jaxconv.compare.torch_conv import torch_device, torch_functions

LAYOUTS = {"NCHW": ("NCHW", "OIHW", "NCHW"), "NHWC": ("NHWC", "HWIO", "NHWC")}
DTYPES = ("bfloat16", "float32")
IMPLEMENTATIONS = ("jaxconv", "lax", "torch", "pallas")


def scale_down(case: Case, factor: int) -> Case:
    """The case with batch, channels, filters and spatial sizes divided by ``factor`` (at least 1 each).

    >>> from jaxconv.compare import PRESETS
    >>> scale_down(PRESETS["gpu"][6], 16).spec
    'name=stem x=8,1,14,14 w=4,1,7,7 stride=2 padding=3'
    """
    factor = as_int(factor, "scale_down", minimum=1)
    if case.groups != 1:
        raise ValueError(f"scale_down keeps groups=1 convs only, got case {case.name!r} with groups={case.groups}")
    shrink = lambda size: max(1, size // factor)
    n, c, *spatial = case.x
    fn, _, *kernel = case.w
    x = (shrink(n), shrink(c), *map(shrink, spatial))
    w = (shrink(fn), x[1], *kernel)
    return dataclasses.replace(case, x=x, w=w)


def takes_backend(fn: Callable[..., Any]) -> bool:
    """Whether a jaxconv function accepts ``backend=`` (the Pallas kernels)."""
    return "backend" in inspect.signature(fn).parameters


def jax_convs(case: Case, layout: str, *, pallas: bool) -> dict[str, Callable[[jax.Array, jax.Array], jax.Array]]:
    """``{name: conv(x, w)}`` in ``layout``: jaxconv, lax and, when asked and possible, jaxconv's Pallas backend."""
    geometry = case.conv_spec().geometry
    dimension_numbers = LAYOUTS[layout]
    general = dict(rhs_dilation=geometry.dilation, dimension_numbers=dimension_numbers, feature_group_count=case.groups)

    def lax_conv(x, w):
        return lax.conv_general_dilated(x, w, geometry.stride, geometry.padding, **general)

    if layout == "NCHW":
        ours = jaxconv.conv
        call = lambda fn, x, w, **extra: fn(x, w, **case.options, **extra)
    else:
        ours = jaxconv.conv_general_dilated
        call = lambda fn, x, w, **extra: fn(x, w, geometry.stride, geometry.padding, **general, **extra)
    fns = {"jaxconv": functools.partial(call, ours), "lax": lax_conv}
    if pallas and takes_backend(ours):
        fns["pallas"] = functools.partial(call, ours, backend="pallas")
    return fns


def to_layout(layout: str, x: np.ndarray, w: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, ...]:
    """NCHW x, OIHW w, NCHW g (the cotangent) in ``layout``."""
    if layout == "NCHW":
        return x, w, g
    return x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0), g.transpose(0, 2, 3, 1)


def from_layout(layout: str, out: Any, dx: Any, dw: Any) -> tuple[np.ndarray, ...]:
    """Outputs and gradients of ``layout`` back in NCHW / OIHW, as NumPy arrays."""
    out, dx, dw = (np.asarray(a, dtype=np.float32) for a in (out, dx, dw))
    if layout == "NCHW":
        return out, dx, dw
    return out.transpose(0, 3, 1, 2), dx.transpose(0, 3, 1, 2), dw.transpose(3, 2, 0, 1)


@functools.partial(jax.jit, static_argnames="case")
def _reference(x: jax.Array, w: jax.Array, g: jax.Array, case: Case) -> tuple[jax.Array, ...]:
    """out, dL/dx, dL/dw of lax at HIGHEST in float32, NCHW."""
    out, vjp = jax.vjp(lambda x, w: jaxconv.lax_conv(x, w, **case.options, precision=lax.Precision.HIGHEST), x, w)
    return (out, *vjp(g))


@dataclasses.dataclass(frozen=True)
class Row:
    """One case in one dtype and layout: times per implementation, errors against lax at HIGHEST."""

    case: Case
    dtype: str
    layout: str
    forward: dict[str, Timing]
    value_and_grad: dict[str, Timing]
    errors: dict[str, float]
    tolerance: float
    notes: tuple[str, ...] = ()

    def ratio(self, kind: str, who: str, other: str) -> float | None:
        """Median time of ``who`` over ``other``'s, None when either did not run."""
        times = getattr(self, kind)
        return times[who].median / times[other].median if who in times and other in times else None

    @property
    def ok(self) -> bool:
        return all(e <= self.tolerance for e in self.errors.values())


def measure(
    case: Case,
    dtype: str,
    layout: str,
    *,
    repeats: int,
    min_time: float,
    torch: Any = None,
    pallas: bool = True,
    seed: int = 0,
) -> Row:
    """Compiles, checks and times every implementation on one case, dtype and layout."""
    np_dtype = jnp.dtype(dtype)
    rng = np.random.default_rng(seed)
    # Inputs rounded to the dtype once, held in float32; every implementation and the reference see them.
    host = [rng.standard_normal(s).astype(np_dtype).astype(np.float32) for s in (case.x, case.w, case.out_shape)]
    reference = [np.asarray(a) for a in _reference(*map(jnp.asarray, host), case=case)]
    args = [jnp.asarray(a, np_dtype) for a in to_layout(layout, *host)]
    notes, compiled = [], {}
    for name, fn in jax_convs(case, layout, pallas=pallas).items():
        loss = lambda x, w, g, fn=fn: jnp.sum(fn(x, w) * g)
        try:
            compiled[name] = (
                jax.jit(fn).lower(*args[:2]).compile(),
                jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(*args).compile(),
            )
        except Exception as error:  # noqa: BLE001 - an optional backend that fails is reported, not fatal
            if name != "pallas":
                raise
            notes.append(f"pallas failed: {str(error).splitlines()[0]}")
    errors = {}
    for name, (forward, value_and_grad) in compiled.items():
        _, grads = value_and_grad(*args)
        ours = from_layout(layout, forward(*args[:2]), *grads)
        errors[name] = max(Error.of(a, r).rel for a, r in zip(ours, reference))
    groups = {
        "forward": [{name: _blocking(forward, args[:2]) for name, (forward, _) in compiled.items()}],
        "value_and_grad": [{name: _blocking(vag, args) for name, (_, vag) in compiled.items()}],
    }
    if torch is not None:
        device = torch_device(torch)
        inputs = [host[0], host[1], None, host[2]]
        try:
            t_forward, t_vag, t_outputs = torch_functions(
                torch, case, inputs, np_dtype, device, channels_last=layout == "NHWC"
            )
            errors["torch"] = max(Error.of(a, r).rel for a, r in zip(t_outputs(), reference))
            groups["forward"].append({"torch": t_forward})
            groups["value_and_grad"].append({"torch": t_vag})
        except (RuntimeError, TypeError, NotImplementedError, AttributeError) as error:
            notes.append(f"torch failed on {dtype} {layout} ({device}): {str(error).splitlines()[0]}")
    timings = {kind: time_interleaved(g, repeats=repeats, min_time=min_time) for kind, g in groups.items()}
    return Row(
        case=case,
        dtype=dtype,
        layout=layout,
        forward=timings["forward"],
        value_and_grad=timings["value_and_grad"],
        errors=errors,
        tolerance=tolerance(np_dtype),
        notes=tuple(notes),
    )


def _blocking(fn: Callable[..., Any], args: Sequence[jax.Array]) -> Callable[[], Any]:
    return lambda: jax.block_until_ready(fn(*args))


def run_preset(
    cases: Sequence[Case],
    *,
    dtypes: Sequence[str] = DTYPES,
    layouts: Sequence[str] = tuple(LAYOUTS),
    repeats: int = 10,
    min_time: float = 1.0,
    torch: Any = None,
    pallas: bool = True,
    say: Callable[[str], None] = lambda message: None,
) -> list[Row]:
    """:func:`measure` on every case, dtype and layout, in that nesting."""
    rows = []
    combos = [(d, la, c) for d in dtypes for la in layouts for c in cases]
    for index, (dtype, layout, case) in enumerate(combos):
        say(f"[{index + 1}/{len(combos)}] {case.name} {dtype} {layout}: {case.spec}")
        rows.append(
            measure(case, dtype, layout, repeats=repeats, min_time=min_time, torch=torch, pallas=pallas, seed=index)
        )
    return rows


def _cell(value: float | None, spec: str = ".3g") -> str:
    return "n/a" if value is None else format(value, spec)


RATIOS = (("jaxconv", "lax"), ("jaxconv", "torch"), ("pallas", "lax"))


def render(rows: Sequence[Row]) -> str:
    """One Markdown table per dtype and layout, with geometric means, then the means over everything."""
    lines = []
    blocks = dict.fromkeys((r.dtype, r.layout) for r in rows)
    for dtype, layout in blocks:
        block = [r for r in rows if (r.dtype, r.layout) == (dtype, layout)]
        header = ["case", "vag ms " + " / ".join(IMPLEMENTATIONS)]
        header += [f"vag {a}/{b}" for a, b in RATIOS] + [f"fwd {a}/{b}" for a, b in RATIOS]
        header += ["max rel error " + " / ".join(IMPLEMENTATIONS), "ok"]
        lines += [f"### {dtype}, {layout} (tolerance {block[0].tolerance:.0e})", ""]
        lines += ["| " + " | ".join(header) + " |", "| --- " + "| --: " * (len(header) - 1) + "|"]
        for r in block:
            times = " / ".join(
                _cell(r.value_and_grad[w].median * 1e3, ".2f") if w in r.value_and_grad else "n/a"
                for w in IMPLEMENTATIONS
            )
            cells = [r.case.name, times]
            cells += [_cell(r.ratio(kind, a, b)) for kind in ("value_and_grad", "forward") for a, b in RATIOS]
            cells += [" / ".join(_cell(r.errors.get(w), ".1e") for w in IMPLEMENTATIONS), "ok" if r.ok else "FAIL"]
            lines.append("| " + " | ".join(cells) + " |")
        means = [
            _cell(geometric_mean(r.ratio(kind, a, b) for r in block))
            for kind in ("value_and_grad", "forward")
            for a, b in RATIOS
        ]
        lines += ["| **geometric mean** | | " + " | ".join(means) + " | | |", ""]
    lines.append("Geometric means over every case, dtype and layout:")
    for kind in ("value_and_grad", "forward"):
        means = ", ".join(f"{a}/{b} {_cell(geometric_mean(r.ratio(kind, a, b) for r in rows))}" for a, b in RATIOS)
        lines.append(f"- {kind}: {means}")
    lines += [f"- {r.case.name} {r.dtype} {r.layout}: {note}" for r in rows for note in r.notes]
    return "\n".join(lines)


def to_dict(row: Row) -> dict[str, Any]:
    """A JSON-ready dict of one row, with its ratios."""
    raw = dataclasses.asdict(row)
    raw["case"] = row.case.spec
    raw["ok"] = row.ok
    raw["ratios"] = {
        f"{kind}_{a}_vs_{b}": row.ratio(kind, a, b) for kind in ("value_and_grad", "forward") for a, b in RATIOS
    }
    return raw


def add_gpu_arguments(group: argparse._ArgumentGroup) -> None:
    """The options of ``benchmarks/run.py --preset gpu``."""
    group.add_argument("--dtype", action="append", choices=DTYPES, help="default both")
    group.add_argument("--layout", action="append", choices=tuple(LAYOUTS), help="default both")
    group.add_argument(
        "--scale-down",
        type=option_type(int, as_int, "an int", minimum=1),
        default=1,
        metavar="F",
        help="divide batch, channels and spatial sizes by F: a CPU smoke run of the gpu preset",
    )
    group.add_argument("--no-pallas", action="store_true", help="no jaxconv backend='pallas' column")


def run_gpu(
    args: argparse.Namespace, cases: Sequence[Case], *, torch: Any, repeats: int, min_time: float, command: str
) -> int:
    """``benchmarks/run.py --preset gpu``: prints the tables; exit status 1 when an error exceeds its tolerance."""
    info = environment()
    cases = [scale_down(case, args.scale_down) for case in cases]
    rows = run_preset(
        cases,
        dtypes=args.dtype or DTYPES,
        layouts=args.layout or tuple(LAYOUTS),
        repeats=repeats,
        min_time=min_time,
        torch=torch,
        pallas=not args.no_pallas,
        say=lambda message: print(message, file=sys.stderr, flush=True),
    )
    scaled = f", every size divided by {args.scale_down}" if args.scale_down > 1 else ""
    missing = [
        la for la, fn in (("NCHW", jaxconv.conv), ("NHWC", jaxconv.conv_general_dilated)) if not takes_backend(fn)
    ]
    if missing and not args.no_pallas:
        scaled += f". No pallas column in {', '.join(missing)}: its jaxconv function takes no backend argument yet"
    report = "\n".join(
        [
            "## GPU preset",
            "",
            f"`{command}` on {info['date']}: JAX {info['jax']} on {info['backend']} ({info['device']}), "
            f"PyTorch {info['torch'] or 'not installed'}; medians of at least {repeats} calls and about "
            f"{min_time:g} s per measurement{scaled}. vag = value_and_grad with respect to x and w; "
            "ratios are time over time (below 1: the first is faster).",
            "",
            render(rows),
            "",
        ]
    )
    print(report)
    if args.output is not None:
        args.output.write_text(report)
        print(f"wrote {args.output}", file=sys.stderr)
    if args.json is not None:
        document = {"environment": info, "command": command, "rows": [to_dict(r) for r in rows]}
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0 if all(r.ok for r in rows) else 1
