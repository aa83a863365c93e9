"""How the conv composes with JAX's transformations beyond ``grad``: ``shard_map``'s varying axes and ``vmap``.

* Inside ``shard_map`` (with its default ``check_vma=True``) a replicated
  ``w`` meeting a sharded ``x`` makes a custom VJP's dL/dW vary over the mesh
  axis while ``w`` does not. lax's own rules cast ``w`` to varying before the
  conv, whose transpose sums dL/dW over the devices; :func:`match_varying_axes`
  does the same for the custom VJP.
* Under ``jax.vmap`` each call sees its own, often one-image, batch, so the
  phi(I) budget would never chunk, and the batched computation would build phi
  for every vmapped image at once. :func:`budget_under_vmap` gives the
  computation a batching rule that maps over chunks of the vmapped axis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax import lax
from jax.custom_batching import custom_vmap

from jaxconv._budget import batch_chunk


def varying_axes(a: jax.Array) -> frozenset[str]:
    """The ``shard_map`` mesh axes ``a`` varies over (empty outside ``shard_map``)."""
    aval = jax.typeof(a)
    manual = getattr(aval, "manual_axis_type", None)  # jax >= 0.10
    return frozenset(manual.varying if manual is not None else getattr(aval, "vma", ()))


def match_varying_axes(*arrays: jax.Array | None) -> list[jax.Array | None]:
    """Casts each array (None passes through) to vary over every axis any of them varies over."""
    present = [a for a in arrays if a is not None]
    axes = frozenset().union(*map(varying_axes, present))
    if not axes:
        return list(arrays)
    return [
        a if a is None or varying_axes(a) == axes else lax.pcast(a, tuple(sorted(axes - varying_axes(a))), to="varying")
        for a in arrays
    ]


def budget_under_vmap(fn: Callable[..., Any], item_bytes: int, max_cols_bytes: int) -> Callable[..., Any]:
    """``fn(*arrays)``, which under ``jax.vmap`` runs ``lax.map`` over chunks of the vmapped axis.

    ``item_bytes`` is the phi(I) one unbatched call builds; a chunk of
    :func:`jaxconv._budget.batch_chunk` vmapped calls fits ``max_cols_bytes``.
    The rule lives in a ``custom_vmap``, which reverse-mode autodiff cannot
    linearise, so the whole is a ``custom_jvp`` whose rule differentiates
    ``fn`` itself: ``grad``, ``grad`` of ``grad`` and ``jax.hessian`` see plain
    JAX, while ``vmap`` (and ``vmap`` of ``grad``) sees the chunked map.
    """

    @custom_vmap
    def batched(*arrays):
        return fn(*arrays)

    @batched.def_vmap
    def _rule(axis_size, in_batched, *arrays):
        chunk = batch_chunk(axis_size, item_bytes, max_cols_bytes) or axis_size

        def one(mapped):
            it = iter(mapped)
            return fn(*[next(it) if b else a for a, b in zip(arrays, in_batched)])

        out = lax.map(one, [a for a, b in zip(arrays, in_batched) if b], batch_size=chunk)
        return out, jax.tree.map(lambda _: True, out)

    @jax.custom_jvp
    def call(*arrays):
        return batched(*arrays)

    @call.defjvp
    def _jvp(primals, tangents):
        return batched(*primals), jax.jvp(fn, primals, tangents)[1]

    return call
