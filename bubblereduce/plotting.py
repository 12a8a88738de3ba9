"""Figures: pipeline timelines (Gantt), line plots, per-stage loads, time series.

The only module that imports matplotlib. It builds ``matplotlib.figure.Figure``
objects directly (no pyplot, so no global figure state) and renders them with
the Agg canvas. Every figure: 150 dpi, ``layout="constrained"``, Okabe-Ito
colours (F blue, B orange, W green, I vermillion, idle light grey), legend
outside the data, axes labelled with units, written through a temporary file
and renamed (an interrupted run leaves no half-written PNG).
"""

from __future__ import annotations

import io as _stdlib_io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, NullLocator

from .io import atomic_write_bytes

__all__ = [
    "KIND_COLORS",
    "IDLE_COLOR",
    "PALETTE",
    "time_unit",
    "plot_timeline",
    "plot_timelines",
    "plot_lines",
    "plot_stage_loads",
    "plot_stage_memory",
    "plot_timeseries",
]

DPI = 150
KIND_COLORS: dict[str, str] = {"F": "#0072B2", "B": "#E69F00", "I": "#D55E00", "W": "#009E73"}
KIND_LABELS: dict[str, str] = {"F": "forward (F)", "B": "backward (B)",
                               "I": "input grad (I)", "W": "weight grad (W)"}
IDLE_COLOR = "#E4E4E4"
SEND_COLORS: dict[str, str] = {"act": "#3A3A3A", "grad": "#CC79A7"}
# Okabe-Ito, in an order where neighbours contrast; black last
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7",
                            "#56B4E9", "#F0E442", "#000000")
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES: tuple[str, ...] = ("-", "--", "-.", ":")

PathLike = str | os.PathLike[str]


def time_unit(max_s: float) -> tuple[str, float]:
    """Unit name and scale for times up to ``max_s`` seconds: ``("s", 1)``, ``("ms", 1e3)``
    or ``("µs", 1e6)``, so tick labels stay between about 0.1 and 1000."""
    if not math.isfinite(max_s) or max_s >= 1.0:
        return "s", 1.0
    if max_s >= 1e-3:
        return "ms", 1e3
    return "µs", 1e6


def _finish(fig: Figure, ax: Axes, path: PathLike, *, xlabel: str, ylabel: str, title: str) -> None:
    """Label a line plot's axes, grid it, put the legend outside the data, and save it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(color="#CCCCCC", linewidth=0.5, alpha=0.7)
    _legend_right(fig, ax)
    _save(fig, path)


def _save(fig: Figure, path: PathLike) -> None:
    suffix = Path(path).suffix.lower().lstrip(".") or "png"
    if suffix not in ("png", "svg", "pdf"):
        raise ValueError(f"figure path must end in .png, .svg or .pdf, got '{path}'")
    FigureCanvasAgg(fig)
    buf = _stdlib_io.BytesIO()
    # metadata without software versions/dates keeps files byte-stable between runs
    meta: dict[str, Any] = {"Software": None} if suffix == "png" else {}
    if suffix == "pdf":
        meta = {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}
    if suffix == "svg":
        meta = {"Date": None, "Creator": None}
    fig.savefig(buf, format=suffix, dpi=DPI, metadata=meta)
    atomic_write_bytes(path, buf.getvalue())


def _lighten(color: str, amount: float) -> tuple[float, float, float]:
    r, g, b = to_rgb(color)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def _check_events(result: Any) -> tuple[list[tuple], list[tuple], int]:
    events = list(result.events)
    transfers = list(getattr(result, "transfers", ()) or ())
    num_devices = getattr(result, "num_devices", None)
    if num_devices is None:
        num_devices = 1 + max((int(e[0]) for e in events), default=-1)
    if num_devices < 1:
        raise ValueError("result has no devices/events to draw")
    return events, transfers, int(num_devices)


def _draw_timeline(ax: Axes, result: Any, *, stage_names: Sequence[str] | None,
                   unit: str, scale: float, xmax_s: float, show_transfers: bool,
                   axes_width_in: float, axes_height_in: float) -> set[str]:
    """Draw one Gantt chart into ``ax``; returns the legend keys used."""
    events, transfers, num_devices = _check_events(result)
    used: set[str] = {"idle"}
    row_h = 0.62 if show_transfers and transfers else 0.8
    top = -0.4
    # stages each device holds, in first-seen order: later ones are drawn lighter
    dev_stages: dict[int, list[int]] = {}
    for d, _k, s, *_ in events:
        stages = dev_stages.setdefault(int(d), [])
        if s not in stages:
            stages.append(int(s))
    for d in dev_stages:
        dev_stages[d].sort()
    makespan_s = float(getattr(result, "makespan", max((e[5] for e in events), default=0.0)))
    for d in range(num_devices):
        ax.broken_barh([(0.0, makespan_s * scale)], (d + top, row_h), facecolors=IDLE_COLOR,
                       edgecolor="none", zorder=1)
    # boxes: batch per (device, kind, chunk) into one broken_barh call
    batches: dict[tuple[int, str, int], list[tuple[float, float]]] = {}
    for d, kind, s, _mb, start, end in events:
        if kind not in KIND_COLORS:
            raise ValueError(f"unknown action kind {kind!r}; allowed: F, B, I, W")
        chunk = dev_stages[int(d)].index(int(s))
        batches.setdefault((int(d), kind, chunk), []).append(
            (float(start) * scale, (float(end) - float(start)) * scale))
        used.add(kind)
    multi = any(len(v) > 1 for v in dev_stages.values())
    for (d, kind, chunk), spans in batches.items():
        color = _lighten(KIND_COLORS[kind], 0.5 * chunk / max(1, len(dev_stages[d]) - 1))
        ax.broken_barh(spans, (d + top, row_h), facecolors=color, edgecolor="white",
                       linewidth=0.4, zorder=2)
    if multi:
        used.add("later-stage")
    # microbatch numbers where the box is wide enough (about 0.09 in per digit + margin)
    span_x = max(xmax_s, 1e-300) * scale
    in_per_unit = axes_width_in / span_x
    row_pt = row_h * axes_height_in * 72 / num_devices
    fontsize = 6.5 if num_devices <= 8 else 5.5
    if row_pt >= fontsize * 1.2:
        for d, kind, s, mb, start, end in events:
            width_u = (float(end) - float(start)) * scale
            label = str(int(mb))
            # a digit is ~0.6 em wide; keep a small margin either side
            if width_u * in_per_unit >= (0.6 * len(label) + 0.5) * fontsize / 72:
                dark = kind in ("F", "I", "W") and dev_stages[int(d)].index(int(s)) == 0
                ax.text((float(start) + float(end)) / 2 * scale, d + top + row_h / 2, label,
                        ha="center", va="center", fontsize=fontsize, zorder=3,
                        color="white" if dark else "black")
    if show_transfers and transfers:
        strip_y, strip_h = top + row_h + 0.04, 0.14
        sends: dict[tuple[int, str], list[tuple[float, float]]] = {}
        for src, _dst, kind, _s, _mb, start, end in transfers:
            key = "act" if kind == "F" else "grad"
            sends.setdefault((int(src), key), []).append(
                (float(start) * scale, (float(end) - float(start)) * scale))
            used.add(f"send-{key}")
        for (d, key), spans in sends.items():
            ax.broken_barh(spans, (d + strip_y, strip_h), facecolors=SEND_COLORS[key],
                           edgecolor="none", alpha=0.9, zorder=2)
    ax.set_ylim(num_devices - 0.5, -0.5)  # device 0 on top
    ax.set_xlim(0.0, xmax_s * scale * 1.005)
    ticks = list(range(num_devices))
    labels = []
    for d in ticks:
        label = f"device {d}"
        if stage_names is not None and d in dev_stages:
            names = ", ".join(stage_names[s] for s in dev_stages[d])
            label += "\n" + (names if len(names) <= 22 else names[:21] + "…")
        labels.append(label)
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.set_yticklabels(labels, fontsize=7 if num_devices <= 8 else 6)
    ax.yaxis.set_minor_locator(NullLocator())
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel(f"time ({unit})")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="x", color="#BBBBBB", linewidth=0.4, alpha=0.6, zorder=0)
    ax.set_axisbelow(True)
    return used


def _timeline_legend(fig: Figure, used: set[str]) -> None:
    handles: list[Any] = []
    for kind in "FBIW":
        if kind in used:
            handles.append(Patch(facecolor=KIND_COLORS[kind], label=KIND_LABELS[kind]))
    handles.append(Patch(facecolor=IDLE_COLOR, label="idle"))
    if "later-stage" in used:
        handles.append(Patch(facecolor=_lighten(KIND_COLORS["F"], 0.5),
                             label="lighter: device's later stage"))
    if "send-act" in used:
        handles.append(Patch(facecolor=SEND_COLORS["act"], label="send activation"))
    if "send-grad" in used:
        handles.append(Patch(facecolor=SEND_COLORS["grad"], label="send gradient"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4),
               fontsize=7, frameon=False)


def _result_line(result: Any, unit: str, scale: float) -> str:
    return (f"makespan {float(result.makespan) * scale:.4g} {unit}, "
            f"bubble {float(result.bubble_fraction):.1%}")


def _check_stage_names(result: Any, stage_names: Sequence[str] | None) -> list[str] | None:
    if stage_names is None:
        return None
    names = [str(s) for s in stage_names]
    for e in result.events:
        if not 0 <= int(e[2]) < len(names):
            raise ValueError(f"stage {e[2]} has no name: stage_names has {len(names)} entries")
    return names


def plot_timeline(result: Any, path: PathLike, title: str,
                  stage_names: Sequence[str] | None = None, *, show_transfers: bool = True,
                  xmax_s: float | None = None) -> None:
    """Draw a pipeline timeline (Gantt) of a simulated run to ``path`` (PNG/SVG/PDF).

    One row per device (device 0 on top), time on x in s, ms or µs chosen from
    the makespan; boxes coloured by kind (F, B, I, W) with the microbatch number
    inside when the box is wide enough; idle time light grey; on devices holding
    several stages the later stages are lighter; transfers (``result.transfers``)
    as a thin strip under the sending device when ``show_transfers``. The title
    gets a second line with the makespan and the bubble fraction. ``xmax_s``
    (seconds) fixes the x range so two timelines share a scale. Readable up to
    about 16 devices and 64 microbatches (labels are dropped where too narrow).
    """
    events, _, num_devices = _check_events(result)
    names = _check_stage_names(result, stage_names)
    xmax = float(result.makespan) if xmax_s is None else float(xmax_s)
    if not xmax > 0:
        xmax = 1.0
    unit, scale = time_unit(xmax)
    width_in = 10.0
    height_in = max(2.4, 0.42 * num_devices + 1.5)
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    used = _draw_timeline(ax, result, stage_names=names, unit=unit, scale=scale, xmax_s=xmax,
                          show_transfers=show_transfers, axes_width_in=width_in * 0.83,
                          axes_height_in=height_in - 1.4)
    ax.set_title(f"{title}\n{_result_line(result, unit, scale)}", fontsize=10)
    _timeline_legend(fig, used)
    _save(fig, path)


def plot_timelines(results: Sequence[Any], path: PathLike, *, titles: Sequence[str], title: str,
                   stage_names: Sequence[Sequence[str] | None] | None = None,
                   show_transfers: bool = True) -> None:
    """Several timelines stacked in one figure on a shared time axis (e.g. uniform vs best).

    ``titles[k]`` heads panel k (its makespan and bubble fraction are appended);
    ``stage_names[k]`` optionally names panel k's stages. Units and drawing as in
    :func:`plot_timeline`; the x range is the largest makespan.
    """
    results = list(results)
    if not results:
        raise ValueError("plot_timelines needs at least one result, got none")
    if len(titles) != len(results):
        raise ValueError(f"titles has {len(titles)} entries for {len(results)} results")
    if stage_names is not None and len(stage_names) != len(results):
        raise ValueError(f"stage_names has {len(stage_names)} entries for {len(results)} results")
    xmax = max(float(r.makespan) for r in results) or 1.0
    unit, scale = time_unit(xmax)
    rows = [_check_events(r)[2] for r in results]
    width_in = 10.0
    height_in = sum(max(1.6, 0.42 * n + 0.9) for n in rows) + 0.9
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(results), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [max(1.6, 0.42 * n + 0.9) for n in rows]})
    used: set[str] = set()
    for k, (ax, res) in enumerate(zip(axes[:, 0], results, strict=True)):
        names = _check_stage_names(res, None if stage_names is None else stage_names[k])
        used |= _draw_timeline(ax, res, stage_names=names, unit=unit, scale=scale, xmax_s=xmax,
                               show_transfers=show_transfers, axes_width_in=width_in * 0.83,
                               axes_height_in=max(1.6, 0.42 * rows[k] + 0.9) - 0.6)
        ax.set_title(f"{titles[k]}: {_result_line(res, unit, scale)}", fontsize=9, loc="left")
        if k < len(results) - 1:
            ax.set_xlabel("")
    fig.suptitle(title, fontsize=10)
    _timeline_legend(fig, used)
    _save(fig, path)


def _check_series(n: int, series: Mapping[str, Sequence[float]], what: str) -> None:
    if not series:
        raise ValueError(f"{what}: series is empty; give at least one named line")
    for name, ys in series.items():
        if len(ys) != n:
            raise ValueError(f"{what}: series {name!r} has {len(ys)} values but x has {n}")


def _legend_right(fig: Figure, ax: Axes) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
              borderaxespad=0.0)


def plot_lines(x: Sequence[float], series: Mapping[str, Sequence[float]], path: PathLike, *,
               xlabel: str, ylabel: str, title: str, logx: bool = False, logy: bool = False,
               markers: bool = True, reference_y: float | None = None,
               reference_label: str | None = None,
               xticklabels: Sequence[str] | None = None) -> None:
    """One line per named series against ``x`` (e.g. makespan vs microbatches per strategy).

    Each series has a distinct Okabe-Ito colour, marker and (after the 4th) line
    style; ``NaN`` values leave a gap. ``xlabel``/``ylabel`` should carry units.
    With ``logx`` the axis is log base 2 and, for up to 16 x values, ticks sit at
    the x values themselves. ``reference_y`` draws a dashed horizontal line (e.g.
    speedup 1.0) named ``reference_label`` in the legend, which sits right of the axes.
    ``xticklabels`` (one per x value) replaces the ``f"{x:g}"`` tick text, e.g. to
    show sweep values at evenly spaced positions.
    """
    x = [float(v) for v in x]
    _check_series(len(x), series, "plot_lines")
    if xticklabels is not None and len(xticklabels) != len(x):
        raise ValueError(f"plot_lines: xticklabels has {len(xticklabels)} entries but x has {len(x)}")
    fig = Figure(figsize=(6.4, 3.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    n = len(series)
    for k, (name, ys) in enumerate(series.items()):
        # earlier series drawn wider and with bigger markers, so a later series that
        # coincides with one (equal partitions) leaves it visible around the edges
        shrink = k / max(1, n - 1)
        ax.plot(x, [float(v) for v in ys], label=str(name), color=PALETTE[k % len(PALETTE)],
                marker=MARKERS[k % len(MARKERS)] if markers else None,
                markersize=8.0 - 3.5 * shrink, linewidth=2.4 - 1.2 * shrink,
                linestyle=LINESTYLES[(k // len(PALETTE)) % len(LINESTYLES)], zorder=3 + k)
    if reference_y is not None:
        ax.axhline(float(reference_y), color="#555555", linestyle="--", linewidth=1.0,
                   label=reference_label, zorder=2)
    if logx:
        if any(v <= 0 for v in x):
            raise ValueError(f"logx needs x > 0, got {x}")
        ax.set_xscale("log", base=2)
    if logy:
        ax.set_yscale("log")
    if len(x) <= 16 and len(set(x)) == len(x):
        ax.xaxis.set_major_locator(FixedLocator(x))
        ax.set_xticklabels([f"{v:g}" for v in x] if xticklabels is None else list(xticklabels))
        ax.xaxis.set_minor_locator(NullLocator())
    _finish(fig, ax, path, xlabel=xlabel, ylabel=ylabel, title=title)


def plot_stage_loads(forward_s: Sequence[float], backward_s: Sequence[float], path: PathLike, *,
                     title: str, ymax: float | None = None,
                     weight_s: Sequence[float] | None = None,
                     stage_labels: Sequence[str] | None = None) -> None:
    """Per-stage stacked bars of one microbatch's compute: F, then B (or I = B - W, then W).

    ``forward_s``, ``backward_s`` (full backward) and optional ``weight_s`` are
    seconds per stage; the unit (s/ms/µs) is chosen from the tallest bar or
    ``ymax``. A dashed line marks the bottleneck stage's total. ``ymax``
    (seconds) fixes the y range so two plots share a scale.
    """
    f = [float(v) for v in forward_s]
    b = [float(v) for v in backward_s]
    n = len(f)
    if n == 0:
        raise ValueError("plot_stage_loads needs at least one stage")
    if len(b) != n:
        raise ValueError(f"backward_s has {len(b)} stages but forward_s has {n}")
    w = None if weight_s is None else [float(v) for v in weight_s]
    if w is not None and len(w) != n:
        raise ValueError(f"weight_s has {len(w)} stages but forward_s has {n}")
    if any(v < 0 or not math.isfinite(v) for v in f + b + (w or [])):
        raise ValueError("stage times must be finite and >= 0 seconds")
    if w is not None and any(wi > bi * (1 + 1e-9) for wi, bi in zip(w, b, strict=True)):
        raise ValueError(f"weight_s must not exceed backward_s per stage, got W={w}, B={b}")
    totals = [fi + bi for fi, bi in zip(f, b, strict=True)]
    top = max(totals) if ymax is None else float(ymax)
    unit, scale = time_unit(top if top > 0 else 1.0)
    labels = list(stage_labels) if stage_labels is not None else [f"stage {s}" for s in range(n)]
    if len(labels) != n:
        raise ValueError(f"stage_labels has {len(labels)} entries for {n} stages")
    fig = Figure(figsize=(max(4.8, 0.55 * n + 2.8), 3.6), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    xs = list(range(n))
    ax.bar(xs, [v * scale for v in f], color=KIND_COLORS["F"], label=KIND_LABELS["F"], zorder=2)
    if w is None:
        ax.bar(xs, [v * scale for v in b], bottom=[v * scale for v in f], color=KIND_COLORS["B"],
               label=KIND_LABELS["B"], zorder=2)
    else:
        i = [bi - wi for bi, wi in zip(b, w, strict=True)]
        ax.bar(xs, [v * scale for v in i], bottom=[v * scale for v in f], color=KIND_COLORS["I"],
               label="input grad (I = B − W)", zorder=2)
        ax.bar(xs, [v * scale for v in w], bottom=[(fi + ii) * scale for fi, ii in zip(f, i, strict=True)],
               color=KIND_COLORS["W"], label=KIND_LABELS["W"], zorder=2)
    ax.axhline(max(totals) * scale, color="#333333", linestyle="--", linewidth=1.0,
               label=f"bottleneck {max(totals) * scale:.3g} {unit}", zorder=3)
    handles, legend_labels = ax.get_legend_handles_labels()
    # legend top-down like the stack: the bars in reverse, then the bottleneck line
    order = list(range(len(handles) - 1, 0, -1)) + [0]
    if not legend_labels[0].startswith("bottleneck"):
        order = list(range(len(handles)))
    if ymax is not None:
        ax.set_ylim(0, float(ymax) * scale * 1.02)
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, fontsize=8, rotation=30 if n > 8 or max(map(len, labels)) > 10 else 0,
                       ha="right" if n > 8 or max(map(len, labels)) > 10 else "center")
    ax.set_ylabel(f"time per microbatch ({unit})")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", color="#CCCCCC", linewidth=0.5, alpha=0.7, zorder=0)
    ax.legend([handles[k] for k in order], [legend_labels[k] for k in order], loc="upper left",
              bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, borderaxespad=0.0)
    _save(fig, path)


def plot_timeseries(steps: Sequence[float], series: Mapping[str, Sequence[float]], path: PathLike,
                    *, ylabel: str, title: str,
                    markers: Mapping[str, Sequence[float]] | None = None,
                    xlabel: str = "step") -> None:
    """Lines against training step (online experiment), with optional event markers.

    ``series`` maps a name to one value per step; ``markers`` maps an event name
    (e.g. "repartition") to the steps where it happened, drawn as vertical lines
    of one colour and style per event with one legend entry each. Legend right
    of the axes; ``ylabel`` should carry units.
    """
    x = [float(v) for v in steps]
    _check_series(len(x), series, "plot_timeseries")
    fig = Figure(figsize=(7.2, 3.6), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for k, (name, ys) in enumerate(series.items()):
        ax.plot(x, [float(v) for v in ys], label=str(name), color=PALETTE[k % len(PALETTE)],
                linestyle=LINESTYLES[(k // len(PALETTE)) % len(LINESTYLES)], linewidth=1.4,
                zorder=3)
    marker_colors = ("#555555", "#D55E00", "#009E73", "#CC79A7")
    marker_styles = (":", "--", "-.", (0, (1, 3)))
    for k, (event, where) in enumerate((markers or {}).items()):
        color = marker_colors[k % len(marker_colors)]
        style = marker_styles[k % len(marker_styles)]
        for s in where:
            ax.axvline(float(s), color=color, linestyle=style, linewidth=1.0, zorder=2)
        ax.add_line(Line2D([], [], color=color, linestyle=style, linewidth=1.0,
                           label=f"{event} ({len(where)})"))
    _finish(fig, ax, path, xlabel=xlabel, ylabel=ylabel, title=title)


def plot_stage_memory(reports: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: PathLike, *,
                      title: str, capacity_bytes: float | None = None) -> None:
    """Per-stage memory of several partitions side by side (issue 9, ``bubblereduce.memory``).

    ``reports`` maps a strategy name to ``(persistent_bytes, activation_bytes)`` per
    stage (same stage count for all): one group of bars per stage, one bar per
    strategy, the persistent part (weights, gradients, optimizer state) solid and
    the in-flight activations hatched on top. ``capacity_bytes`` draws the device
    capacity as a dashed line. The unit (B, kB, MB, GB; 1e3 steps) follows the tallest bar.
    """
    if not reports:
        raise ValueError("plot_stage_memory needs at least one strategy")
    sizes = {len(p) for p, _ in reports.values()} | {len(a) for _, a in reports.values()}
    if len(sizes) != 1:
        raise ValueError(f"every strategy needs the same number of stages, got {sorted(sizes)}")
    n = sizes.pop()
    top = max(float(p) + float(a) for ps, acts in reports.values() for p, a in zip(ps, acts, strict=True))
    top = max(top, float(capacity_bytes or 0.0), 1.0)
    unit, scale = next((u, 1 / d) for u, d in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3), ("B", 1.0))
                       if top >= d)
    k = len(reports)
    width = 0.8 / k
    fig = Figure(figsize=(min(12.0, max(5.6, 0.35 * n * k + 3.0)), 3.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for j, (name, (pers, act)) in enumerate(reports.items()):
        xs = [s - 0.4 + width * (j + 0.5) for s in range(n)]
        color = PALETTE[j % len(PALETTE)]
        pv = [float(v) * scale for v in pers]
        ax.bar(xs, pv, width=width, color=color, label=f"{name}: weights + grads + optimizer", zorder=2)
        ax.bar(xs, [float(v) * scale for v in act], width=width, bottom=pv,
               color=_lighten(color, 0.55), hatch="///", edgecolor=color, linewidth=0.0,
               label=f"{name}: in-flight activations", zorder=2)
    if capacity_bytes is not None:
        ax.axhline(float(capacity_bytes) * scale, color="#333333", linestyle="--", linewidth=1.0,
                   label=f"capacity {float(capacity_bytes) * scale:.3g} {unit}", zorder=3)
    ax.set_xticks(range(n))
    ax.set_xticklabels([str(s) for s in range(n)], fontsize=8)
    ax.set_xlabel("pipeline stage (device)")
    ax.set_ylabel(f"memory per device ({unit})")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", color="#CCCCCC", linewidth=0.5, alpha=0.7, zorder=0)
    _legend_right(fig, ax)
    _save(fig, path)
