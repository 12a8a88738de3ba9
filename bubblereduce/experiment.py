"""Reusable experiment grid: plan partitions and simulate them over schedules, m and links.

The main demo (``pipeline_partition_demo.py``) and ``balance.py`` both answer the
same question -- "how fast does partition X run under schedule Y?" -- over a grid of
schedules x link bandwidths x microbatch counts x strategies. This module holds that
grid once:

- :class:`BlockCosts`: per-block forward / backward / weight-grad seconds and boundary
  activation bytes at ONE microbatch size (semantics.md §1), built from a profile.
- a *planner* is any callable ``planner(ctx: PlanContext) -> list[(start, end)]``;
  :func:`standard_planners` gives uniform, greedy, dp_min_max, dp_slack and
  schedule_aware.
- :func:`simulate_grid` plans and simulates every cell and returns :class:`GridRow`
  records; :func:`grid_csv` turns them into a CSV table; :func:`write_grid_plots` and
  :func:`write_timelines` draw them (matplotlib only through ``bubblereduce.plotting``).

Conventions (documented once, used everywhere):

- Partitions are planned *for the configuration they run in*: block costs ``f + b``
  measured at that row's microbatch size, ``comm`` = seconds to move each block's
  output at that row's bandwidth and latency, and ``num_devices x v`` model stages for
  schedules that hold ``v`` stages per device (interleaved-1f1b: ``v = stages_per_device``;
  zbv, dualpipev: ``v = 2``).
- Costs and comm are in seconds, so the greedy penalty ``alpha`` is unit-free. For the
  DP strategies seconds and bytes give the same partition: every plan has exactly
  ``stages - 1`` cuts, so the latency term is a constant.
- ``w`` (weight-gradient share of the backward) is the measured ``W / (I + W)`` ratio
  applied to the measured full backward ``b`` of each block, so ``0 <= w <= b`` holds
  whatever the timing noise, and ``I = b - w``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from bubblereduce import partition as part_mod
from bubblereduce import schedules as sched_mod
from bubblereduce import simulate as sim_mod

__all__ = [
    "STRATEGIES",
    "MULTI_STAGE_SCHEDULES",
    "BlockCosts",
    "PlanContext",
    "Planner",
    "GridRow",
    "GRID_COLUMNS",
    "block_costs",
    "model_stages_per_device",
    "standard_planners",
    "partition_text",
    "parse_partition_text",
    "stage_arrays",
    "simulate_partition",
    "supported_microbatches",
    "runnable_microbatches",
    "block_cost_lookup",
    "simulate_grid",
    "grid_csv",
    "bandwidth_token",
    "cell_rows",
    "best_row",
    "tied_strategies",
    "write_grid_plots",
    "write_timelines",
]

STRATEGIES: tuple[str, ...] = ("uniform", "greedy", "dp_min_max", "dp_slack", "schedule_aware")

# schedules that place more than one model stage on a device
MULTI_STAGE_SCHEDULES: frozenset[str] = frozenset({"interleaved-1f1b", "zbv", "dualpipev"})
_VSHAPE = frozenset({"zbv", "dualpipev"})


@dataclass(frozen=True, eq=False)
class BlockCosts:
    """Per-block costs of one model at one microbatch size (all arrays of length n).

    ``forward_s``, ``backward_s`` (full backward) and ``weight_s`` (its weight-gradient
    part, ``0 <= weight_s <= backward_s``; ``None`` when the profile has no I/W split)
    are seconds per microbatch; ``act_bytes[i]`` is the output of block ``i``, the bytes
    that cross a cut after it. ``microbatch_size`` is in samples.
    """

    names: tuple[str, ...]
    forward_s: np.ndarray
    backward_s: np.ndarray
    weight_s: np.ndarray | None
    act_bytes: np.ndarray
    microbatch_size: int
    block_n: int

    @property
    def num_blocks(self) -> int:
        """Number of blocks ``n``."""
        return len(self.names)

    @property
    def cost_s(self) -> np.ndarray:
        """Per-block ``f + b`` seconds: the cost the partitioners balance."""
        return self.forward_s + self.backward_s

    def comm_s(self, bandwidth_GBps: float, latency_s: float) -> np.ndarray:
        """Seconds to move each block's output over a link (``latency_s + bytes / (GB/s * 1e9)``)."""
        return np.asarray(sim_mod.comm_seconds(self.act_bytes, bandwidth_GBps, latency_s), dtype=float)


def block_costs(profile: object, block_n: int) -> BlockCosts:
    """Group a ``ModelProfile`` into blocks of ``block_n`` layers and return their costs.

    Seconds are per microbatch of ``profile.meta.microbatch_size`` samples. The last
    block may hold fewer layers (``group_blocks``' rule). ``weight_s`` scales each
    block's measured full backward by its measured ``W / (I + W)`` share (0 when
    ``I + W == 0``); it is ``None`` when the profile lacks the I/W split.
    """
    from bubblereduce.profile import group_blocks

    if isinstance(block_n, bool) or not isinstance(block_n, int) or block_n < 1:
        raise ValueError(f"block_n must be an integer >= 1, got {block_n!r}")
    blocks = group_blocks(profile, block_n=block_n)
    f = np.asarray(blocks.forward_s, dtype=float)
    b = np.asarray(blocks.backward_s, dtype=float)
    w: np.ndarray | None = None
    i_s, w_s = blocks.input_grad_s, blocks.weight_grad_s
    if i_s is not None and w_s is not None:
        i_arr = np.asarray(i_s, dtype=float)
        w_arr = np.asarray(w_s, dtype=float)
        if not (np.any(np.isnan(i_arr)) or np.any(np.isnan(w_arr))):
            total = i_arr + w_arr
            share = np.divide(w_arr, total, out=np.zeros_like(total), where=total > 0)
            w = b * np.clip(share, 0.0, 1.0)
    return BlockCosts(
        names=tuple(blocks.names),
        forward_s=f,
        backward_s=b,
        weight_s=w,
        act_bytes=np.asarray(blocks.act_bytes, dtype=np.int64),
        microbatch_size=int(profile.meta.microbatch_size),
        block_n=block_n,
    )


def model_stages_per_device(schedule: str, stages_per_device: int) -> int:
    """Model stages per device ``v`` for ``schedule``.

    ``zbv`` and ``dualpipev`` always hold 2; ``interleaved-1f1b`` holds
    ``stages_per_device``; every other schedule holds 1.
    """
    if schedule in _VSHAPE:
        return 2
    if schedule == "interleaved-1f1b":
        return stages_per_device
    return 1


@dataclass(frozen=True, eq=False)
class PlanContext:
    """Everything a planner may look at for one grid cell.

    ``num_stages`` counts model stages (devices x v); ``comm_s`` is per block (length n,
    seconds to move block i's output at ``bandwidth_GBps`` GB/s with ``latency_s``).
    """

    costs: BlockCosts
    num_stages: int
    schedule: str
    microbatches: int
    bandwidth_GBps: float
    latency_s: float
    comm_mode: str
    stages_per_device: int
    comm_s: np.ndarray = field(repr=False)


Planner = Callable[[PlanContext], list[tuple[int, int]]]


def _schedule_aware_planner(ctx: PlanContext) -> list[tuple[int, int]]:
    fn = part_mod.schedule_aware
    kwargs: dict[str, object] = {
        "schedule": ctx.schedule,
        "microbatches": ctx.microbatches,
        "comm_mode": ctx.comm_mode,
        "w": ctx.costs.weight_s if ctx.schedule in sched_mod.NEEDS_W else None,
    }
    if ctx.schedule == "interleaved-1f1b":
        params = inspect.signature(fn).parameters
        if "stages_per_device" in params:
            kwargs["stages_per_device"] = ctx.stages_per_device
        elif ctx.stages_per_device != 2:
            raise ValueError(
                "partition.schedule_aware takes no stages_per_device argument, so it only "
                f"plans interleaved-1f1b with 2 stages per device, got {ctx.stages_per_device}"
            )
    return [tuple(p) for p in fn(ctx.costs.forward_s, ctx.costs.backward_s, ctx.comm_s, ctx.num_stages, **kwargs)]


def standard_planners(
    alpha: float = 1.0, slack: float = 0.1, strategies: Iterable[str] = STRATEGIES
) -> dict[str, Planner]:
    """The demo's planners by name, in ``strategies`` order.

    uniform / greedy (penalty ``alpha`` x comm seconds) / dp_min_max / dp_slack
    (bottleneck within ``1 + slack`` of the optimum) balance ``f + b`` seconds with
    ``comm`` in seconds; schedule_aware minimises the simulated makespan of the row's
    schedule and microbatch count. A name outside :data:`STRATEGIES` raises ValueError.
    """

    def cost(ctx: PlanContext) -> np.ndarray:
        return ctx.costs.cost_s

    table: dict[str, Planner] = {
        "uniform": lambda ctx: part_mod.uniform(cost(ctx), ctx.comm_s, ctx.num_stages),
        "greedy": lambda ctx: part_mod.greedy(cost(ctx), ctx.comm_s, ctx.num_stages, alpha=alpha),
        "dp_min_max": lambda ctx: part_mod.dp_min_max(cost(ctx), ctx.comm_s, ctx.num_stages),
        "dp_slack": lambda ctx: part_mod.dp_slack(cost(ctx), ctx.comm_s, ctx.num_stages, slack=slack),
        "schedule_aware": _schedule_aware_planner,
    }
    out: dict[str, Planner] = {}
    for name in strategies:
        if name not in table:
            raise ValueError(f"unknown strategy {name!r}; known strategies: {', '.join(STRATEGIES)}")
        out[name] = table[name]
    return out


def partition_text(parts: Sequence[tuple[int, int]]) -> str:
    """A partition as compact text: ``"0:2 2:5 5:8"`` (half-open block ranges)."""
    return " ".join(f"{a}:{b}" for a, b in parts)


def parse_partition_text(text: str) -> list[tuple[int, int]]:
    """Inverse of :func:`partition_text`; ValueError on malformed text."""
    try:
        return [(int(a), int(b)) for a, b in (tok.split(":") for tok in text.split())]
    except ValueError as exc:
        raise ValueError(f"malformed partition text {text!r}; expected e.g. '0:2 2:5 5:8'") from exc


def stage_arrays(
    costs: BlockCosts, parts: Sequence[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-stage ``(f, b, w)`` seconds: sums of the blocks in each stage (``w`` None without a split)."""
    f = np.array([costs.forward_s[a:b].sum() for a, b in parts], dtype=float)
    b_ = np.array([costs.backward_s[a:b].sum() for a, b in parts], dtype=float)
    w = None
    if costs.weight_s is not None:
        w = np.array([costs.weight_s[a:b].sum() for a, b in parts], dtype=float)
        w = np.minimum(w, b_)  # float sums can exceed b by an ulp
    return f, b_, w


def simulate_partition(
    schedule: str,
    costs: BlockCosts,
    parts: Sequence[tuple[int, int]],
    microbatches: int,
    *,
    bandwidth_GBps: float | None,
    latency_s: float = 0.0,
    comm_mode: str = "overlap",
    stages_per_device: int = 1,
) -> object:
    """Simulate ``parts`` under ``schedule`` and return the simulator's ``SimResult``.

    Stage costs are block sums (seconds per microbatch); boundary comm is the last block's
    output of each stage moved at ``bandwidth_GBps`` GB/s plus ``latency_s`` seconds
    (``bandwidth_GBps=None``: no communication). ``stages_per_device`` is the model
    stages per device ``v`` (see :func:`model_stages_per_device`).
    """
    f, b, w = stage_arrays(costs, parts)
    if schedule not in sched_mod.NEEDS_W:
        w = None
    elif w is None:
        raise ValueError(f"schedule {schedule!r} needs the I/W split of the backward; the profile has none")
    comm = None
    if bandwidth_GBps is not None and len(parts) > 1:
        comm = np.asarray(
            sim_mod.stage_comm_seconds(costs.act_bytes, list(parts), bandwidth_GBps, latency_s), dtype=float
        )
    return sim_mod.simulate(
        schedule, f, b, microbatches, comm=comm, comm_mode=comm_mode, w=w, stages_per_device=stages_per_device
    )


@dataclass(frozen=True)
class GridRow:
    """One simulated cell: (schedule, bandwidth, microbatches, strategy).

    Seconds are per training step (one global batch = ``microbatches`` microbatches of
    ``microbatch_size`` samples). ``makespan_no_comm_s`` is the same partition and
    schedule with free links; ``comm_share = 1 - makespan_no_comm_s / makespan_s`` is the
    share of the step time that communication adds. ``bottleneck_s`` is the largest
    per-microbatch stage ``f + b``. Boundary bytes are per microbatch, one direction.
    ``peak_inflight`` is the max over devices. ``speedup_vs_uniform`` = uniform's
    makespan / this makespan in the same cell (NaN when uniform is not in the grid).
    """

    schedule: str
    bandwidth_GBps: float
    microbatches: int
    strategy: str
    num_devices: int
    stages_per_device: int
    num_stages: int
    num_blocks: int
    block_n: int
    microbatch_size: int
    partition: tuple[tuple[int, int], ...]
    makespan_s: float
    makespan_no_comm_s: float
    comm_share: float
    bubble_fraction: float
    bottleneck_s: float
    boundary_bytes_total: int
    boundary_bytes_max: int
    peak_inflight: float
    speedup_vs_uniform: float


GRID_COLUMNS: tuple[str, ...] = (
    "schedule",
    "bandwidth_GBps",
    "microbatches",
    "strategy",
    "makespan_s",
    "speedup_vs_uniform",
    "bubble_fraction",
    "comm_share",
    "makespan_no_comm_s",
    "bottleneck_s",
    "boundary_bytes_total",
    "boundary_bytes_max",
    "peak_inflight",
    "num_devices",
    "stages_per_device",
    "num_stages",
    "num_blocks",
    "block_n",
    "microbatch_size",
    "partition",
)


def _boundary_bytes(costs: BlockCosts, parts: Sequence[tuple[int, int]]) -> list[int]:
    return [int(costs.act_bytes[end - 1]) for _, end in parts[:-1]]


def supported_microbatches(
    schedule: str, num_devices: int, microbatches: Sequence[int], stages_per_device: int = 2
) -> tuple[list[int], dict[int, str]]:
    """Split ``microbatches`` into the counts ``schedule`` can run on ``num_devices`` devices and the rest.

    Builds each order once (``schedules.build_order``); returns ``(supported, reasons)``
    where ``reasons[m]`` is the generator's error message for an unsupported ``m``
    (e.g. dualpipev needs ``m >= 2 x devices``). ``stages_per_device`` is the
    interleaved ``v`` (see :func:`model_stages_per_device`).
    """
    v = model_stages_per_device(schedule, stages_per_device)
    ok: list[int] = []
    reasons: dict[int, str] = {}
    for m in microbatches:
        try:
            sched_mod.build_order(schedule, num_devices * v, m, stages_per_device=v)
        except ValueError as exc:
            reasons[m] = " ".join(str(exc).split())
        else:
            ok.append(m)
    return ok, reasons


def runnable_microbatches(
    schedules: Iterable[str], num_devices: int, microbatches: Sequence[int], stages_per_device: int,
    printer: Callable[[str], None],
) -> dict[str, list[int]]:
    """Schedule -> the microbatch counts of ``microbatches`` it can run; prints one note per
    skipped (schedule, m) saying why (e.g. dualpipev needs m >= 2 x devices)."""
    out: dict[str, list[int]] = {}
    for s in schedules:
        ok, reasons = supported_microbatches(s, num_devices, microbatches, stages_per_device)
        for m, why in reasons.items():
            printer(f"note: {s} skipped at m={m}: {why}")
        out[s] = ok
    return out


def block_cost_lookup(
    profiles_by_m: Mapping[int, object], block_n: int, multi_stage_block_n: int
) -> Callable[[int, int], BlockCosts]:
    """``costs_for(m, v)``: block costs of the profile measured for m microbatches, grouped in
    blocks of ``block_n`` layers for one stage per device (v = 1) or ``multi_stage_block_n``
    layers for multi-stage schedules; each grouping is computed once."""
    cache: dict[tuple[int, int], BlockCosts] = {}

    def costs_for(m: int, v: int) -> BlockCosts:
        bn = int(block_n if v == 1 else multi_stage_block_n)
        if (m, bn) not in cache:
            cache[(m, bn)] = block_costs(profiles_by_m[m], bn)
        return cache[(m, bn)]

    return costs_for


def simulate_grid(
    costs_for: Callable[[int, int], BlockCosts],
    planners: Mapping[str, Planner],
    *,
    schedules: Sequence[str],
    microbatches: Sequence[int] | Mapping[str, Sequence[int]],
    bandwidths_GBps: Sequence[float],
    num_devices: int,
    latency_s: float = 0.0,
    comm_mode: str = "overlap",
    stages_per_device: int = 2,
    baseline: str = "uniform",
    progress: Callable[[str], None] | None = None,
) -> list[GridRow]:
    """Plan and simulate every schedule x bandwidth x microbatch count x planner.

    ``costs_for(microbatches, v)`` returns the :class:`BlockCosts` measured at the
    microbatch size used with ``microbatches`` microbatches, grouped for schedules with
    ``v`` model stages per device. Each planner gets a :class:`PlanContext` with
    ``num_devices * v`` stages. Rows come in input order (schedule, bandwidth,
    microbatches, planner); ``speedup_vs_uniform`` divides the ``baseline`` planner's
    makespan in the same cell by the row's. ``microbatches`` may map each schedule to its
    own counts (e.g. from :func:`supported_microbatches`). Times in seconds, bandwidth in GB/s.
    """
    rows: list[GridRow] = []
    for schedule in schedules:
        v = model_stages_per_device(schedule, stages_per_device)
        stages = num_devices * v
        counts = list(microbatches[schedule] if isinstance(microbatches, Mapping) else microbatches)
        for bw in bandwidths_GBps:
            for m in counts:
                costs = costs_for(m, v)
                comm_s = costs.comm_s(bw, latency_s)
                ctx = PlanContext(costs, stages, schedule, m, float(bw), latency_s, comm_mode, v, comm_s)
                cell: list[GridRow] = []
                for name, planner in planners.items():
                    parts = [tuple(p) for p in planner(ctx)]
                    res = simulate_partition(
                        schedule, costs, parts, m, bandwidth_GBps=bw, latency_s=latency_s,
                        comm_mode=comm_mode, stages_per_device=v,
                    )
                    free = simulate_partition(
                        schedule, costs, parts, m, bandwidth_GBps=None, comm_mode=comm_mode, stages_per_device=v
                    )
                    bbytes = _boundary_bytes(costs, parts)
                    f_s, b_s, _ = stage_arrays(costs, parts)
                    span = float(res.makespan)
                    cell.append(
                        GridRow(
                            schedule=schedule,
                            bandwidth_GBps=float(bw),
                            microbatches=m,
                            strategy=name,
                            num_devices=num_devices,
                            stages_per_device=v,
                            num_stages=stages,
                            num_blocks=costs.num_blocks,
                            block_n=costs.block_n,
                            microbatch_size=costs.microbatch_size,
                            partition=tuple(parts),
                            makespan_s=span,
                            makespan_no_comm_s=float(free.makespan),
                            comm_share=max(0.0, 1.0 - float(free.makespan) / span) if span > 0 else 0.0,
                            bubble_fraction=float(res.bubble_fraction),
                            bottleneck_s=float(np.max(f_s + b_s)),
                            boundary_bytes_total=int(sum(bbytes)),
                            boundary_bytes_max=int(max(bbytes, default=0)),
                            peak_inflight=float(max(res.peak_inflight)),
                            speedup_vs_uniform=math.nan,
                        )
                    )
                base = next((r.makespan_s for r in cell if r.strategy == baseline), None)
                for r in cell:
                    speed = base / r.makespan_s if base is not None and r.makespan_s > 0 else math.nan
                    rows.append(replace(r, speedup_vs_uniform=speed))
            if progress is not None:
                progress(f"simulated {schedule} at {bw:g} GB/s ({len(counts)} microbatch counts x {len(planners)} strategies)")
    return rows


def grid_csv(rows: Sequence[GridRow], extra: Mapping[str, object] | None = None) -> tuple[list[str], list[list[object]]]:
    """CSV header and rows for ``rows`` (:data:`GRID_COLUMNS`, then ``extra`` constant columns).

    The partition is written with :func:`partition_text`; floats are left as floats so
    the CSV writer can print them at round-trip precision.
    """
    extra = dict(extra or {})
    header = list(GRID_COLUMNS) + list(extra)
    out: list[list[object]] = []
    for r in rows:
        vals: list[object] = []
        for col in GRID_COLUMNS:
            v = getattr(r, col)
            vals.append(partition_text(v) if col == "partition" else v)
        vals.extend(extra.values())
        out.append(vals)
    return header, out


def bandwidth_token(bandwidth_GBps: float) -> str:
    """Filename-safe token for a bandwidth: 1 -> ``"1GBps"``, 0.5 -> ``"0.5GBps"``."""
    return f"{float(bandwidth_GBps):g}GBps".replace("+", "")


def cell_rows(rows: Sequence[GridRow], schedule: str, bandwidth_GBps: float, microbatches: int) -> list[GridRow]:
    """The rows of one grid cell (every strategy), in grid order."""
    return [
        r for r in rows
        if r.schedule == schedule and r.bandwidth_GBps == bandwidth_GBps and r.microbatches == microbatches
    ]


def best_row(cell: Sequence[GridRow], exclude: Sequence[str] = ("uniform",)) -> GridRow | None:
    """The fastest row of a cell outside ``exclude``; the earliest strategy wins exact ties (None if empty)."""
    cands = [r for r in cell if r.strategy not in exclude]
    return min(cands, key=lambda r: r.makespan_s) if cands else None


def tied_strategies(cell: Sequence[GridRow], best: GridRow, exclude: Sequence[str] = ("uniform",)) -> list[str]:
    """Strategies outside ``exclude`` whose makespan equals ``best``'s up to relative 1e-9, in grid order."""
    return [r.strategy for r in cell if r.strategy not in exclude and r.makespan_s <= best.makespan_s * (1 + 1e-9)]


def write_grid_plots(
    rows: Sequence[GridRow], out_dir: Path, *, num_devices: int, global_batch: int
) -> list[str]:
    """Write ``makespan_/bubble_/speedup_<schedule>_<bw>.png`` (x = microbatches, one line per strategy).

    Step time is plotted in ms, the bubble as the idle fraction of device time and the
    speedup over uniform as a ratio (1.0 = uniform). Returns the file names written into
    ``out_dir``, in schedule, bandwidth, metric order.
    """
    from bubblereduce import plotting

    metrics = [
        ("makespan", "step time (ms)", lambda r: r.makespan_s * 1e3),
        ("bubble", "bubble fraction (idle share of device time)", lambda r: r.bubble_fraction),
        ("speedup", "speedup vs uniform (x)", lambda r: r.speedup_vs_uniform),
    ]
    strategies = list(dict.fromkeys(r.strategy for r in rows))
    names = []
    for s in dict.fromkeys(r.schedule for r in rows):
        mbs = sorted({r.microbatches for r in rows if r.schedule == s})
        for bw in dict.fromkeys(r.bandwidth_GBps for r in rows):
            cells = {m: {r.strategy: r for r in cell_rows(rows, s, bw, m)} for m in mbs}
            for prefix, ylabel, get in metrics:
                series = {k: [get(cells[m][k]) if k in cells[m] else math.nan for m in mbs] for k in strategies}
                fname = f"{prefix}_{s}_{bandwidth_token(bw)}.png"
                plotting.plot_lines(
                    mbs,
                    series,
                    Path(out_dir) / fname,
                    xlabel=f"microbatches m (global batch {global_batch})",
                    ylabel=ylabel,
                    title=f"{s}, {num_devices} devices, {bw:g} GB/s link: {prefix} vs microbatches",
                    logx=True,
                )
                names.append(fname)
    return names


def write_timelines(
    rows: Sequence[GridRow],
    costs_for: Callable[[int, int], BlockCosts],
    out_dir: Path,
    *,
    microbatches: int,
    bandwidth_GBps: float,
    latency_s: float = 0.0,
    comm_mode: str = "overlap",
    baseline: str = "uniform",
) -> list[str]:
    """Per schedule at one configuration: timelines and Chrome traces of ``baseline`` and the best strategy.

    Writes ``timeline_<schedule>_<strategy>.png`` and ``trace_<schedule>_<strategy>.json``
    (microsecond Chrome-trace events, opens in Perfetto) for both, and
    ``timeline_<schedule>_uniform_vs_best.png`` with the two on one time axis. The best
    strategy is the fastest non-baseline row (earliest strategy on exact ties). Returns
    the file names written into ``out_dir``.
    """
    from bubblereduce import io as io_mod
    from bubblereduce import plotting

    names: list[str] = []
    for s in dict.fromkeys(r.schedule for r in rows):
        cell = cell_rows(rows, s, bandwidth_GBps, microbatches)
        chosen = [r for r in cell if r.strategy == baseline]
        best = best_row(cell, exclude=(baseline,))
        if best is not None:
            chosen.append(best)
        results = []
        for r in chosen:
            res = simulate_partition(
                s, costs_for(microbatches, r.stages_per_device), r.partition, microbatches,
                bandwidth_GBps=bandwidth_GBps, latency_s=latency_s, comm_mode=comm_mode,
                stages_per_device=r.stages_per_device,
            )
            results.append(res)
            title = f"{s}, {r.strategy} [{partition_text(r.partition)}], m={microbatches}, {bandwidth_GBps:g} GB/s"
            png, trace = f"timeline_{s}_{r.strategy}.png", f"trace_{s}_{r.strategy}.json"
            plotting.plot_timeline(res, Path(out_dir) / png, title)
            io_mod.write_json(Path(out_dir) / trace, io_mod.chrome_trace(res), indent=None)
            names += [png, trace]
        if len(chosen) == 2:
            png = f"timeline_{s}_{baseline}_vs_best.png"
            plotting.plot_timelines(
                results,
                Path(out_dir) / png,
                titles=[f"{r.strategy} [{partition_text(r.partition)}]" for r in chosen],
                title=(
                    f"{s}, {chosen[0].num_devices} devices, m={microbatches}, {bandwidth_GBps:g} GB/s link:"
                    f" {baseline} vs best partition"
                ),
            )
            names.append(png)
    return names
