"""Text for experiment grids: number formats, console tables and summary sentences.

The summary sentences take the :class:`bubblereduce.experiment.GridRow` records of a
grid and say, with units and the configuration they came from, which strategy is
fastest, how much communication costs, and where a strategy does not help. They are
deterministic (no wall-clock times or paths), so a rerun from a saved profile gives a
byte-identical ``summary.txt``. The main demo composes them in
``bubblereduce.demo.summary_lines``; ``balance.py`` can reuse them for its own grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bubblereduce import experiment as ex

__all__ = [
    "fmt_time",
    "fmt_bytes",
    "pct",
    "text_table",
    "layer_table",
    "block_table",
    "partition_table",
    "best_strategy_lines",
    "comm_share_lines",
    "compute_per_step_line",
    "slack_lines",
    "gain_lines",
    "not_helping_lines",
    "peak_inflight_line",
    "skipped_lines",
]


def _ms(x: float) -> str:
    return f"{x * 1e3:.3f}"


def fmt_time(seconds: float) -> str:
    """Seconds as text with the unit chosen by magnitude (s, ms or µs), 3 significant digits."""
    if not math.isfinite(seconds):
        return "n/a"
    ax = abs(seconds)
    if ax >= 1.0:
        return f"{seconds:.3g} s"
    if ax >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def fmt_bytes(num_bytes: float) -> str:
    """Bytes as text in B, kB or MB (decimal units, 3 significant digits)."""
    if num_bytes >= 1e6:
        return f"{num_bytes / 1e6:.3g} MB"
    if num_bytes >= 1e3:
        return f"{num_bytes / 1e3:.3g} kB"
    return f"{int(num_bytes)} B"


def pct(fraction: float) -> str:
    """A fraction as a percentage with one decimal: 0.1234 -> ``"12.3 %"``."""
    return f"{fraction * 100:.1f} %"


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A right-aligned plain-text table with a dashed rule under the header."""
    widths = [max(len(h), *(len(r[k]) for r in rows)) if rows else len(h) for k, h in enumerate(header)]
    line = "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))
    body = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def layer_table(profile: Any) -> str:
    """Per-layer table of a ``ModelProfile``: F, B, I, W (ms per microbatch), output activation and parameter bytes."""
    rows = [
        [
            layer.name,
            _ms(layer.forward_s),
            _ms(layer.backward_s),
            "-" if layer.input_grad_s is None else _ms(layer.input_grad_s),
            "-" if layer.weight_grad_s is None else _ms(layer.weight_grad_s),
            fmt_bytes(layer.act_bytes),
            fmt_bytes(layer.param_bytes),
        ]
        for layer in profile.layers
    ]
    return text_table(["layer", "F ms", "B ms", "I ms", "W ms", "act", "params"], rows)


def block_table(costs: ex.BlockCosts) -> str:
    """Per-block table: F, B and its weight-grad part W (ms per microbatch), output activation bytes."""
    rows = []
    for k, name in enumerate(costs.names):
        w = "-" if costs.weight_s is None else _ms(float(costs.weight_s[k]))
        rows.append([str(k), name, _ms(costs.forward_s[k]), _ms(costs.backward_s[k]), w, fmt_bytes(int(costs.act_bytes[k]))])
    return text_table(["block", "layers", "F ms", "B ms", "W ms", "out act"], rows)


def partition_table(costs: ex.BlockCosts, parts: Sequence[tuple[int, int]]) -> str:
    """Per-stage table of one partition: blocks, F, B, F+B (ms per microbatch) and bytes sent to the next stage."""
    f, b, _ = ex.stage_arrays(costs, parts)
    rows = []
    for s, (a, e) in enumerate(parts):
        sends = fmt_bytes(int(costs.act_bytes[e - 1])) if s < len(parts) - 1 else "-"
        rows.append([str(s), f"{a}:{e}", _ms(f[s]), _ms(b[s]), _ms(f[s] + b[s]), sends])
    return text_table(["stage", "blocks", "F ms", "B ms", "F+B ms", "sends"], rows)


# --------------------------------------------------------------------------- sentences


def _schedules(rows: Sequence[ex.GridRow]) -> list[str]:
    return list(dict.fromkeys(r.schedule for r in rows))


def _strategy(cell: Sequence[ex.GridRow], name: str) -> ex.GridRow | None:
    return next((r for r in cell if r.strategy == name), None)


def skipped_lines(rows: Sequence[ex.GridRow], microbatches: Sequence[int], num_devices: int) -> list[str]:
    """One sentence per schedule that lacks some of ``microbatches`` in ``rows`` (skipped cells)."""
    out = []
    for s in _schedules(rows):
        have = {r.microbatches for r in rows if r.schedule == s}
        missing = [m for m in microbatches if m not in have]
        if missing:
            out.append(
                f"{s} cannot run with m = {', '.join(map(str, missing))} on {num_devices} devices:"
                " those cells are skipped."
            )
    return out


def compute_per_step_line(rows: Sequence[ex.GridRow], microbatches: Sequence[int]) -> str | None:
    """Measured compute of one step per microbatch count (``m x sum of f + b``), from single-stage rows."""
    work = []
    for m in microbatches:
        r = next((r for r in rows if r.microbatches == m and r.stages_per_device == 1), None)
        if r is not None:
            work.append(f"m={m}: {fmt_time(r.makespan_s * r.num_devices * (1 - r.bubble_fraction))}")
    if not work:
        return None
    return (
        "Measured compute per step (m x sum of per-microbatch f + b over all layers): "
        + ", ".join(work)
        + " - small microbatches use this CPU less efficiently, so step times can grow with m."
    )


def best_strategy_lines(rows: Sequence[ex.GridRow], microbatches: int, baseline: str = "uniform") -> list[str]:
    """Per schedule and bandwidth at ``microbatches``: the fastest strategy (ties named), its speedup over
    ``baseline``, both bubble fractions, the communication share, and the best speedup's range over m."""
    out = [f"Best strategy per schedule and link (speedup = {baseline} step time / best step time):"]
    bws = sorted({r.bandwidth_GBps for r in rows})
    for s in _schedules(rows):
        s_mbs = sorted({r.microbatches for r in rows if r.schedule == s})
        for bw in bws:
            cell = ex.cell_rows(rows, s, bw, microbatches)
            base = _strategy(cell, baseline)
            best = ex.best_row(cell, exclude=(baseline,))
            if base is None or best is None:
                continue
            over_m = [b.speedup_vs_uniform for m in s_mbs if (b := ex.best_row(ex.cell_rows(rows, s, bw, m), (baseline,)))]
            tied = ex.tied_strategies(cell, best, exclude=(baseline,))
            who = best.strategy if len(tied) == 1 else f"{' = '.join(tied)} (tied)"
            where = f"- {s}, {bw:g} GB/s, m={microbatches}:"
            if best.makespan_s < base.makespan_s * (1 - 1e-9):
                head = (
                    f"{where} best {who}, step {fmt_time(best.makespan_s)} vs {baseline}"
                    f" {fmt_time(base.makespan_s)} ({best.speedup_vs_uniform:.3f}x)"
                )
            else:
                head = (
                    f"{where} no strategy beats {baseline} ({fmt_time(base.makespan_s)};"
                    f" best other {who} {best.speedup_vs_uniform:.3f}x)"
                )
            out.append(
                head
                + f"; bubble {pct(best.bubble_fraction)} vs {pct(base.bubble_fraction)}"
                + f"; communication adds {pct(best.comm_share)} of the step"
                + f"; best speedup over m = {s_mbs[0]}..{s_mbs[-1]}: {min(over_m):.3f}x to {max(over_m):.3f}x."
            )
    return out


def comm_share_lines(rows: Sequence[ex.GridRow], microbatches: int, baseline: str = "uniform") -> list[str]:
    """Per bandwidth at ``microbatches``: range of the communication share over schedules and strategies."""
    out = [f"Communication share of step time (1 - step without comm / step), m={microbatches}:"]
    for bw in sorted({r.bandwidth_GBps for r in rows}):
        mine = [r for r in rows if r.bandwidth_GBps == bw and r.microbatches == microbatches]
        if not mine:
            continue
        base = [r.comm_share for r in mine if r.strategy == baseline]
        shares = [r.comm_share for r in mine]
        out.append(
            f"- {bw:g} GB/s: {pct(min(shares))} to {pct(max(shares))} over schedules and strategies"
            + (f" ({baseline}: {pct(min(base))} to {pct(max(base))})." if base else ".")
        )
    return out


def slack_lines(rows: Sequence[ex.GridRow], slack: float, microbatches: int, bandwidth_GBps: float) -> list[str]:
    """What dp_slack saves in boundary traffic vs dp_min_max, what it costs in bottleneck (per plan
    size, at ``microbatches`` and ``bandwidth_GBps``), and its net step-time change at the slowest link."""
    out = [f"Communication saved by dp_slack (slack {slack:g}) vs dp_min_max, m={microbatches}, {bandwidth_GBps:g} GB/s:"]
    seen: set[tuple[int, int]] = set()
    for s in _schedules(rows):
        cell = ex.cell_rows(rows, s, bandwidth_GBps, microbatches)
        dp, sl = _strategy(cell, "dp_min_max"), _strategy(cell, "dp_slack")
        if dp is None or sl is None or (dp.num_stages, dp.block_n) in seen:
            continue
        seen.add((dp.num_stages, dp.block_n))
        plan = f"- {dp.num_stages} stages (blocks of {dp.block_n}):"
        if sl.partition == dp.partition:
            out.append(
                f"{plan} same partition as dp_min_max; no boundary traffic to save within {slack:g} slack"
                f" ({fmt_bytes(dp.boundary_bytes_total)} per microbatch)."
            )
            continue
        saved = 1 - sl.boundary_bytes_total / dp.boundary_bytes_total if dp.boundary_bytes_total else 0.0
        out.append(
            f"{plan} boundary traffic {fmt_bytes(dp.boundary_bytes_total)} -> {fmt_bytes(sl.boundary_bytes_total)}"
            f" per microbatch per direction ({pct(saved)} less), bottleneck {fmt_time(dp.bottleneck_s)} ->"
            f" {fmt_time(sl.bottleneck_s)} (+{pct(sl.bottleneck_s / dp.bottleneck_s - 1)})."
        )
    if len(out) == 1:
        return []
    slow = min(r.bandwidth_GBps for r in rows)
    deltas = []
    for s in _schedules(rows):
        cell = ex.cell_rows(rows, s, slow, microbatches)
        dp, sl = _strategy(cell, "dp_min_max"), _strategy(cell, "dp_slack")
        if dp is not None and sl is not None:
            deltas.append(f"{s} {(sl.makespan_s / dp.makespan_s - 1) * 100:+.1f} %")
    out.append(f"- Net step-time change of dp_slack vs dp_min_max at {slow:g} GB/s, m={microbatches}: {', '.join(deltas)}.")
    return out


def gain_lines(
    rows: Sequence[ex.GridRow], strategy: str, reference: str, microbatches: int, bandwidth_GBps: float
) -> list[str]:
    """Per schedule: step-time gain ``1 - strategy / reference`` at the given configuration, how many
    configurations improve (largest gain and where), and any where ``strategy`` is slower."""
    out = [f"{strategy} vs {reference} (step-time gain = 1 - {strategy} / {reference}):"]
    for s in _schedules(rows):
        pairs = []
        for r in rows:
            if r.schedule == s and r.strategy == strategy:
                ref = _strategy(ex.cell_rows(rows, s, r.bandwidth_GBps, r.microbatches), reference)
                if ref is not None:
                    pairs.append((1 - r.makespan_s / ref.makespan_s, r))
        if not pairs:
            continue
        rep = next((g for g, r in pairs if r.microbatches == microbatches and r.bandwidth_GBps == bandwidth_GBps), None)
        better = [(g, r) for g, r in pairs if g > 1e-9]
        worse = [(g, r) for g, r in pairs if g < -1e-9]
        text = f"- {s}: " + (f"{pct(rep)} at m={microbatches}, {bandwidth_GBps:g} GB/s; " if rep is not None else "")
        if better:
            g, r = max(better, key=lambda t: t[0])
            text += (
                f"better in {len(better)} of {len(pairs)} configurations"
                f" (largest {pct(g)} at m={r.microbatches}, {r.bandwidth_GBps:g} GB/s)"
            )
        else:
            text += f"no gain in any of {len(pairs)} configurations ({reference} is already as good here)"
        if worse:
            g, r = min(worse, key=lambda t: t[0])
            text += f"; SLOWER in {len(worse)} (by up to {pct(-g)} at m={r.microbatches}, {r.bandwidth_GBps:g} GB/s)"
        text += "; equal elsewhere." if better and len(better) + len(worse) < len(pairs) else "."
        out.append(text)
    return out if len(out) > 1 else []


def not_helping_lines(rows: Sequence[ex.GridRow], baseline: str = "uniform") -> list[str]:
    """Per strategy: in how many configurations it is slower than ``baseline`` and the worst case."""
    out = [f"Where a strategy does not help (slower than {baseline} in the same configuration):"]
    for strat in dict.fromkeys(r.strategy for r in rows):
        if strat == baseline:
            continue
        mine = [r for r in rows if r.strategy == strat]
        worse = [r for r in mine if r.speedup_vs_uniform < 1 - 1e-9]
        if worse:
            w = min(worse, key=lambda r: r.speedup_vs_uniform)
            out.append(
                f"- {strat}: slower in {len(worse)} of {len(mine)} configurations"
                f" (worst {w.speedup_vs_uniform:.3f}x: {w.schedule}, m={w.microbatches}, {w.bandwidth_GBps:g} GB/s)."
            )
        else:
            out.append(f"- {strat}: never slower than {baseline} ({len(mine)} configurations).")
    return out


def peak_inflight_line(rows: Sequence[ex.GridRow], strategy: str, microbatches: int, bandwidth_GBps: float) -> list[str]:
    """Peak in-flight microbatches (max over devices) per schedule for ``strategy`` at one configuration."""
    peaks = []
    for s in _schedules(rows):
        r = _strategy(ex.cell_rows(rows, s, bandwidth_GBps, microbatches), strategy)
        if r is not None:
            peaks.append(f"{s} {r.peak_inflight:g}")
    if not peaks:
        return []
    return [
        f"Peak in-flight microbatches (max over devices; drives activation memory), {strategy},"
        f" m={microbatches}, {bandwidth_GBps:g} GB/s:",
        "- " + ", ".join(peaks) + ".",
    ]
