"""How the conv walks a batch: in chunks under the phi(I) budget, under ``vmap``, and inside ``shard_map``.

* :func:`over_batch_chunks` runs a computation a chunk of images at a time,
  in one loop, so that phi(I) exists for one chunk at a time.
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

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap

from jaxconv._budget import batch_chunk
from jaxconv._compat import varying_axes


def match_varying_axes(*arrays: jax.Array | None) -> list[Any]:
    """Casts each array (None passes through) to vary over every axis any of them varies over."""
    present = [a for a in arrays if a is not None]
    axes = frozenset().union(*map(varying_axes, present))
    if not axes:
        return list(arrays)
    return [
        a if a is None or varying_axes(a) == axes else lax.pcast(a, tuple(sorted(axes - varying_axes(a))), to="varying")
        for a in arrays
    ]


def under_auto_axes(fn: Callable[..., jax.Array], x: jax.Array, *arrays: Any) -> jax.Array:
    """``fn(x, *arrays)``, with any explicitly sharded mesh axes (``jax.make_mesh``'s default) made automatic.

    Sharding in types asks every op to say how it shards, and im2col's reshapes
    merge the batch axis with others, which it refuses. Inside
    ``jax.sharding.auto_axes`` XLA partitions the conv as it does for
    ``Auto`` meshes (strided chunks keep each device's images home); the
    result comes back with x's batch sharding, as lax's conv gives it.
    """
    sharding: Any = getattr(jax.typeof(x), "sharding", None)
    mesh: Any = getattr(sharding, "mesh", None)
    explicit = getattr(jax.sharding.AxisType, "Explicit", None)
    axes = (
        ()
        if mesh is None or mesh.empty
        else tuple(name for name, kind in zip(mesh.axis_names, mesh.axis_types) if kind == explicit)
    )
    if not axes:
        return fn(x, *arrays)
    out_spec = jax.sharding.PartitionSpec(sharding.spec[0] if sharding.spec else None)
    with jax.sharding.use_abstract_mesh(mesh):  # auto_axes reads the axes' types from the context mesh
        return jax.sharding.auto_axes(fn, axes=axes, out_sharding=out_spec)(x, *arrays)


def budget_under_vmap(
    fn: Callable[..., Any], item_bytes: int, max_cols_bytes: int, *, fold_batch: bool = False
) -> Callable[..., Any]:
    """``fn(*arrays)``, which under ``jax.vmap`` works through the vmapped axis a chunk at a time.

    ``item_bytes`` is the phi(I) one unbatched call builds from its first
    argument (a vmap that leaves that argument unbatched shares one phi and is
    not chunked); a chunk of
    :func:`jaxconv._budget.batch_chunk` vmapped calls fits ``max_cols_bytes``,
    and :func:`over_batch_chunks` runs them. With ``fold_batch`` (``fn`` maps
    its first argument's batch axis to its output's, image by image), a vmap
    over the first argument alone folds the vmapped axis into that batch
    instead: one call, which chunks its batch itself.
    The rule lives in a ``custom_vmap``, which reverse-mode autodiff cannot
    linearise, so the whole is a ``custom_jvp`` whose rule differentiates
    ``fn`` itself: ``grad``, ``grad`` of ``grad`` and ``jax.hessian`` see plain
    JAX, while ``vmap`` (and ``vmap`` of ``grad``) sees the chunked map.
    """

    @custom_vmap
    def batched(*arrays: Any) -> Any:
        return fn(*arrays)

    @batched.def_vmap
    def _rule(axis_size: int, in_batched: list[Any], *arrays: Any) -> tuple[Any, Any]:
        if fold_batch and in_batched[0] and not any(in_batched[1:]):
            x = arrays[0]
            out = fn(x.reshape((-1,) + x.shape[2:]), *arrays[1:])
            return out.reshape(x.shape[:2] + out.shape[1:]), True
        in_axes = [0 if b else None for b in in_batched]
        if not in_batched[0]:  # x, hence phi, is shared by every vmapped call: nothing to chunk
            out = jax.vmap(fn, in_axes=in_axes)(*arrays)
            return out, jax.tree.map(lambda _: True, out)

        def body(carry: tuple[()], *mapped: jax.Array) -> tuple[tuple[()], Any]:
            it = iter(mapped)
            return carry, jax.vmap(fn, in_axes=in_axes)(*[next(it) if b else a for a, b in zip(arrays, in_batched)])

        mapped = [a for a, b in zip(arrays, in_batched) if b]
        _, out = over_batch_chunks(body, (), mapped, batch_chunk(axis_size, item_bytes, max_cols_bytes))
        return out, jax.tree.map(lambda _: True, out)

    @jax.custom_jvp
    def call(*arrays: Any) -> Any:
        return batched(*arrays)

    @call.defjvp
    def _jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[Any, Any]:
        return batched(*primals), jax.jvp(fn, primals, tangents)[1]

    return call


def over_batch_chunks(
    body: Callable[..., tuple[Any, Any]], carry: Any, arrays: Sequence[jax.Array], chunk: int | None
) -> tuple[Any, Any]:
    """``carry, y = body(carry, *chunk_of_arrays)`` over the batch axis, ``chunk`` images at a time.

    One loop, so phi(I) exists for one chunk at a time. The batch is viewed as
    ``(chunk, steps)`` and step ``j`` takes column ``j``: images ``j, j +
    steps, j + 2 * steps, ...``. With the batch sharded in contiguous blocks
    over D devices and ``chunk`` a multiple of D, every chunk holds ``chunk /
    D`` images of each device's block, so no image moves between devices. Each
    step writes its ``y`` into its column of one preallocated ``(chunk, steps,
    ...)`` buffer that reshapes to the result for free (stacked scan outputs
    cost a copy, and a transpose to undo the striding another). A batch that is
    not a multiple of ``chunk`` is padded with zero images, whose outputs are
    sliced off (and whose gradients are zero).
    """
    batch = arrays[0].shape[0]
    if chunk is None or chunk >= batch:
        return body(carry, *arrays)
    steps = -(-batch // chunk)
    pad = steps * chunk - batch
    grids = [
        (jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)) if pad else a).reshape((chunk, steps) + a.shape[1:])
        for a in arrays
    ]
    column = lambda i: [lax.dynamic_index_in_dim(g, i, axis=1, keepdims=False) for g in grids]

    def buffer(y: Any) -> jax.Array:  # varying over shard_map's axes like the inputs, as the loop's carry must
        return match_varying_axes(jnp.zeros((chunk, steps) + y.shape[1:], y.dtype), *grids)[0]

    def step(i: jax.Array, state: tuple[Any, Any]) -> tuple[Any, Any]:
        carry, ys = state
        carry, y = body(carry, *column(i))
        return carry, jax.tree.map(lambda buf, v: lax.dynamic_update_index_in_dim(buf, v, i, axis=1), ys, y)

    ys = jax.tree.map(buffer, jax.eval_shape(body, carry, *column(0))[1])
    carry, ys = lax.fori_loop(0, steps, step, (carry, ys))
    return carry, jax.tree.map(lambda y: y.reshape((chunk * steps,) + y.shape[2:])[:batch], ys)
