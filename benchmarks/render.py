"""``benchmarks/RESULTS.md``: the machine, then one section per preset (cases, results, targets), in Markdown."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from targets import Target, evaluate_slowpath_targets, evaluate_targets

from jaxconv.compare import CaseResult, geometric_mean


@dataclasses.dataclass(frozen=True)
class Preset:
    """A preset of ``benchmarks/run.py`` that ``jaxconv.compare`` measures: its section's title, text and targets."""

    name: str
    title: str
    about: str
    targets: Callable[[Sequence[CaseResult], str], list[Target]]


PRESETS = {
    "cnn": Preset(
        "cnn",
        "CNN layers",
        'NCHW float32 layers of LeNet and CIFAR CNNs, one depthwise, one dilated (`PRESETS["cnn"]`); '
        "the targets are issue 5's.",
        evaluate_targets,
    ),
    "slowpaths": Preset(
        "slowpaths",
        "Slow paths of lax",
        'The convolutions XLA handles badly (`PRESETS["slowpaths"]`): transposed convs (`lhs_dilation`, '
        "run by `jaxconv.conv_general_dilated` beside `lax.conv_general_dilated` and PyTorch's "
        "`conv_transposeNd`), depthwise, 8 and 32 groups, WaveNet-like dilated 1-d convs. GFLOP of a "
        "transposed conv count the dilated input's holes, as lax's conv computes them.",
        lambda results, backend: evaluate_slowpath_targets(results),
    ),
}
PRESETS["slowpaths-gpu"] = dataclasses.replace(
    PRESETS["slowpaths"], name="slowpaths-gpu", title="Slow paths of lax, GPU sizes"
)


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def _g(value: float | None, spec: str = ".3g") -> str:
    return "n/a" if value is None else format(value, spec)


def _mib(size: int | None) -> str:
    return "n/a" if size is None else f"{size / 2**20:.1f}"


def _options(result: CaseResult) -> str:
    return " ".join(result.case.spec.split()[3:]) or "-"


def case_table(results: Sequence[CaseResult]) -> list[str]:
    """One row per case: shapes, options, forward GFLOP."""
    lines = [_row(["case", "x (N,C,*spatial)", "w (FN,C/g,*kernel)", "options", "GFLOP fwd"]), _row(["---"] * 5)]
    for r in dict((r.case, r) for r in results).values():
        c = r.case
        lines.append(
            _row([c.name, ",".join(map(str, c.x)), ",".join(map(str, c.w)), _options(r), f"{c.flops / 1e9:.3f}"])
        )
    return lines


def results_table(results: Sequence[CaseResult], has_torch: bool) -> list[str]:
    """One row per timed case, then the geometric means; skipped cases are listed in the notes."""
    header = [
        "case",
        "strategy",
        "fwd ms jaxconv / lax",
        "**fwd ratio**",
        "vag ms jaxconv / lax",
        "**vag ratio**",
        "GFLOP/s fwd / vag",
        "GEMM GFLOP/s",
        "% of GEMM fwd / vag",
        "vag temp MiB jaxconv / lax",
        "temp ratio",
    ]
    if has_torch:
        header += ["torch ms fwd / vag", "vs torch fwd / vag"]
    header += ["noise", "max rel error"]
    lines = [_row(header), _row(["---", "---"] + ["--:"] * (len(header) - 2))]
    timed = [r for r in results if r.timed]
    for r in timed:
        f, v = r.forward, r.value_and_grad
        noise = max(t.iqr / t.median for t in (*f.values(), *v.values()))
        cells = [
            r.case.name,
            r.strategy,
            f"{_ms(f['jaxconv'].median)} / {_ms(f['lax'].median)}",
            f"{r.ratio('forward'):.3g}",
            f"{_ms(v['jaxconv'].median)} / {_ms(v['lax'].median)}",
            f"{r.ratio('value_and_grad'):.3g}",
            f"{r.gflops('forward'):.1f} / {r.gflops('value_and_grad'):.1f}",
            f"{r.gemm_gflops:.1f}",
            f"{r.gemm_fraction('forward'):.0%} / {r.gemm_fraction('value_and_grad'):.0%}",
            f"{_mib(r.temp_bytes['jaxconv_value_and_grad'])} / {_mib(r.temp_bytes['lax_value_and_grad'])}",
            _g(r.temp_ratio),
        ]
        if has_torch:
            torch_ms = f"{_ms(f['torch'].median)} / {_ms(v['torch'].median)}" if "torch" in v else "n/a"
            versus = f"{_g(r.ratio('forward', 'torch'))} / {_g(r.ratio('value_and_grad', 'torch'))}"
            cells += [torch_ms, versus]
        cells += [f"{noise:.0%}", f"{r.max_rel_error:.1e}" + ("" if r.ok else " FAIL")]
        lines.append(_row(cells))
    mean = lambda value: _g(geometric_mean(map(value, timed)))
    means = ["**geometric mean**", "", "", mean(lambda r: r.ratio("forward")), ""]
    means += [mean(lambda r: r.ratio("value_and_grad")), "", "", "", "", mean(lambda r: r.temp_ratio)]
    if has_torch:
        fwd = geometric_mean(r.ratio("forward", "torch") for r in timed)
        vag = geometric_mean(r.ratio("value_and_grad", "torch") for r in timed)
        means += ["", f"{_g(fwd)} / {_g(vag)}"]
    means += ["", ""]
    lines.append(_row(means))
    return lines


def preset_section(preset: Preset, results: Sequence[CaseResult], backend: str) -> list[str]:
    """``## <title>``: the cases, the results (one table per dtype) and the targets."""
    has_torch = any("torch" in r.value_and_grad for r in results)
    dtypes = list(dict.fromkeys(r.dtype for r in results))
    lines = [f"## {preset.title} (`{preset.name}`)", "", preset.about, "", "### Cases", "", *case_table(results), ""]
    lines += ["### Results", ""]
    for dtype in dtypes:
        if len(dtypes) > 1:
            lines += [f"#### {dtype}", ""]
        lines += [*results_table([r for r in results if r.dtype == dtype], has_torch), ""]
    targets = preset.targets(results, backend)
    lines += ["### Targets", "", _row(["target", "goal", "measured", "status"]), _row(["---"] * 4)]
    lines += [_row([t.name, t.goal, t.measured, t.status]) for t in targets]
    return lines + [""]


def render(
    sections: Sequence[tuple[Preset, Sequence[CaseResult]]],
    info: dict,
    *,
    command: str,
    repeats: int,
    min_time: float,
    partial: bool,
    extra: Sequence[str] = (),
) -> str:
    """RESULTS.md: machine, versions, date, a section per preset, then ``extra`` (design, models) and the notes."""
    malloc = ", ".join(f"`{k}={v}`" for k, v in info["malloc_env"].items())
    lines = [
        "# jaxconv benchmark results",
        "",
        f"Written by `{command}` on {info['date']}. Every number below is computed by that run; "
        "re-run the script rather than editing this file.",
    ]
    if partial:
        lines += ["", "**Partial or quick run**: not the full benchmark; indicative only."]
    lines += [
        "",
        "## Machine",
        "",
        f"- CPU: {info['cpu']}, {info['cores']} cores usable by the process"
        + (f"; load average at the end {info['load_average']}" if "load_average" in info else ""),
        f"- JAX {info['jax']} (jaxlib {info['jaxlib']}) on {info['backend']} ({info['device']}); "
        f"PyTorch {info['torch'] or 'not installed'}; NumPy {info['numpy']}; Python {info['python']}",
        f"- {info['platform']}; malloc: {malloc}",
        f"- Timing: medians of at least {repeats} calls and about {min_time:g} s per measurement, after compile "
        "and warm-up, `block_until_ready`; jaxconv, lax and the GEMM interleaved call by call, PyTorch in "
        "blocks between them (its threads spin after a call). `value_and_grad` with respect to x and w "
        "of `sum(conv(x, w) * g)`.",
        "- Ratios are jaxconv time over the other's (below 1: jaxconv is faster). vag = `value_and_grad`. "
        "strategy: the contraction jaxconv runs (`jaxconv.conv_strategy`). "
        "GFLOP/s count 2·N·FN·prod(out)·C/groups·prod(k) for the forward and three times that for vag. "
        "GEMM GFLOP/s: a jitted `(M,K) @ (K,N)` of the forward's shape (M = N·prod(out), K = C/groups·prod(k), "
        "N = FN; per group for grouped convs), the practical limit. temp MiB: XLA `memory_analysis()` "
        "temp bytes of the compiled vag. noise: the largest IQR/median of the case's timings. "
        "max rel error: jaxconv's worst of out, dL/dx, dL/dw against lax at `precision=HIGHEST`, "
        "as max abs error / max |reference|.",
        "",
    ]
    for preset, results in sections:
        lines += preset_section(preset, results, info["backend"])
    lines += list(extra)
    notes = {}
    for _, results in sections:
        for r in results:
            for note in r.notes:
                notes.setdefault(note, []).append(f"{r.case.name} ({r.dtype})")
    if notes:
        lines += ["## Notes", "", *(f"- {', '.join(names)}: {note}" for note, names in notes.items()), ""]
    return "\n".join(lines)
