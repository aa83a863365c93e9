"""``jaxconv check``: the custom VJP against ``jax.grad`` of lax's conv on a few shapes."""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
from jax import lax

from jaxconv._api import conv, lax_conv

CASES = (
    dict(x=(8, 3, 16, 16), w=(8, 3, 3, 3), stride=1, padding=1),
    dict(x=(8, 8, 15, 15), w=(16, 8, 3, 3), stride=2, padding="SAME"),
    dict(x=(4, 6, 12, 12), w=(6, 2, 5, 5), groups=3, dilation=2, padding=((2, 3), (4, 1))),
    dict(x=(4, 4, 32), w=(8, 4, 7), stride=3, padding="VALID"),
    dict(x=(2, 2, 6, 7, 8), w=(4, 2, 3, 2, 3), padding=1),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed for the random inputs")


def max_relative_error(a: jax.Array, b: jax.Array) -> float:
    return float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-30))


def _case_errors(case: dict, key: jax.Array) -> list[float]:
    """Max relative errors of the output and of dL/dx, dL/dw, dL/db against lax at HIGHEST precision."""
    shapes = {k: case[k] for k in ("x", "w")}
    options = {k: v for k, v in case.items() if k not in shapes}
    kx, kw, kb, kg = jax.random.split(key, 4)
    x, w = jax.random.normal(kx, shapes["x"]), jax.random.normal(kw, shapes["w"])
    b = jax.random.normal(kb, (shapes["w"][0],))

    def loss(x, w, b, fn, **extra):
        out = fn(x, w, b, **options, **extra)
        return jnp.sum(out * jax.random.normal(kg, out.shape)), out

    grad = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)
    ours, out = grad(x, w, b, conv)
    theirs, ref = grad(x, w, b, lax_conv, precision=lax.Precision.HIGHEST)
    return [max_relative_error(out, ref)] + [max_relative_error(a, r) for a, r in zip(ours, theirs)]


def run(args: argparse.Namespace) -> int:
    tolerance = 1e-4
    worst = 0.0
    print(f"{'case':<90} {'out':>9} {'dL/dx':>9} {'dL/dw':>9} {'dL/db':>9}")
    for case, key in zip(CASES, jax.random.split(jax.random.key(args.seed), len(CASES))):
        errors = _case_errors(case, key)
        worst = max(worst, *errors)
        label = " ".join(f"{k}={v}" for k, v in case.items())
        print(f"{label:<90} " + " ".join(f"{e:9.1e}" for e in errors))
    print(f"worst max relative error {worst:.1e} (float32; tolerance {tolerance:.0e})")
    return 0 if worst < tolerance else 1
