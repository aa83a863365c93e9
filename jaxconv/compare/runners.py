"""Runs a case through jaxconv, lax (at the same precision and at HIGHEST), a plain GEMM and PyTorch."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv._api import BACKENDS, conv
from jaxconv._lax_compat import conv_general_dilated
from jaxconv._validate import as_dtype, as_finite, as_int, check_choice
from jaxconv.compare.cases import Case
from jaxconv.compare.convs import ConvFn, jaxconv_fn, lax_fn, strategy
from jaxconv.compare.environment import cpu_count
from jaxconv.compare.errors import TOLERANCES, Error, arithmetic, precision_level
from jaxconv.compare.errors import tolerance as tolerance_for
from jaxconv.compare.presets import as_cases
from jaxconv.compare.results import CaseResult
from jaxconv.compare.timing import Timing, time_interleaved
from jaxconv.compare.torch_conv import import_torch, torch_device, torch_functions


def current_platform() -> str:
    """JAX's default backend (``cpu``, ``gpu``, ``tpu``): what the tolerance follows."""
    return jax.default_backend()


@dataclasses.dataclass(frozen=True)
class Settings:
    """:func:`compare`'s options, checked and normalised (see :func:`check_settings`)."""

    dtype: np.dtype
    repeats: int
    min_time: float
    tolerance: float
    seed: int
    precision: lax.Precision | None
    platform: str
    timing: bool
    torch: Any
    torch_note: str | None
    torch_tolerance: float
    backend: str | None = None


def check_settings(
    *,
    dtype: Any = "float32",
    repeats: int = 10,
    min_time: float = 0.5,
    torch: bool | Literal["auto"] = "auto",
    tolerance: float | None = None,
    seed: int = 0,
    precision: Any = None,
    timing: bool = True,
    backend: str | None = None,
) -> Settings:
    """Checks every option of :func:`compare` before anything is compiled; ValueError/TypeError naming it."""
    if backend is not None:
        check_choice(backend, BACKENDS, "backend")
    dtype = as_dtype(dtype, "dtype")
    if dtype is None or dtype.name not in TOLERANCES:
        raise ValueError(f"dtype must be one of {sorted(TOLERANCES)}, got {dtype}")
    if dtype == np.float64 and not jax.config.jax_enable_x64:  # type: ignore[attr-defined]  # a dynamic attribute
        raise ValueError(
            "dtype float64 needs 64-bit JAX: set JAX_ENABLE_X64=1 or jax.config.update('jax_enable_x64', True)"
        )
    if not isinstance(timing, bool):
        raise TypeError(f"timing must be a bool, got {timing!r}")
    precision = None if precision is None else precision_level(precision)
    platform = current_platform()
    torch_module, torch_note = import_torch(torch)
    given = None if tolerance is None else as_finite(tolerance, "tolerance", positive=True)
    return Settings(
        dtype=dtype,
        repeats=as_int(repeats, "repeats", minimum=1),
        min_time=as_finite(min_time, "min_time", minimum=0),
        tolerance=tolerance_for(dtype, precision, platform) if given is None else given,
        seed=as_int(seed, "seed", minimum=0),
        precision=precision,
        platform=platform,
        timing=timing,
        torch=torch_module,
        torch_note=torch_note,
        # PyTorch runs at its own default precision (TF32 convs on Ampere+ GPUs), whatever ours is.
        torch_tolerance=tolerance_for(dtype, None, platform) if given is None else given,
        backend=backend,
    )


def _with_bias(fn: ConvFn, with_bias: bool) -> Callable[..., jax.Array]:
    """``(x, w, b) -> out`` as ``(x, w, b)`` with a bias, ``(x, w)`` without."""
    return fn if with_bias else (lambda x, w: fn(x, w, None))


def _loss(fn: ConvFn, with_bias: bool) -> Callable[..., jax.Array]:
    """``L = sum(conv(x, w, b) * g)``: its gradient is the conv's VJP applied to the cotangent ``g``."""
    conv_of = _with_bias(fn, with_bias)
    return lambda *args: jnp.sum(conv_of(*args[:-1]) * args[-1])


def _outputs(fn: ConvFn, with_bias: bool) -> Callable[..., Any]:
    """``(x, w[, b], g) -> (out, dL/dx, dL/dw[, dL/db])`` for ``L = sum(conv(x, w, b) * g)``, by one ``jax.vjp``."""

    def outputs(*args: jax.Array) -> tuple[jax.Array, ...]:
        *params, g = args
        out, vjp = jax.vjp(_with_bias(fn, with_bias), *params)
        return (out, *vjp(g))

    return outputs


def _compiled(fn: Callable[..., Any], args: Sequence[Any]) -> Any:
    return jax.jit(fn).lower(*args).compile()


def _temp_bytes(compiled: Any) -> int | None:
    try:
        analysis = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - backends without the analysis raise various errors
        return None
    size = getattr(analysis, "temp_size_in_bytes", None)
    return None if size is None else int(size)


def _blocking(fn: Callable[..., Any], args: Sequence[Any]) -> Callable[[], Any]:
    return lambda: jax.block_until_ready(fn(*args))


def _random(rng: np.random.Generator, shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
    """Standard normal values rounded to ``dtype``, held in float32 (float64 for float64) on the host.

    NumPy, not ``jax.random``: eager ``jax.random.normal`` compiles a kernel per shape, seconds per case.
    """
    host = np.float64 if dtype == np.float64 else np.float32
    return rng.standard_normal(shape).astype(dtype).astype(host)


def _gemm_operands(case: Case, dtype: np.dtype, rng: np.random.Generator) -> tuple[jax.Array, jax.Array]:
    groups, m, k, n = case.gemm_shape
    lead = (groups,) if groups > 1 else ()
    return jnp.asarray(_random(rng, (*lead, m, k), dtype), dtype), jnp.asarray(
        _random(rng, (*lead, k, n), dtype), dtype
    )


def _reference_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(jnp.float32) if dtype.itemsize < 4 else dtype


def _errors(values: Sequence[Any], references: Sequence[Any], names: Sequence[str]) -> dict[str, Error]:
    return {name: Error.of(v, r) for name, v, r in zip(names, values, references)}


def _compare_case(case: Case, *, ours: ConvFn, settings: Settings, seed: int, say: Callable[[str], None]) -> CaseResult:
    dtype = settings.dtype
    rng = np.random.default_rng(seed)
    shapes = [case.x, case.w] + ([(case.w[0],)] if case.with_bias else []) + [case.out_shape]
    # Inputs rounded to the dtype once; the reference and torch see the same values.
    inputs = [_random(rng, shape, dtype) for shape in shapes]
    args = [jnp.asarray(a, dtype) for a in inputs]
    names = ("out", "dx", "dw", "db")[: len(args)]
    argnums = tuple(range(len(args) - 1))
    with_bias = case.with_bias

    theirs = lax_fn(case, precision=settings.precision)
    ref_args = [jnp.asarray(a, _reference_dtype(dtype)) for a in inputs]
    reference = _outputs(lax_fn(case, precision=lax.Precision.HIGHEST), with_bias)
    fns, outputs = {}, {}
    try:
        if settings.timing:
            for who, fn in (("jaxconv", ours), ("lax", theirs)):
                # The errors come from the very executables that are timed.
                fns[f"{who}_forward"] = _compiled(_with_bias(fn, with_bias), args[:-1])
                fns[f"{who}_value_and_grad"] = _compiled(jax.value_and_grad(_loss(fn, with_bias), argnums), args)
            references = _compiled(reference, ref_args)(*ref_args)
            for who in ("jaxconv", "lax"):
                _, grads = fns[f"{who}_value_and_grad"](*args)
                outputs[who] = (fns[f"{who}_forward"](*args[:-1]), *grads)
        else:  # errors only: ours, lax's and the reference in one executable, one compile per case
            both = [_outputs(fn, with_bias) for fn in (ours, theirs)]
            everything = _compiled(lambda a, r: (both[0](*a), both[1](*a), reference(*r)), (args, ref_args))
            outputs["jaxconv"], outputs["lax"], references = everything(args, ref_args)
    except ValueError as error:
        if settings.backend != "pallas":
            raise
        # The Pallas kernels refuse, when traced, the convs they cannot run: reported, not fatal.
        return _skipped(case, settings, f"backend='pallas' refused it: {str(error).splitlines()[0]}")
    errors = _errors(outputs["jaxconv"], references, names)
    errors_vs_lax = _errors(outputs["jaxconv"], outputs["lax"], names)
    del outputs

    notes = []
    torch_errors, torch_fns = None, None
    if settings.torch is not None:
        device = torch_device(settings.torch)
        torch_inputs = inputs[:2] + (inputs[2:3] if case.with_bias else [None]) + inputs[-1:]
        try:
            *torch_fns, torch_outputs = torch_functions(settings.torch, case, torch_inputs, dtype, device)
            torch_errors = _errors(torch_outputs(), references, names)
        except (RuntimeError, TypeError, NotImplementedError, AttributeError) as error:
            torch_fns, torch_errors = None, None
            notes.append(f"torch failed on {dtype.name} ({device}): {str(error).splitlines()[0]}")
    del references

    def timed(kind: str, extra: Mapping[str, Callable[[], Any]]) -> dict[str, Timing]:
        kind_args = args[:-1] if kind == "forward" else args
        groups = [{**{who: _blocking(fns[f"{who}_{kind}"], kind_args) for who in ("jaxconv", "lax")}, **extra}]
        if torch_fns is not None:
            groups.append({"torch": torch_fns[0 if kind == "forward" else 1]})
        say(f"{case.name}: timing {kind}")
        return time_interleaved(groups, repeats=settings.repeats, min_time=settings.min_time)

    forward, value_and_grad = {}, {}
    if settings.timing:
        gemm_args = _gemm_operands(case, dtype, rng)
        forward = timed("forward", {"gemm": _blocking(_compiled(jnp.matmul, gemm_args), gemm_args)})
        value_and_grad = timed("value_and_grad", {})
    return CaseResult(
        case=case,
        dtype=dtype.name,
        tolerance=settings.tolerance,
        errors=errors,
        torch_errors=torch_errors,
        forward=forward,
        value_and_grad=value_and_grad,
        temp_bytes={name: _temp_bytes(compiled) for name, compiled in fns.items()},
        notes=tuple(notes),
        errors_vs_lax=errors_vs_lax,
        **_run_fields(case, settings),
    )


def _run_fields(case: Case, settings: Settings) -> dict[str, Any]:
    """The :class:`CaseResult` fields that the settings decide, not the measurements."""
    return dict(
        precision=None if settings.precision is None else settings.precision.name.lower(),
        platform=settings.platform,
        arithmetic=arithmetic(settings.dtype, settings.precision, settings.platform),
        torch_tolerance=settings.torch_tolerance,
        strategy=strategy(case, settings.dtype, settings.platform),
        backend=settings.backend,
    )


def _skipped(case: Case, settings: Settings, reason: str) -> CaseResult:
    """The result of a case that jaxconv refused to run: no errors, no times, ``reason`` as its note."""
    return CaseResult(
        case=case,
        dtype=settings.dtype.name,
        tolerance=settings.tolerance,
        errors={},
        torch_errors=None,
        forward={},
        value_and_grad={},
        temp_bytes={},
        notes=(reason,),
        skipped=True,
        **_run_fields(case, settings),
    )


def _progress_writer(progress: bool | Callable[[str], None]) -> Callable[[str], None]:
    if callable(progress):
        return progress
    if progress:
        return lambda message: print(message, file=sys.stderr, flush=True)
    return lambda message: None


def compare(
    cases: str | Case | Iterable[Case | str],
    *,
    dtype: Any = "float32",
    repeats: int = 10,
    min_time: float = 0.5,
    torch: bool | Literal["auto"] = "auto",
    conv_fn: Callable[..., jax.Array] | None = None,
    tolerance: float | None = None,
    seed: int = 0,
    precision: Any = None,
    timing: bool = True,
    progress: bool | Callable[[str], None] = False,
    backend: str | None = None,
) -> list[CaseResult]:
    """Compares ``conv_fn`` (default :func:`jaxconv.conv`) with lax's conv, and PyTorch's, on each case.

    See the package docstring for what is measured and how.

    Args:
      cases: a preset name (see :data:`PRESETS`), a :class:`Case`, a case spec
        string, or a sequence of cases and spec strings.
      dtype: one of :data:`TOLERANCES`' dtypes; float64 needs ``jax_enable_x64``.
      repeats: at least this many timed calls per measurement.
      min_time: and about this many seconds per measurement (0: exactly ``repeats`` calls).
      torch: also run PyTorch: True (an error if it is missing), False, or "auto" (when importable).
      conv_fn: the implementation under test, with :func:`jaxconv.conv`'s signature; None runs
        ``jaxconv.conv``, and ``jaxconv.conv_general_dilated`` for input-dilated cases (which
        another ``conv_fn`` cannot take: ValueError).
      tolerance: overrides :func:`tolerance`'s rule for the dtype, precision and backend.
      seed: seeds the random inputs (>= 0).
      precision: passed to ``conv_fn`` and to lax's conv (None: JAX's default); the
        reference is always lax at ``HIGHEST``.
      timing: False measures the errors only (what ``jaxconv check`` does).
      progress: True prints progress to stderr; a callable receives each message.
      backend: jaxconv's ``backend=`` (``"xla"``, ``"pallas"``, ``"auto"``; None: the function's
        default). A case that ``"pallas"`` refuses comes back :attr:`CaseResult.skipped`, saying why.

    Returns:
      One :class:`CaseResult` per case, in order.

    >>> [r] = compare("x=2,3,9,9 w=4,3,3,3 stride=2 bias=1", repeats=1, min_time=0, torch=False)
    >>> r.ok, sorted(r.errors), r.value_and_grad["jaxconv"].median > 0
    (True, ['db', 'dw', 'dx', 'out'], True)
    """
    settings = check_settings(
        dtype=dtype,
        repeats=repeats,
        min_time=min_time,
        torch=torch,
        tolerance=tolerance,
        seed=seed,
        precision=precision,
        timing=timing,
        backend=backend,
    )
    return run_cases(as_cases(cases), settings, conv_fn=conv_fn, progress=progress)


def run_cases(
    cases: Sequence[Case],
    settings: Settings,
    *,
    conv_fn: Callable[..., jax.Array] | None = None,
    progress: bool | Callable[[str], None] = False,
) -> list[CaseResult]:
    """:func:`compare` with options already checked by :func:`check_settings`."""
    say = _progress_writer(progress)
    if conv_fn is not None:
        dilated = [case.name for case in cases if case.lhs_dilated]
        if dilated:
            raise ValueError(
                f"cases {', '.join(dilated)} are input-dilated (lhs_dilation): they run jaxconv.conv_general_dilated, "
                "and a conv_fn with jaxconv.conv's signature cannot take them"
            )
    torch_module, old_threads = settings.torch, None
    if torch_module is not None:
        old_threads = torch_module.get_num_threads()
        torch_module.set_num_threads(cpu_count())
    results = []
    try:
        for index, case in enumerate(cases):
            say(f"[{index + 1}/{len(cases)}] {case.name}: compiling ({case.spec})")
            try:
                ours = jaxconv_fn(
                    case,
                    conv if conv_fn is None else conv_fn,
                    conv_general_dilated if conv_fn is None else None,
                    precision=settings.precision,
                    backend=settings.backend,
                )
            except ValueError as error:  # a backend the drop-in does not take
                results.append(_skipped(case, settings, str(error)))
                say(f"[{index + 1}/{len(cases)}] {case.name}: skipped ({error})")
                continue
            result = _compare_case(case, ours=ours, settings=settings, seed=settings.seed + index, say=say)
            results.append(result)
            if result.skipped:
                say(f"[{index + 1}/{len(cases)}] {case.name}: skipped ({result.notes[0]})")
                continue
            timing = ""
            if result.timed:
                timing = (
                    f", forward {result.ratio('forward'):.2f}x lax, "
                    f"value_and_grad {result.ratio('value_and_grad'):.2f}x lax"
                )
            say(f"[{index + 1}/{len(cases)}] {case.name}: max rel error {result.max_rel_error:.1e}{timing}")
    finally:
        if old_threads is not None:
            torch_module.set_num_threads(old_threads)
    return results
