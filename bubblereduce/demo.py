"""The main demo's orchestration: validate, profile, plan, simulate, write ``figs/``.

``pipeline_partition_demo.py`` holds the knobs and calls :func:`cli_main`; everything
else happens here, in this order:

1. :func:`validate_config` checks every knob (before any profiling) and
   :func:`load_or_check_profile` reads a saved profile if ``profile_path`` is set.
2. :func:`profile_model` measures the model once per microbatch size
   ``global_batch / m`` (semantics.md §1: more microbatches split the same batch,
   they do not add work).
3. :func:`bubblereduce.experiment.simulate_grid` plans every strategy for every
   schedule x bandwidth x microbatch count and simulates it.
4. :func:`write_outputs` writes results.csv, plots, timelines, traces, JSON files
   and :func:`summary_lines` into a staging folder that replaces ``out_dir``'s
   files only when everything succeeded.

Multi-stage schedules (interleaved-1f1b with ``stages_per_device`` stages per device,
zbv and dualpipev with 2) are planned with ``num_stages x v`` model stages, over blocks
of ``multi_stage_block_n`` layers (finer than ``block_n`` by default, so that 8 model
stages still have a choice of partition).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bubblereduce import experiment as ex
from bubblereduce import io as io_mod
from bubblereduce import schedules as sched_mod

__all__ = [
    "COMM_MODES",
    "validate_config",
    "model_layer_count",
    "load_or_check_profile",
    "profile_model",
    "summary_lines",
    "layer_table",
    "block_table",
    "partition_table",
    "write_outputs",
    "run_demo",
    "cli_main",
]

COMM_MODES: tuple[str, ...] = ("overlap", "blocking")
_MODELS: tuple[str, ...] = ("mlp",)

Printer = Callable[[str], None]


# --------------------------------------------------------------------------- validation


def _is_int(x: object) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _is_num(x: object) -> bool:
    return (_is_int(x) or isinstance(x, float)) and math.isfinite(float(x))


def _need_int(cfg: Mapping[str, Any], key: str, minimum: int) -> int:
    v = cfg[key]
    if not _is_int(v) or v < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _need_num(cfg: Mapping[str, Any], key: str, *, positive: bool) -> float:
    v = cfg[key]
    if not _is_num(v) or (v <= 0 if positive else v < 0):
        allowed = "a finite number > 0" if positive else "a finite number >= 0"
        raise ValueError(f"{key} must be {allowed}, got {v!r}")
    return float(v)


def _need_list(cfg: Mapping[str, Any], key: str) -> list[Any]:
    v = cfg[key]
    if isinstance(v, str) or not isinstance(v, list | tuple) or len(v) == 0:
        raise ValueError(f"{key} must be a non-empty list, got {v!r}")
    if len(set(v)) != len(v):
        raise ValueError(f"{key} must not repeat values, got {list(v)!r}")
    return list(v)


def model_layer_count(cfg: Mapping[str, Any]) -> int:
    """Number of profiled layers of the configured model (``len(mlp_widths) - 1`` for the MLP)."""
    widths = cfg["mlp_widths"]
    if isinstance(widths, str) or not isinstance(widths, list | tuple) or len(widths) < 2:
        raise ValueError(f"mlp_widths must be a list of at least 2 positive integers, got {widths!r}")
    if not all(_is_int(w) and w >= 1 for w in widths):
        raise ValueError(f"mlp_widths must hold positive integers, got {list(widths)!r}")
    return len(widths) - 1


def validate_config(cfg: Mapping[str, Any], num_layers: int | None = None) -> None:
    """Check every knob of the demo; raise ``ValueError`` naming the bad value and what is allowed.

    ``num_layers`` is the model's layer count (from a loaded profile); ``None`` derives it
    from ``mlp_widths``. Checks: positive stage/block/batch counts, microbatch counts that
    divide ``global_batch``, known schedules that can run with these counts (each order is
    built once), enough blocks for ``num_stages`` (and ``num_stages x v`` for multi-stage
    schedules), positive bandwidths, non-negative latency/alpha/slack, representative
    values that are in the lists, and a writable ``out_dir``. Creates nothing.
    """
    if cfg["model"] not in _MODELS:
        raise ValueError(f"model must be one of {', '.join(_MODELS)}, got {cfg['model']!r}")
    num_stages = _need_int(cfg, "num_stages", 1)
    block_n = _need_int(cfg, "block_n", 1)
    multi_block_n = _need_int(cfg, "multi_stage_block_n", 1)
    global_batch = _need_int(cfg, "global_batch", 1)
    v_cfg = _need_int(cfg, "stages_per_device", 1)
    _need_int(cfg, "seed", 0)
    _need_int(cfg, "warmup", 0)
    _need_int(cfg, "repeats", 1)
    if cfg["threads"] is not None:
        _need_int(cfg, "threads", 1)
    _need_num(cfg, "latency_s", positive=False)
    _need_num(cfg, "alpha", positive=False)
    _need_num(cfg, "slack", positive=False)
    if cfg["comm_mode"] not in COMM_MODES:
        raise ValueError(f"comm_mode must be one of {', '.join(COMM_MODES)}, got {cfg['comm_mode']!r}")
    if not isinstance(cfg["engine_check"], bool):
        raise ValueError(f"engine_check must be True or False, got {cfg['engine_check']!r}")
    if not isinstance(cfg["out_dir"], str) or not cfg["out_dir"]:
        raise ValueError(f"out_dir must be a non-empty path, got {cfg['out_dir']!r}")
    if cfg["profile_path"] is not None and not isinstance(cfg["profile_path"], str):
        raise ValueError(f"profile_path must be a file path or None, got {cfg['profile_path']!r}")

    mbs = _need_list(cfg, "microbatches")
    for m in mbs:
        if not _is_int(m) or m < 1:
            raise ValueError(f"microbatches must hold integers >= 1, got {m!r} in {mbs!r}")
        if global_batch % m:
            divisors = [d for d in range(1, global_batch + 1) if global_batch % d == 0]
            raise ValueError(
                f"microbatches: {m} does not divide global_batch={global_batch}; "
                f"allowed: divisors of {global_batch} ({', '.join(map(str, divisors))})"
            )
    bws = _need_list(cfg, "bandwidths_GBps")
    for bw in bws:
        if not _is_num(bw) or bw <= 0:
            raise ValueError(f"bandwidths_GBps must hold finite numbers > 0, got {bw!r} in {bws!r}")
    if cfg["representative_microbatches"] not in mbs:
        raise ValueError(
            f"representative_microbatches must be one of microbatches {mbs}, "
            f"got {cfg['representative_microbatches']!r}"
        )
    if not _is_num(cfg["representative_bandwidth_GBps"]) or float(cfg["representative_bandwidth_GBps"]) not in [
        float(b) for b in bws
    ]:
        raise ValueError(
            f"representative_bandwidth_GBps must be one of bandwidths_GBps {bws}, "
            f"got {cfg['representative_bandwidth_GBps']!r}"
        )

    scheds = _need_list(cfg, "schedules")
    for s in scheds:
        if s not in sched_mod.SCHEDULES:
            raise ValueError(f"unknown schedule {s!r}; known schedules: {', '.join(sched_mod.SCHEDULES)}")
    layers = model_layer_count(cfg) if num_layers is None else num_layers
    n_blocks = -(-layers // block_n)
    if num_stages > n_blocks:
        raise ValueError(
            f"num_stages={num_stages} is more than the {n_blocks} blocks of block_n={block_n} layers "
            f"({layers} layers); allowed: num_stages <= {n_blocks}, or a smaller block_n"
        )
    n_multi = -(-layers // multi_block_n)
    for s in scheds:
        v = ex.model_stages_per_device(s, v_cfg)
        if v > 1 and num_stages * v > n_multi:
            raise ValueError(
                f"schedule {s} needs num_stages x {v} = {num_stages * v} model stages but the model "
                f"has {n_multi} blocks of multi_stage_block_n={multi_block_n} layers; allowed: "
                f"num_stages <= {n_multi // v}, a smaller multi_stage_block_n, or drop {s}"
            )
        try:
            ok, reasons = ex.supported_microbatches(s, num_stages, mbs, v_cfg)
        except (ImportError, AttributeError):
            continue  # generator not there yet: the run skips the schedule with a note
        if not ok:
            raise ValueError(
                f"schedule {s} cannot run with any of microbatches={mbs} on {num_stages} devices "
                f"({reasons[mbs[0]]}); change microbatches or drop {s}"
            )
        if cfg["representative_microbatches"] not in ok:
            raise ValueError(
                f"schedule {s} cannot run with representative_microbatches="
                f"{cfg['representative_microbatches']} ({reasons[cfg['representative_microbatches']]}); "
                f"allowed for {s}: {ok}"
            )
    io_mod.check_writable_dir(cfg["out_dir"])


# --------------------------------------------------------------------------- profiles


def load_or_check_profile(cfg: Mapping[str, Any]) -> list[Any] | None:
    """Load ``cfg["profile_path"]`` (``None`` when unset) and check it fits the configuration.

    Returns one ``ModelProfile`` per entry of ``microbatches`` (matched by
    ``meta.microbatch_size == global_batch / m``). A missing or corrupt file, or one that
    lacks a needed microbatch size or has layer counts that differ between sizes, raises
    ``ValueError`` naming the file and what it holds.
    """
    path = cfg["profile_path"]
    if path is None:
        return None
    from bubblereduce.profile import load_profiles

    profiles = load_profiles(path)
    if not profiles:
        raise ValueError(f"profile file '{path}' holds no profiles")
    by_size = {int(p.meta.microbatch_size): p for p in profiles}
    out = []
    for m in cfg["microbatches"]:
        size = cfg["global_batch"] // m
        if size not in by_size:
            raise ValueError(
                f"profile file '{path}' has microbatch sizes {sorted(by_size)}, but microbatches={m} "
                f"with global_batch={cfg['global_batch']} needs size {size}"
            )
        out.append(by_size[size])
    counts = {len(p.layers) for p in out}
    if len(counts) != 1:
        raise ValueError(f"profile file '{path}' has different layer counts per microbatch size: {sorted(counts)}")
    return out


def _build_model(cfg: Mapping[str, Any]) -> tuple[Any, Callable[[int], Any]]:
    """The model to profile and ``input_fn(batch_size) -> Tensor`` (seeded by ``cfg['seed']``)."""
    from bubblereduce import models

    widths = [int(w) for w in cfg["mlp_widths"]]
    model = models.build_mlp(widths, seed=cfg["seed"])
    return model, lambda batch: models.mlp_input(batch, widths[0], seed=cfg["seed"])


def profile_model(cfg: Mapping[str, Any], printer: Printer = print) -> list[Any]:
    """Measure the configured model once per microbatch size ``global_batch / m``.

    Returns ``ModelProfile`` objects in ``microbatches`` order. Timing uses ``warmup``
    untimed and ``repeats`` timed runs (median) with ``threads`` torch threads (None:
    torch's default); ``printer`` receives one progress line per size and the profiler's
    own progress lines.
    """
    from bubblereduce.profile import profile_microbatch_sizes

    model, input_fn = _build_model(cfg)
    sizes = [cfg["global_batch"] // m for m in cfg["microbatches"]]
    printer(
        f"profiling {cfg['model']} ({len(model)} layers) at microbatch sizes {sizes} "
        f"(warmup {cfg['warmup']}, repeats {cfg['repeats']})"
    )
    t0 = time.perf_counter()
    profiles = profile_microbatch_sizes(
        model,
        input_fn,
        sizes,
        progress=lambda line: printer("  " + line),
        warmup=cfg["warmup"],
        repeats=cfg["repeats"],
        threads=cfg["threads"],
        split_backward=True,
        seed=cfg["seed"],
        model_name=cfg["model"],
    )
    printer(f"profiled in {time.perf_counter() - t0:.1f} s")
    return profiles


# --------------------------------------------------------------------------- text tables


def _ms(x: float) -> str:
    return f"{x * 1e3:.3f}"


def _fmt_time(x: float) -> str:
    """Seconds as text with a unit chosen by magnitude (s, ms or µs), 3 significant digits."""
    if not math.isfinite(x):
        return "n/a"
    ax = abs(x)
    if ax >= 1.0:
        return f"{x:.3g} s"
    if ax >= 1e-3:
        return f"{x * 1e3:.3g} ms"
    return f"{x * 1e6:.3g} µs"


def _fmt_bytes(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.3g} MB"
    if n >= 1e3:
        return f"{n / 1e3:.3g} kB"
    return f"{int(n)} B"


def _pct(x: float) -> str:
    return f"{x * 100:.1f} %"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[k]) for r in rows)) if rows else len(h) for k, h in enumerate(header)]
    line = "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))
    body = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body])


def layer_table(profile: Any) -> str:
    """Per-layer text table of ``profile``: forward, backward, input-grad, weight-grad (ms), activation and parameter bytes."""
    rows = []
    for layer in profile.layers:
        rows.append(
            [
                layer.name,
                _ms(layer.forward_s),
                _ms(layer.backward_s),
                "-" if layer.input_grad_s is None else _ms(layer.input_grad_s),
                "-" if layer.weight_grad_s is None else _ms(layer.weight_grad_s),
                _fmt_bytes(layer.act_bytes),
                _fmt_bytes(layer.param_bytes),
            ]
        )
    return _table(["layer", "F ms", "B ms", "I ms", "W ms", "act", "params"], rows)


def block_table(costs: ex.BlockCosts) -> str:
    """Per-block text table: forward, backward, weight-grad share (ms) and boundary activation bytes."""
    rows = []
    for k, name in enumerate(costs.names):
        w = "-" if costs.weight_s is None else _ms(float(costs.weight_s[k]))
        rows.append(
            [str(k), name, _ms(costs.forward_s[k]), _ms(costs.backward_s[k]), w, _fmt_bytes(int(costs.act_bytes[k]))]
        )
    return _table(["block", "layers", "F ms", "B ms", "W ms", "out act"], rows)


def partition_table(costs: ex.BlockCosts, parts: Sequence[tuple[int, int]]) -> str:
    """Per-stage text table of one partition: blocks, f, b, f+b (ms) and the bytes sent to the next stage."""
    f, b, _ = ex.stage_arrays(costs, parts)
    rows = []
    for s, (a, e) in enumerate(parts):
        out = _fmt_bytes(int(costs.act_bytes[e - 1])) if s < len(parts) - 1 else "-"
        rows.append([str(s), f"{a}:{e}", _ms(f[s]), _ms(b[s]), _ms(f[s] + b[s]), out])
    return _table(["stage", "blocks", "F ms", "B ms", "F+B ms", "sends"], rows)


# --------------------------------------------------------------------------- summary


def _cell(rows: Sequence[ex.GridRow], schedule: str, bw: float, m: int) -> list[ex.GridRow]:
    return [r for r in rows if r.schedule == schedule and r.bandwidth_GBps == bw and r.microbatches == m]


def _best(cell: Sequence[ex.GridRow], exclude: Sequence[str] = ("uniform",)) -> ex.GridRow | None:
    cands = [r for r in cell if r.strategy not in exclude]
    # earliest strategy wins ties (rows keep strategy order)
    return min(cands, key=lambda r: r.makespan_s) if cands else None


def summary_lines(rows: Sequence[ex.GridRow], cfg: Mapping[str, Any], meta: Any) -> list[str]:
    """Sentences a paper can quote, each with units and the configuration it came from.

    ``rows`` is the full grid, ``cfg`` the resolved config, ``meta`` the profile's
    ``ProfileMeta`` (device, threads, torch version). Deterministic text: no times of
    day, paths or wall-clock durations.
    """
    rep_m = int(cfg["representative_microbatches"])
    rep_bw = float(cfg["representative_bandwidth_GBps"])
    bws = sorted({r.bandwidth_GBps for r in rows})
    mbs = sorted(int(m) for m in cfg["microbatches"])
    schedules = list(dict.fromkeys(r.schedule for r in rows))
    strategies = list(dict.fromkeys(r.strategy for r in rows))
    lat = float(cfg["latency_s"])
    size = int(cfg["global_batch"]) // rep_m
    n_layers = len(cfg["mlp_widths"]) - 1 if cfg["profile_path"] is None else None
    lines = [
        "BubbleReduce main demo summary",
        "",
        f"Setup: {cfg['model']} model"
        + (f" with {n_layers} layers" if n_layers is not None else " from a saved profile")
        + f", blocks of {cfg['block_n']} layers (multi-stage schedules: {cfg['multi_stage_block_n']}),"
        f" {cfg['num_stages']} devices, global batch {cfg['global_batch']} samples split into"
        f" m = {', '.join(map(str, mbs))} microbatches; links {', '.join(f'{b:g}' for b in bws)} GB/s"
        f" with {_fmt_time(lat)} latency, comm_mode {cfg['comm_mode']}; costs measured on {meta.device}"
        f" ({meta.dtype}, {meta.threads} threads, torch {meta.torch_version}, median of {meta.repeats}).",
        f"Strategies: {', '.join(strategies)} (greedy alpha {cfg['alpha']:g}, dp_slack slack"
        f" {cfg['slack']:g}); each is planned for the configuration it runs in.",
        f"Representative configuration: m = {rep_m} ({size} samples per microbatch), {rep_bw:g} GB/s.",
        "",
    ]
    for s in schedules:
        missing = [m for m in mbs if m not in {r.microbatches for r in rows if r.schedule == s}]
        if missing:
            lines.append(f"{s} cannot run with m = {', '.join(map(str, missing))} on {cfg['num_stages']} devices: those cells are skipped.")
    lines += ["", "Best strategy per schedule and link (speedup = uniform step time / best step time):"]
    for s in schedules:
        s_mbs = sorted({r.microbatches for r in rows if r.schedule == s})
        for bw in bws:
            cell = _cell(rows, s, bw, rep_m)
            uni = next((r for r in cell if r.strategy == "uniform"), None)
            best = _best(cell)
            if uni is None or best is None:
                continue
            over_m = [b.speedup_vs_uniform for m in s_mbs if (b := _best(_cell(rows, s, bw, m))) is not None]
            if best.makespan_s < uni.makespan_s * (1 - 1e-9):
                head = (
                    f"- {s}, {bw:g} GB/s, m={rep_m}: best {best.strategy}, step {_fmt_time(best.makespan_s)}"
                    f" vs uniform {_fmt_time(uni.makespan_s)} ({best.speedup_vs_uniform:.3f}x)"
                )
            else:
                head = (
                    f"- {s}, {bw:g} GB/s, m={rep_m}: no strategy beats uniform"
                    f" ({_fmt_time(uni.makespan_s)}; best other {best.strategy} {best.speedup_vs_uniform:.3f}x)"
                )
            lines.append(
                head
                + f"; bubble {_pct(best.bubble_fraction)} vs {_pct(uni.bubble_fraction)}"
                + f"; communication adds {_pct(best.comm_share)} of the step"
                + f"; best speedup over m = {s_mbs[0]}..{s_mbs[-1]}: {min(over_m):.3f}x to {max(over_m):.3f}x."
            )
    lines += ["", f"Communication share of step time (1 - step without comm / step), m={rep_m}:"]
    for bw in bws:
        shares = [r.comm_share for r in rows if r.bandwidth_GBps == bw and r.microbatches == rep_m]
        uni = [r.comm_share for r in rows if r.bandwidth_GBps == bw and r.microbatches == rep_m and r.strategy == "uniform"]
        lines.append(
            f"- {bw:g} GB/s: {_pct(min(shares))} to {_pct(max(shares))} over schedules and strategies"
            + (f" (uniform: {_pct(min(uni))} to {_pct(max(uni))})." if uni else ".")
        )
    lines += _slack_lines(rows, cfg, rep_m, rep_bw, bws)
    lines += _schedule_aware_lines(rows, rep_m, rep_bw)
    lines += _not_helping_lines(rows)
    lines += ["", f"Peak in-flight microbatches (max over devices), dp_min_max, m={rep_m}, {rep_bw:g} GB/s:"]
    peaks = []
    for s in schedules:
        r = next((r for r in _cell(rows, s, rep_bw, rep_m) if r.strategy == "dp_min_max"), None)
        if r is not None:
            peaks.append(f"{s} {r.peak_inflight:g}")
    lines.append("- " + ", ".join(peaks) + ".")
    return lines


def _slack_lines(rows: Sequence[ex.GridRow], cfg: Mapping[str, Any], rep_m: int, rep_bw: float, bws: Sequence[float]) -> list[str]:
    out = ["", f"Communication saved by dp_slack (slack {cfg['slack']:g}) vs dp_min_max, m={rep_m}, {rep_bw:g} GB/s:"]
    seen: set[tuple[int, int]] = set()
    for s in dict.fromkeys(r.schedule for r in rows):
        cell = _cell(rows, s, rep_bw, rep_m)
        dp = next((r for r in cell if r.strategy == "dp_min_max"), None)
        sl = next((r for r in cell if r.strategy == "dp_slack"), None)
        if dp is None or sl is None or (dp.num_stages, dp.block_n) in seen:
            continue
        seen.add((dp.num_stages, dp.block_n))
        if sl.partition == dp.partition:
            out.append(
                f"- {dp.num_stages} stages (blocks of {dp.block_n}): same partition as dp_min_max; no boundary"
                f" traffic to save within {cfg['slack']:g} slack ({_fmt_bytes(dp.boundary_bytes_total)} per microbatch)."
            )
            continue
        saved = 1 - sl.boundary_bytes_total / dp.boundary_bytes_total if dp.boundary_bytes_total else 0.0
        cost = sl.bottleneck_s / dp.bottleneck_s - 1
        out.append(
            f"- {dp.num_stages} stages (blocks of {dp.block_n}): boundary traffic {_fmt_bytes(dp.boundary_bytes_total)}"
            f" -> {_fmt_bytes(sl.boundary_bytes_total)} per microbatch per direction ({_pct(saved)} less),"
            f" bottleneck {_fmt_time(dp.bottleneck_s)} -> {_fmt_time(sl.bottleneck_s)} (+{_pct(cost)})."
        )
    slow = min(bws)
    deltas = []
    for s in dict.fromkeys(r.schedule for r in rows):
        cell = _cell(rows, s, slow, rep_m)
        dp = next((r for r in cell if r.strategy == "dp_min_max"), None)
        sl = next((r for r in cell if r.strategy == "dp_slack"), None)
        if dp is not None and sl is not None:
            deltas.append(f"{s} {(sl.makespan_s / dp.makespan_s - 1) * 100:+.1f} %")
    if deltas:
        out.append(f"- Net step-time change of dp_slack vs dp_min_max at {slow:g} GB/s, m={rep_m}: {', '.join(deltas)}.")
    return out


def _schedule_aware_lines(rows: Sequence[ex.GridRow], rep_m: int, rep_bw: float) -> list[str]:
    out = ["", "schedule_aware vs dp_min_max (step-time gain = 1 - schedule_aware / dp_min_max):"]
    any_row = False
    for s in dict.fromkeys(r.schedule for r in rows):
        pairs = []
        for r in rows:
            if r.schedule == s and r.strategy == "schedule_aware":
                dp = next((d for d in _cell(rows, s, r.bandwidth_GBps, r.microbatches) if d.strategy == "dp_min_max"), None)
                if dp is not None:
                    pairs.append((1 - r.makespan_s / dp.makespan_s, r))
        if not pairs:
            continue
        any_row = True
        rep = next((g for g, r in pairs if r.microbatches == rep_m and r.bandwidth_GBps == rep_bw), None)
        better = [(g, r) for g, r in pairs if g > 1e-9]
        text = f"- {s}: " + (f"{_pct(rep)} at m={rep_m}, {rep_bw:g} GB/s; " if rep is not None else "")
        if better:
            g, r = max(better, key=lambda t: t[0])
            text += (
                f"better in {len(better)} of {len(pairs)} configurations"
                f" (largest {_pct(g)} at m={r.microbatches}, {r.bandwidth_GBps:g} GB/s), equal elsewhere."
            )
        else:
            text += f"no gain in any of {len(pairs)} configurations (dp_min_max is already best here)."
        out.append(text)
    return out if any_row else []


def _not_helping_lines(rows: Sequence[ex.GridRow]) -> list[str]:
    out = ["", "Where a strategy does not help (slower than uniform in the same configuration):"]
    for strat in dict.fromkeys(r.strategy for r in rows):
        if strat == "uniform":
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
            out.append(f"- {strat}: never slower than uniform ({len(mine)} configurations).")
    return out


# --------------------------------------------------------------------------- outputs


def _available_schedules(cfg: Mapping[str, Any], printer: Printer) -> dict[str, list[int]]:
    """Schedule -> the microbatch counts it runs; prints a note for each skipped schedule or count."""
    out: dict[str, list[int]] = {}
    for s in cfg["schedules"]:
        try:
            ok, reasons = ex.supported_microbatches(s, cfg["num_stages"], cfg["microbatches"], cfg["stages_per_device"])
        except (ImportError, AttributeError) as exc:
            printer(f"note: schedule {s} skipped: its generator is not available ({exc})")
            continue
        for m, why in reasons.items():
            printer(f"note: {s} skipped at m={m}: {why}")
        out[s] = ok
    return out


def _available_planners(cfg: Mapping[str, Any], printer: Printer) -> dict[str, ex.Planner]:
    from bubblereduce import partition as part_mod

    names = []
    for name in ex.STRATEGIES:
        if not hasattr(part_mod, name):
            printer(f"note: strategy {name} skipped: bubblereduce.partition.{name} is not available")
            continue
        names.append(name)
    return ex.standard_planners(alpha=float(cfg["alpha"]), slack=float(cfg["slack"]), strategies=names)


def write_outputs(
    tmp: Path,
    rows: Sequence[ex.GridRow],
    cfg: Mapping[str, Any],
    profiles: Sequence[Any],
    costs_for: Callable[[int, int], ex.BlockCosts],
    summary: Sequence[str],
    printer: Printer = print,
) -> list[str]:
    """Write every output file of the demo into the staging folder ``tmp``; return the file names.

    results.csv (grid rows + config columns), per schedule and bandwidth the makespan,
    bubble and speedup plots vs microbatches, per schedule a timeline PNG and a
    Chrome-trace JSON for uniform and the best strategy at the representative
    configuration, profile.json, config.json, env.json and summary.txt.
    """
    from bubblereduce import plotting
    from bubblereduce.profile import save_profiles

    names: list[str] = []
    extra = {
        "global_batch": int(cfg["global_batch"]),
        "latency_s": float(cfg["latency_s"]),
        "comm_mode": str(cfg["comm_mode"]),
        "alpha": float(cfg["alpha"]),
        "slack": float(cfg["slack"]),
    }
    header, table = ex.grid_csv(rows, extra)
    io_mod.write_csv(tmp / "results.csv", header, table)
    names.append("results.csv")

    schedules = list(dict.fromkeys(r.schedule for r in rows))
    strategies = list(dict.fromkeys(r.strategy for r in rows))
    bws = list(dict.fromkeys(r.bandwidth_GBps for r in rows))
    metrics = [
        ("makespan", "step time (ms)", lambda r: r.makespan_s * 1e3),
        ("bubble", "bubble fraction (idle share of device time)", lambda r: r.bubble_fraction),
        ("speedup", "speedup vs uniform (x)", lambda r: r.speedup_vs_uniform),
    ]
    for s in schedules:
        mbs = sorted({r.microbatches for r in rows if r.schedule == s})
        for bw in bws:
            tok = ex.bandwidth_token(bw)
            for prefix, ylabel, get in metrics:
                series = {
                    strat: [get(next(r for r in _cell(rows, s, bw, m) if r.strategy == strat)) for m in mbs]
                    for strat in strategies
                }
                fname = f"{prefix}_{s}_{tok}.png"
                plotting.plot_lines(
                    mbs,
                    series,
                    tmp / fname,
                    xlabel=f"microbatches m (global batch {cfg['global_batch']})",
                    ylabel=ylabel,
                    title=f"{s}, {cfg['num_stages']} devices, {bw:g} GB/s link: {prefix} vs microbatches",
                    logx=True,
                )
                names.append(fname)
        printer(f"plotted {s}")

    rep_m = int(cfg["representative_microbatches"])
    rep_bw = float(cfg["representative_bandwidth_GBps"])
    for s in schedules:
        cell = _cell(rows, s, rep_bw, rep_m)
        chosen = [r for r in cell if r.strategy == "uniform"]
        best = _best(cell)
        if best is not None:
            chosen.append(best)
        for r in chosen:
            costs = costs_for(rep_m, r.stages_per_device)
            res = ex.simulate_partition(
                s, costs, r.partition, rep_m, bandwidth_GBps=rep_bw, latency_s=float(cfg["latency_s"]),
                comm_mode=cfg["comm_mode"], stages_per_device=r.stages_per_device,
            )
            title = (
                f"{s}, {r.strategy} [{ex.partition_text(r.partition)}], m={rep_m}, {rep_bw:g} GB/s"
            )
            png = f"timeline_{s}_{r.strategy}.png"
            plotting.plot_timeline(res, tmp / png, title)
            trace = f"trace_{s}_{r.strategy}.json"
            io_mod.write_json(tmp / trace, io_mod.chrome_trace(res, stage_names=None), indent=None)
            names += [png, trace]

    save_profiles(tmp / "profile.json", list(profiles))
    io_mod.write_json(tmp / "config.json", dict(cfg))
    io_mod.write_json(tmp / "env.json", io_mod.environment_info())
    io_mod.atomic_write_text(tmp / "summary.txt", "\n".join(summary) + "\n")
    names += ["profile.json", "config.json", "env.json", "summary.txt"]
    return names


def run_demo(cfg: Mapping[str, Any], printer: Printer = print) -> Path:
    """Run the whole demo for the resolved config ``cfg``; return the output folder.

    Raises ``ValueError`` for bad input before any profiling or writing; on any error
    later nothing is moved into ``out_dir`` (outputs are staged and committed at the end).
    """
    t_start = time.perf_counter()
    loaded = load_or_check_profile(cfg)
    validate_config(cfg, None if loaded is None else len(loaded[0].layers))
    with io_mod.StagedOutput(cfg["out_dir"]) as tmp:
        if loaded is None:
            profiles = profile_model(cfg, printer)
        else:
            printer(f"loaded profile '{cfg['profile_path']}' ({len(loaded)} microbatch sizes)")
            profiles = loaded
        by_m = dict(zip(cfg["microbatches"], profiles, strict=True))
        cache: dict[tuple[int, int], ex.BlockCosts] = {}

        def costs_for(m: int, v: int) -> ex.BlockCosts:
            bn = cfg["block_n"] if v == 1 else cfg["multi_stage_block_n"]
            if (m, bn) not in cache:
                cache[(m, bn)] = ex.block_costs(by_m[m], bn)
            return cache[(m, bn)]

        rep_m = int(cfg["representative_microbatches"])
        rep_bw = float(cfg["representative_bandwidth_GBps"])
        printer(f"\nper-layer costs at microbatch size {cfg['global_batch'] // rep_m} (m={rep_m}):")
        printer(layer_table(by_m[rep_m]))
        printer(f"\nper-block costs (block_n={cfg['block_n']}):")
        printer(block_table(costs_for(rep_m, 1)))

        schedules = _available_schedules(cfg, printer)
        planners = _available_planners(cfg, printer)
        needs_w = [s for s in schedules if s in sched_mod.NEEDS_W]
        if needs_w and costs_for(rep_m, 1).weight_s is None:
            raise ValueError(f"schedules {', '.join(needs_w)} need the profile's I/W split, which it lacks")
        printer("")
        rows = ex.simulate_grid(
            costs_for,
            planners,
            schedules=list(schedules),
            microbatches=schedules,
            bandwidths_GBps=[float(b) for b in cfg["bandwidths_GBps"]],
            num_devices=int(cfg["num_stages"]),
            latency_s=float(cfg["latency_s"]),
            comm_mode=cfg["comm_mode"],
            stages_per_device=int(cfg["stages_per_device"]),
            progress=printer,
        )
        _print_partitions(rows, costs_for, rep_m, rep_bw, printer)
        summary = summary_lines(rows, cfg, profiles[0].meta)
        if cfg["engine_check"]:
            summary += _engine_check(tmp, cfg, printer)
        write_outputs(tmp, rows, cfg, profiles, costs_for, summary, printer)
    printer("\n" + "\n".join(summary))
    out = Path(cfg["out_dir"])
    printer(f"\nwrote {out}/: results.csv, makespan_/bubble_/speedup_<schedule>_<bw>.png, "
            "timeline_/trace_<schedule>_<strategy>, profile.json, config.json, env.json, summary.txt")
    printer(f"wall time {time.perf_counter() - t_start:.1f} s")
    return out


def _print_partitions(
    rows: Sequence[ex.GridRow], costs_for: Callable[[int, int], ex.BlockCosts], rep_m: int, rep_bw: float, printer: Printer
) -> None:
    seen: set[tuple[int, int, str, tuple[tuple[int, int], ...]]] = set()
    for r in rows:
        if r.microbatches != rep_m or r.bandwidth_GBps != rep_bw:
            continue
        key_strategy = r.strategy if r.strategy != "schedule_aware" else f"schedule_aware/{r.schedule}"
        key = (r.num_stages, r.block_n, key_strategy, r.partition)
        if key in seen:
            continue
        seen.add(key)
        costs = costs_for(rep_m, r.stages_per_device)
        label = key_strategy if r.strategy == "schedule_aware" else f"{r.strategy}, {r.num_stages} stages"
        printer(
            f"\n{label} (m={rep_m}, {rep_bw:g} GB/s): bottleneck {_fmt_time(r.bottleneck_s)},"
            f" boundary bytes {_fmt_bytes(r.boundary_bytes_total)} per microbatch"
        )
        printer(partition_table(costs, r.partition))


def _engine_check(tmp: Path, cfg: Mapping[str, Any], printer: Printer) -> list[str]:
    """Run the real-engine comparison (bubblereduce.engine) and write engine_check.csv into ``tmp``."""
    try:
        from bubblereduce import engine
    except ImportError as exc:
        raise ValueError(f"engine_check=True needs bubblereduce.engine, which is not available ({exc})") from exc
    printer("running the torch.distributed.pipelining check (engine_check=True)")
    return list(engine.demo_engine_check(cfg, tmp, printer=printer))


# --------------------------------------------------------------------------- CLI


def cli_main(defaults: Mapping[str, Any], argv: Sequence[str], printer: Printer = print) -> int:
    """Resolve ``--key=value`` overrides of ``defaults``, print and run the demo; return the exit code.

    Bad input (unknown key, wrong type, invalid value, missing or corrupt profile,
    unwritable ``out_dir``: any ``ValueError``) prints one line ``error: <message>`` to
    stderr and returns 2 (``config.run_main``); nothing is written into ``out_dir`` then.
    Ctrl-C returns 130. Success returns 0.
    """
    from bubblereduce.config import format_config, resolve_config, run_main

    def main() -> int:
        cfg = resolve_config(dict(defaults), list(argv))
        printer(format_config(cfg))
        run_demo(cfg, printer)
        return 0

    return run_main(main)
