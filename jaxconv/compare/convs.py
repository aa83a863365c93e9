"""The convolutions a case runs, each as ``(x, w, b) -> out``, and the contraction strategy jaxconv picks for it.

A case without input dilation runs ``jaxconv.conv`` (or the ``conv_fn`` under
test, with its signature) beside :func:`jaxconv.lax_conv`. An input-dilated
case (a transposed conv) has no ``jaxconv.conv`` form: it runs the lax drop-in
``jaxconv.conv_general_dilated``, so that the core's routing applies, beside
``lax.conv_general_dilated`` with the same arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

import jaxconv
from jaxconv._conv import add_bias
from jaxconv.compare.cases import Case

ConvFn = Callable[[jax.Array, jax.Array, "jax.Array | None"], jax.Array]


def takes_backend(fn: Callable[..., Any]) -> bool:
    """Whether a conv function accepts ``backend=``.

    >>> takes_backend(jaxconv.conv), takes_backend(jax.lax.conv_general_dilated)
    (True, False)
    """
    try:
        return "backend" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins and some wrappers have no signature
        return False


def jaxconv_fn(
    case: Case,
    conv_fn: Callable[..., jax.Array],
    general_fn: Callable[..., jax.Array] | None,
    *,
    precision: Any = None,
    backend: str | None = None,
) -> ConvFn:
    """jaxconv's side of ``case``: ``conv_fn`` (``jaxconv.conv``'s signature), or ``general_fn`` when input-dilated.

    Args:
      case: the convolution.
      conv_fn: ``jaxconv.conv`` or an implementation with its signature.
      general_fn: ``jaxconv.conv_general_dilated``; None when a ``conv_fn`` of the caller's is under
        test, which cannot take input-dilated cases.
      precision: passed to the conv.
      backend: passed as ``backend=`` (None: the conv's default).

    Raises:
      ValueError: an input-dilated case without ``general_fn``, or a ``backend`` the function does not take.
    """
    extra = {} if backend is None else {"backend": backend}
    if not case.lhs_dilated:
        options = dict(case.options, precision=precision, **extra)
        return lambda x, w, b: conv_fn(x, w, b, **options)
    if general_fn is None:
        raise ValueError(
            f"case {case.name!r} has lhs_dilation={case.lhs_dilation}, which a conv_fn with jaxconv.conv's "
            "signature cannot take; it runs with the default conv_fn only (jaxconv.conv_general_dilated)"
        )
    if extra and not takes_backend(general_fn):
        raise ValueError(
            f"backend={backend!r}: jaxconv.conv_general_dilated, which runs the input-dilated case "
            f"{case.name!r}, takes no backend argument (it picks its own)"
        )
    options = dict(case.general_options, precision=precision, **extra)
    return lambda x, w, b: add_bias(general_fn(x, w, **options), b)


def lax_fn(case: Case, *, precision: Any = None) -> ConvFn:
    """lax's side of ``case``: :func:`jaxconv.lax_conv`, or ``lax.conv_general_dilated`` when input-dilated."""
    if not case.lhs_dilated:
        options = dict(case.options, precision=precision)
        return lambda x, w, b: jaxconv.lax_conv(x, w, b, **options)
    options = dict(case.general_options, precision=precision)
    return lambda x, w, b: add_bias(lax.conv_general_dilated(x, w, **options), b)


def strategy(case: Case, dtype: Any, platform: str) -> str:
    """The strategy jaxconv runs for ``case``: :func:`jaxconv.conv_strategy` of its shapes and options.

    >>> isinstance(strategy(Case.parse("x=1,2,5,5 w=2,2,3,3"), "float32", "cpu"), str)
    True
    """
    return jaxconv.conv_strategy(
        case.x,
        case.w,
        stride=case.stride,
        padding=case.padding,
        dilation=case.dilation,
        lhs_dilation=case.lhs_dilation,
        groups=case.groups,
        dtype=jnp.dtype(dtype).name,
        platform=platform,
    )
