"""Shared test helpers: the tolerance table, random inputs, and the independent references.

The references are ``jax.lax.conv_general_dilated`` (at ``Precision.HIGHEST``)
and, where installed, PyTorch. Neither uses any jaxconv code: padding and
stride arguments are normalised here, independently of ``jaxconv._geometry``.

Comparisons are normwise: ``max|actual - expected| <= tol * max(1, max|expected|)``
with ``tol`` from :data:`TOLERANCES`, keyed by the dtype under test. For
bfloat16 and float16 the lax reference runs in float32 on the same (already
rounded) inputs, so the tolerance bounds jaxconv's rounding error alone.
Measured worst cases on convolutions of up to ``C*prod(k) = 108`` terms
(forward, dL/dx, dL/dw, dL/db): float32 3.5e-7, float64 7.8e-16, bfloat16
8.4e-3, float16 1.1e-3, complex64 3.9e-7, complex128 1.5e-15.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st
from jax import lax

#: Normwise tolerance per dtype, for values and gradients alike.
TOLERANCES: dict[str, float] = {
    "float32": 1e-5,
    "float64": 1e-12,
    "bfloat16": 3e-2,
    "float16": 5e-3,
    "complex64": 1e-5,
    "complex128": 1e-12,
}

FLOAT_DTYPES = ("float32", "float64", "bfloat16", "float16", "complex64", "complex128")
X64_DTYPES = ("float64", "complex128")


def needs_x64(dtype: Any) -> bool:
    return jnp.dtype(dtype).name in X64_DTYPES


def reference_dtype(dtype: Any) -> np.dtype:
    """The dtype the lax reference computes in: float32 for half precision, else ``dtype`` itself."""
    dtype = jnp.dtype(dtype)
    return jnp.dtype(jnp.float32) if dtype.name in ("bfloat16", "float16") else dtype


def random_array(rng: np.random.Generator, shape: Sequence[int], dtype: Any = "float32") -> jax.Array:
    """Standard normal entries (real and imaginary parts for complex dtypes), rounded to ``dtype``.

    float64 / complex128 arrays must be made under ``jax.enable_x64(True)``.
    """
    dtype = jnp.dtype(dtype)
    values = rng.standard_normal(tuple(shape))
    if jnp.issubdtype(dtype, jnp.complexfloating):
        values = values + 1j * rng.standard_normal(tuple(shape))
    elif jnp.issubdtype(dtype, jnp.integer):
        values = rng.integers(-4, 5, size=tuple(shape))
    return jnp.asarray(values, dtype)


def on_cpu(*arrays: jax.Array) -> tuple[jax.Array, ...]:
    """Copies of ``arrays`` on the CPU device, so that a jitted reference on them runs there.

    For what lax cannot compute on the running backend: cuDNN has no convolution with 4+ spatial dims
    (it aborts the process) and no GEMM for most integer types.
    """
    cpu = jax.devices("cpu")[0]
    return tuple(jax.device_put(a, cpu) for a in arrays)


def default_precision_tolerance(dtype: Any) -> float:
    """Normwise tolerance of a float32 conv at ``precision=None`` against HIGHEST on this backend.

    GPUs run float32 GEMMs and lax's convolutions in TF32 by default (10-bit mantissa: relative errors up to
    about 1e-3 were measured on an H200, for lax as for jaxconv); TPUs in bfloat16 passes.
    """
    dtype = jnp.dtype(dtype)
    backend = jax.default_backend()
    if dtype.name in ("float32", "complex64") and backend in ("gpu", "cuda", "rocm"):
        return 5e-3
    if dtype.name in ("float32", "complex64") and backend == "tpu":
        return TOLERANCES["bfloat16"]
    return TOLERANCES[dtype.name]


def _as_numpy(array: Any) -> np.ndarray:
    array = np.asarray(array)
    if np.iscomplexobj(array):
        return array.astype(np.complex128)
    return array.astype(np.float64)


def assert_close(actual: Any, expected: Any, dtype: Any = None, *, scale: float = 1.0, what: str = "") -> None:
    """Normwise comparison with the tolerance of ``dtype`` (default: ``actual``'s dtype)."""
    dtype = jnp.dtype(actual.dtype if dtype is None else dtype)
    assert np.shape(actual) == np.shape(expected), f"{what}: shape {np.shape(actual)} != {np.shape(expected)}"
    actual, expected = _as_numpy(actual), _as_numpy(expected)
    size = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=scale * TOLERANCES[dtype.name] * size, err_msg=what)


# --- the lax reference, with its own argument normalisation ---------------------


def explicit_padding(padding: Any, n: int) -> str | tuple[tuple[int, int], ...]:
    """lax's padding argument from the friendly API's: strings pass through, ints become pairs."""
    if isinstance(padding, str):
        return padding
    if isinstance(padding, int):
        return ((padding, padding),) * n
    return tuple((p, p) if isinstance(p, int) else (p[0], p[1]) for p in padding)


def per_dim(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    return (value,) * n if isinstance(value, int) else tuple(value)


def padding_pairs(
    padding: Any, in_spatial: Sequence[int], kernel: Sequence[int], stride: Any = 1, dilation: Any = 1
) -> tuple[tuple[int, int], ...]:
    """Explicit ``(lo, hi)`` pairs for any friendly-API padding; strings via ``lax.padtype_to_pads``."""
    n = len(in_spatial)
    pads = explicit_padding(padding, n)
    if isinstance(pads, str):
        stride, dilation = per_dim(stride, n), per_dim(dilation, n)
        dilated = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
        pads = lax.padtype_to_pads(tuple(in_spatial), dilated, stride, pads.upper())
    return tuple((int(lo), int(hi)) for lo, hi in pads)


def lax_conv_reference(
    x: jax.Array,
    w: jax.Array,
    b: jax.Array | None = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> jax.Array:
    """The friendly API's convolution computed by ``lax.conv_general_dilated`` at HIGHEST precision."""
    n = x.ndim - 2
    out = lax.conv_general_dilated(
        x,
        w,
        per_dim(stride, n),
        explicit_padding(padding, n),
        rhs_dilation=per_dim(dilation, n),
        feature_group_count=groups,
        precision=lax.Precision.HIGHEST,
    )
    if b is not None:
        out = out + b.reshape((1, -1) + (1,) * n)
    return out


def value_and_grads(
    conv_fn: Callable[..., jax.Array], args: Sequence[jax.Array], cotangent: jax.Array
) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """``conv_fn(*args)`` and the gradient of ``<conv_fn(*args), cotangent>`` with respect to every arg.

    Real dtypes go through ``jax.grad`` of the real loss ``sum(out * cotangent)``;
    complex ones through ``jax.vjp`` with ``cotangent``. The whole is jitted, one compile.
    """
    argnums = tuple(range(len(args)))

    @jax.jit
    def run(args, cotangent):
        out = conv_fn(*args)
        if jnp.iscomplexobj(out):
            _, pullback = jax.vjp(conv_fn, *args)
            return out, pullback(cotangent)
        grads = jax.grad(lambda *a: jnp.sum(conv_fn(*a) * cotangent), argnums=argnums)(*args)
        return out, grads

    return run(tuple(args), cotangent)


# --- hypothesis: convolutions whose windows fit ----------------------------------


@st.composite
def conv_cases(
    draw: st.DrawFn,
    *,
    ndims: Sequence[int] = (1, 2, 3),
    max_groups: int = 2,
    strings: bool = True,
) -> dict[str, Any]:
    """A friendly-API convolution: shapes, stride, padding (any form), dilation, groups, bias.

    Sizes are drawn so that at least one window fits (the friendly API's
    requirement): ``N <= 3``, ``C <= 4``, spatial sizes <= 9 (<= 6 in 3-d).
    """
    n = draw(st.sampled_from(tuple(ndims)))
    groups = draw(st.integers(1, max_groups))
    channels = groups * draw(st.integers(1, 4 // groups))
    features = groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(n))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(n))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(n))
    dilated = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    kinds = ["int", "ints", "pairs"] + (["string"] if strings else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "string":
        padding = draw(st.sampled_from(["VALID", "SAME", "SAME_LOWER", "same", "Valid"]))
        minimum = dilated if padding.upper() == "VALID" else [1] * n
    else:
        if kind == "int":
            pairs = [(draw(st.integers(0, 2)),) * 2] * n
            padding = pairs[0][0]
        elif kind == "ints":
            pads = [draw(st.integers(0, 2)) for _ in range(n)]
            pairs, padding = [(p, p) for p in pads], tuple(pads)
        else:
            pairs = [(draw(st.integers(-1, 2)), draw(st.integers(-1, 2))) for _ in range(n)]
            padding = tuple(pairs)
        minimum = [max(1, kd - lo - hi) for kd, (lo, hi) in zip(dilated, pairs)]
    max_size = 6 if n == 3 else 9
    spatial = tuple(draw(st.integers(m, max(m, max_size))) for m in minimum)
    # Sometimes pass one int for every dimension, as users do.
    if len(set(stride)) == 1 and draw(st.booleans()):
        stride = stride[0]
    if len(set(dilation)) == 1 and draw(st.booleans()):
        dilation = dilation[0]
    return dict(
        x_shape=(draw(st.integers(1, 3)), channels) + spatial,
        w_shape=(features, channels // groups) + kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=draw(st.booleans()),
    )


def conv_kwargs(case: dict[str, Any]) -> dict[str, Any]:
    return {key: case[key] for key in ("stride", "padding", "dilation", "groups")}


def make_inputs(case: dict[str, Any], dtype: Any, seed: int) -> tuple[list[jax.Array], np.random.Generator]:
    """Random ``[x, w]`` (and ``b`` when ``case["bias"]``) for a :func:`conv_cases` case."""
    rng = np.random.default_rng(seed)
    args = [random_array(rng, case["x_shape"], dtype), random_array(rng, case["w_shape"], dtype)]
    if case["bias"]:
        args.append(random_array(rng, case["w_shape"][:1], dtype))
    return args, rng


# --- the PyTorch reference --------------------------------------------------------


def torch_conv_reference(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray | None,
    cotangent: np.ndarray,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """``torch.nn.functional.conv{1,2,3}d`` and its autograd gradients of ``<out, cotangent>``.

    Padding pairs (possibly negative, possibly uneven) are applied with
    ``torch.nn.functional.pad`` first; strings are turned into pairs by
    ``jax.lax.padtype_to_pads``.
    """
    import torch

    n = x.ndim - 2
    stride, dilation = per_dim(stride, n), per_dim(dilation, n)
    pads = padding_pairs(padding, x.shape[2:], w.shape[2:], stride, dilation)
    tensors = [torch.tensor(np.asarray(a), requires_grad=True) for a in (x, w) + ((b,) if b is not None else ())]
    tx, tw = tensors[:2]
    tb = tensors[2] if b is not None else None
    # F.pad takes (lo, hi) pairs starting from the last dimension; negative values crop.
    flat_pads = [p for pair in reversed(pads) for p in pair]
    padded = torch.nn.functional.pad(tx, flat_pads)
    conv = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d, 3: torch.nn.functional.conv3d}[n]
    out = conv(padded, tw, tb, stride=stride, padding=0, dilation=dilation, groups=groups)
    out.backward(torch.tensor(np.asarray(cotangent)))
    grads = [t.grad.numpy() for t in tensors]
    return out.detach().numpy(), grads


# --- jaxprs ------------------------------------------------------------------------


def primitive_names(jaxpr: Any) -> set[str]:
    """Every primitive in a (Closed)Jaxpr, walking sub-jaxprs in equation parameters recursively."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for param in eqn.params.values():
            for value in param if isinstance(param, (list, tuple)) else (param,):
                if hasattr(value, "eqns") or hasattr(getattr(value, "jaxpr", None), "eqns"):
                    names |= primitive_names(value)
    return names


#: The grad of a conv holds the note's backward: Eq. 2 + col2im and Eq. 1, as jaxconv's primitives.
NOTE_BACKWARD = {"jaxconv_col2im", "jaxconv_filter_grad"}


def lowered_ops(fn: Any, *args: Any) -> str:
    """The StableHLO text ``jax.jit(fn)`` lowers to: what the primitives' lowerings really compute."""
    return jax.jit(fn).lower(*args).as_text()
