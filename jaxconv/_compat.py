"""The JAX APIs that differ across the versions pyproject.toml allows, each behind one function.

Everything else in jaxconv calls JAX directly: an API belongs here only while
the oldest supported JAX and the newest spell it differently.
"""

from __future__ import annotations

import jax


def varying_axes(a: jax.Array) -> frozenset[str]:
    """The ``shard_map`` mesh axes ``a`` varies over (empty outside ``shard_map``).

    JAX 0.10 moved them from the type's ``vma`` to its ``manual_axis_type.varying``.

    >>> varying_axes(jnp.ones(3))
    frozenset()
    """
    aval = jax.typeof(a)
    manual = getattr(aval, "manual_axis_type", None)  # jax >= 0.10
    return frozenset(manual.varying if manual is not None else getattr(aval, "vma", ()))
