"""Whole models: compiled train steps and forwards of three flax CNNs, on lax's conv and on jaxconv's drop-in.

Each model takes its conv as ``nn.Conv``'s ``conv_general_dilated`` hook: ``resnet18`` (flax's
``examples/imagenet/models.py`` ResNet-18 with a 3x3 stem and no max pool, 32x32 inputs),
``mobilenet_v2`` (inverted residuals, depthwise 3x3 convs by ``feature_group_count``, 64x64
inputs) and ``decoder`` (8x8 to 64x64 by stride-2 transposed convs written as input-dilated
convs: flax's ``nn.ConvTranspose`` calls ``lax.conv_transpose`` and takes no hook). Per model
and batch: the train step (value_and_grad of the loss, BatchNorm statistics, optax SGD with
momentum, jitted) and the forward, timed, with XLA's temp memory; PyTorch twins (NCHW,
autograd) are timed when importable.

Run from the repository root::

    python benchmarks/models.py            # batches 4 and 32
    python benchmarks/models.py --quick    # fewer calls per measurement
    python benchmarks/models.py --torch off
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

import jaxconv
from jaxconv.compare import MALLOC_ENV, time_interleaved
from jaxconv.compare.torch_conv import import_torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or imported by run.py
from models_torch import torch_decoder, torch_mobilenet_v2, torch_resnet18  # noqa: E402

ConvFn = Callable[..., jax.Array]
CONVS: dict[str, ConvFn] = {"lax": lax.conv_general_dilated, "jaxconv": jaxconv.conv_general_dilated}
BATCHES = (4, 32)
CLASSES = 10


# --- the models (flax.linen) ------------------------------------------------------------


class ResNetBlock(nn.Module):
    """flax's ``examples/imagenet/models.py`` ResNetBlock: two 3x3 convs, a 1x1 projection where the shape changes."""

    filters: int
    conv: Any
    norm: Any
    strides: tuple[int, int] = (1, 1)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        residual = x
        y = nn.relu(self.norm()(self.conv(self.filters, (3, 3), self.strides)(x)))
        y = self.norm(scale_init=nn.initializers.zeros_init())(self.conv(self.filters, (3, 3))(y))
        if residual.shape != y.shape:
            residual = self.conv(self.filters, (1, 1), self.strides, name="conv_proj")(residual)
            residual = self.norm(name="norm_proj")(residual)
        return nn.relu(residual + y)


class ResNet(nn.Module):
    """flax's ResNet (``stage_sizes=(2, 2, 2, 2)``: ResNet-18) with a 3x3 stem and no max pool, for 32x32 inputs."""

    conv_general_dilated: ConvFn
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    num_filters: int = 64

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        conv = functools.partial(nn.Conv, use_bias=False, conv_general_dilated=self.conv_general_dilated)
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5)
        x = nn.relu(norm(name="bn_init")(conv(self.num_filters, (3, 3), name="conv_init")(x)))
        for i, block_size in enumerate(self.stage_sizes):
            for j in range(block_size):
                strides = (2, 2) if i > 0 and j == 0 else (1, 1)
                x = ResNetBlock(self.num_filters * 2**i, conv, norm, strides)(x)
        return nn.Dense(CLASSES)(x.mean(axis=(1, 2)))


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expansion, depthwise 3x3 (``feature_group_count``), linear 1x1 projection."""

    features: int
    expansion: int
    strides: int
    conv: Any
    norm: Any

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = x.shape[-1] * self.expansion
        y = x
        if self.expansion != 1:
            y = nn.relu6(self.norm()(self.conv(hidden, (1, 1))(y)))
        y = self.conv(hidden, (3, 3), (self.strides,) * 2, padding=((1, 1), (1, 1)), feature_group_count=hidden)(y)
        y = self.norm()(self.conv(self.features, (1, 1))(nn.relu6(self.norm()(y))))
        return x + y if self.strides == 1 and x.shape[-1] == self.features else y


# (expansion t, features c, blocks n, first stride s), as in the MobileNetV2 paper's Table 2.
MOBILENET_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2))


class MobileNetV2(nn.Module):
    """A 3x3 stride-2 stem, the inverted-residual stages, a 1x1 head conv, global pooling and a classifier."""

    conv_general_dilated: ConvFn
    stages: Sequence[tuple[int, int, int, int]] = MOBILENET_STAGES
    stem: int = 32
    head: int = 1280

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        conv = functools.partial(nn.Conv, use_bias=False, conv_general_dilated=self.conv_general_dilated)
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, epsilon=1e-5)
        x = nn.relu6(norm()(conv(self.stem, (3, 3), (2, 2), padding=((1, 1), (1, 1)))(x)))
        for expansion, features, blocks, stride in self.stages:
            for j in range(blocks):
                x = InvertedResidual(features, expansion, stride if j == 0 else 1, conv, norm)(x)
        x = nn.relu6(norm()(conv(self.head, (1, 1))(x)))
        return nn.Dense(CLASSES)(x.mean(axis=(1, 2)))


class Upsample2x(nn.Module):
    """A stride-2 3x3 transposed conv as the input-dilated conv it is: ``(H, W) -> (2H, 2W)``.

    ``lhs_dilation=(2, 2)`` with padding ``(1, 2)`` is ``lax.conv_transpose(..., (2, 2), ((1, 2), (1, 2)))``
    and PyTorch's ``ConvTranspose2d(3, stride=2, padding=1, output_padding=1)`` up to the kernel's flip.
    """

    features: int
    conv_general_dilated: ConvFn

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        y = self.conv_general_dilated(
            x, kernel, (1, 1), ((1, 2), (1, 2)), lhs_dilation=(2, 2), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return y + bias.reshape(1, 1, 1, -1)


class Decoder(nn.Module):
    """8x8 to 64x64: three :class:`Upsample2x` with ReLU, then a 3x3 conv to RGB."""

    conv_general_dilated: ConvFn
    features: Sequence[int] = (128, 64, 32)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
        del train  # no BatchNorm: the same signature as the classifiers
        for features in self.features:
            x = nn.relu(Upsample2x(features, self.conv_general_dilated)(x))
        return nn.Conv(3, (3, 3), conv_general_dilated=self.conv_general_dilated)(x)


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One model: its flax module given a conv, its input (NHWC, one image), its loss and its PyTorch twin."""

    name: str
    build: Callable[[ConvFn], nn.Module]
    image: tuple[int, int, int]
    target: tuple[int, ...] | None  # an MSE target's shape per image; None: class labels, cross-entropy
    torch_build: Callable[[Any], Any]


def loss_fn(out: jax.Array, target: jax.Array) -> jax.Array:
    """Cross-entropy for integer labels, else the mean squared error."""
    if jnp.issubdtype(target.dtype, jnp.integer):
        return optax.softmax_cross_entropy_with_integer_labels(out, target).mean()
    return jnp.mean((out - target) ** 2)


def inputs(bench: Benchmark, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random float32 images and labels (or MSE targets), NHWC."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *bench.image), dtype=np.float32)
    if bench.target is None:
        return x, rng.integers(0, CLASSES, batch, dtype=np.int32)
    return x, rng.standard_normal((batch, *bench.target), dtype=np.float32)


def init_state(model: nn.Module, x: jax.Array, tx: optax.GradientTransformation) -> tuple[Any, Any, Any]:
    """``(params, batch_stats, opt_state)`` from a fixed key (the same whichever conv the model calls)."""
    variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), x)
    params = variables["params"]
    return params, variables.get("batch_stats", {}), tx.init(params)


def make_loss(model: nn.Module) -> Callable[..., tuple[jax.Array, Any]]:
    """``params, batch_stats, x, target -> (loss, new batch_stats)`` in training mode."""

    def loss_of(params, batch_stats, x, target):
        variables = {"params": params, "batch_stats": batch_stats}
        out, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
        return loss_fn(out, target), updates.get("batch_stats", {})

    return loss_of


def make_train_step(model: nn.Module, tx: optax.GradientTransformation) -> Callable[..., Any]:
    """``state, x, target -> (state, loss)``: value_and_grad of the loss, BatchNorm statistics, an optax update."""
    loss_of = make_loss(model)

    def step(state, x, target):
        params, batch_stats, opt_state = state
        (loss, batch_stats), grads = jax.value_and_grad(loss_of, has_aux=True)(params, batch_stats, x, target)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

    return step


def make_forward(model: nn.Module) -> Callable[..., jax.Array]:
    """``state, x -> output`` in inference mode."""
    return lambda state, x: model.apply({"params": state[0], "batch_stats": state[1]}, x, train=False)


def temp_bytes(compiled: Any) -> int | None:
    """XLA's temp allocation of a compiled function (None where the backend does not report it)."""
    analysis = compiled.memory_analysis()
    return None if analysis is None else int(analysis.temp_size_in_bytes)


BENCHMARKS = (
    Benchmark("resnet18", ResNet, (32, 32, 3), None, functools.partial(torch_resnet18, classes=CLASSES)),
    Benchmark(
        "mobilenet_v2",
        MobileNetV2,
        (64, 64, 3),
        None,
        functools.partial(torch_mobilenet_v2, classes=CLASSES, stages=MOBILENET_STAGES),
    ),
    Benchmark("decoder", lambda conv: Decoder(conv), (8, 8, 256), (64, 64, 3), torch_decoder),
)


# --- measuring --------------------------------------------------------------------------

PASSES = ("train step", "forward")


@dataclasses.dataclass(frozen=True)
class Row:
    """One model, batch and pass: median milliseconds per implementation, XLA temp bytes for lax and jaxconv."""

    model: str
    batch: int
    kind: str  # one of PASSES
    ms: dict[str, float]
    temp: dict[str, int | None]

    def ratio(self, num: str, den: str, of: str = "ms") -> float | None:
        a, b = getattr(self, of).get(num), getattr(self, of).get(den)
        return None if a is None or not b else a / b


def _blocking(fn: Callable[..., Any], *args: Any) -> Any:
    return jax.block_until_ready(fn(*args))


def _jax_functions(bench: Benchmark, batch: int) -> tuple[dict[str, Callable[[], Any]], dict[str, int | None]]:
    """Compiled train steps and forwards, lax and jaxconv, as timer callables, and their temp bytes."""
    x, target = (jnp.asarray(a) for a in inputs(bench, batch))
    tx = optax.sgd(0.01, momentum=0.9)
    calls, temps = {}, {}
    for impl, conv in CONVS.items():
        model = bench.build(conv)
        state = init_state(model, x, tx)
        step = jax.jit(make_train_step(model, tx)).lower(state, x, target).compile()
        forward = jax.jit(make_forward(model)).lower(state, x).compile()
        temps["train step", impl], temps["forward", impl] = temp_bytes(step), temp_bytes(forward)
        calls["train step", impl] = functools.partial(_blocking, step, state, x, target)
        calls["forward", impl] = functools.partial(_blocking, forward, state, x)
    return calls, temps


def _torch_functions(torch: Any, bench: Benchmark, batch: int) -> dict[str, Callable[[], Any]]:
    """The PyTorch twin's train step (autograd, SGD with momentum) and its forward under ``no_grad``."""
    torch.manual_seed(0)
    model = bench.torch_build(torch)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, target = inputs(bench, batch)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    if bench.target is None:
        loss_of, tt = torch.nn.functional.cross_entropy, torch.from_numpy(target).long()
    else:
        loss_of, tt = torch.nn.functional.mse_loss, torch.from_numpy(target).permute(0, 3, 1, 2).contiguous()

    def step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_of(model(xt), tt)
        loss.backward()
        optimizer.step()
        return loss.item()

    def forward():
        model.eval()
        with torch.no_grad():
            return model(xt)

    return {("train step", "torch"): step, ("forward", "torch"): forward}


def measure(bench: Benchmark, batch: int, *, torch: Any = None, repeats: int = 5, min_time: float = 0.5) -> list[Row]:
    """The train step and forward of ``bench`` at ``batch``: lax, jaxconv and (``torch``: the module) PyTorch."""
    calls, temps = _jax_functions(bench, batch)
    groups = [{" / ".join(key): fn for key, fn in calls.items()}]
    if torch is not None:
        groups.append({" / ".join(key): fn for key, fn in _torch_functions(torch, bench, batch).items()})
    timings = time_interleaved(groups, repeats=repeats, min_time=min_time)
    rows = []
    for kind in PASSES:
        ms = {impl: t.median * 1e3 for name, t in timings.items() for k, impl in [name.split(" / ")] if k == kind}
        rows.append(Row(bench.name, batch, kind, ms, {impl: temps[kind, impl] for impl in CONVS}))
    return rows


# --- the report -------------------------------------------------------------------------


def _cell(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _mib(size: int | None) -> str:
    return "n/a" if size is None else f"{size / 2**20:.1f}"


def targets(rows: Sequence[Row]) -> list[tuple[str, str, str, bool | None]]:
    """``(target, goal, measured, met)`` for each target; met is None where it was not measured."""

    def worst(name, goal, limit, values):
        values = [(v, label) for v, label in values if v is not None]
        if not values:
            return name, goal, "not measured", None
        value, label = max(values)
        return name, goal, f"worst {value:.3g}x ({label})", value <= limit

    label = lambda r: f"{r.model} {r.kind}, batch {r.batch}"
    resnet32 = [r for r in rows if r.model == "resnet18" and r.batch == 32]
    others = [r for r in rows if r.model != "resnet18"]
    return [
        worst("temp memory vs lax, every model, pass and batch", "<= 1.5x", 1.5,
              [(r.ratio("jaxconv", "lax", "temp"), label(r)) for r in rows]),
        worst("ResNet-18 train step and forward time vs lax, batch 32", "<= 1.0x", 1.0,
              [(r.ratio("jaxconv", "lax"), label(r)) for r in resnet32]),
        worst("MobileNetV2 and decoder train step time vs PyTorch", "<= 2.0x", 2.0,
              [(r.ratio("jaxconv", "torch"), label(r)) for r in others if r.kind == "train step"]),
        worst("MobileNetV2 and decoder forward time vs PyTorch", "<= 1.25x", 1.25,
              [(r.ratio("jaxconv", "torch"), label(r)) for r in others if r.kind == "forward"]),
    ]  # fmt: skip


def format_rows(rows: Sequence[Row]) -> list[str]:
    """The Markdown table (times in ms, temp memory in MiB; PyTorch's memory is not measured) and the targets."""
    lines = [
        "| model | batch | pass | lax ms | jaxconv ms | PyTorch ms | jaxconv/lax | jaxconv/PyTorch "
        "| lax temp MiB | jaxconv temp MiB | PyTorch temp MiB | temp jaxconv/lax |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r.model, r.batch, r.kind, *(_cell(r.ms.get(i), ".2f") for i in ("lax", "jaxconv", "torch"))]
        cells += [_cell(r.ratio("jaxconv", "lax"), ".3g"), _cell(r.ratio("jaxconv", "torch"), ".3g")]
        cells += [_mib(r.temp["lax"]), _mib(r.temp["jaxconv"]), "-", _cell(r.ratio("jaxconv", "lax", "temp"), ".3g")]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += ["", "| target | goal | measured | status |", "|---|---|---|---|"]
    for name, goal, measured, met in targets(rows):
        lines.append(f"| {name} | {goal} | {measured} | {({True: 'met', False: 'NOT MET', None: 'n/a'})[met]} |")
    return lines


def models_section(*, quick: bool, torch: bool) -> list[str]:
    """Measures every model at every batch of :data:`BATCHES` and returns the Markdown section.

    ``quick``: 3 calls / ~0.1 s per measurement instead of 5 / ~0.5 s. ``torch``: also time the
    PyTorch twins when PyTorch is importable.
    """
    torch_module = import_torch("auto" if torch else False)[0]
    if torch_module is not None:
        torch_module.set_num_threads(os.cpu_count() or 1)
    repeats, min_time = (3, 0.1) if quick else (5, 0.5)
    rows = []
    for bench in BENCHMARKS:
        for batch in BATCHES:
            print(f"models: {bench.name}, batch {batch}", file=sys.stderr, flush=True)
            rows += measure(bench, batch, torch=torch_module, repeats=repeats, min_time=min_time)
    return [
        "## Whole models",
        "",
        "Compiled train steps (value_and_grad of the loss, BatchNorm statistics, optax SGD with momentum) and "
        "forwards (inference mode) of flax models whose convs are `lax.conv_general_dilated` or "
        "`jaxconv.conv_general_dilated` (`benchmarks/models.py`); PyTorch runs the same models with autograd "
        f"(NCHW). Median of {'3' if quick else '5'}+ interleaved calls; temp memory is XLA's "
        "`memory_analysis().temp_size_in_bytes`.",
        "",
        *format_rows(rows),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 calls / ~0.1 s per measurement")
    parser.add_argument("--torch", choices=("auto", "off"), default="auto", help="also time PyTorch when importable")
    parser.add_argument("--no-reexec", action="store_true", help="do not restart under the malloc settings")
    args = parser.parse_args(argv)
    if not args.no_reexec and sys.platform.startswith("linux") and not all(v in os.environ for v in MALLOC_ENV):
        # XLA's CPU buffers would be fresh mmaps on every call (benchmarks/README.md, "The malloc settings").
        argv = sys.argv[1:] if argv is None else list(argv)
        os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *argv], {**MALLOC_ENV, **os.environ})
    print("\n".join(models_section(quick=args.quick, torch=args.torch == "auto")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
