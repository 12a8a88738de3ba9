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

import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bubblereduce import experiment as ex
from bubblereduce import io as io_mod
from bubblereduce import report as rp
from bubblereduce import schedules as sched_mod
from bubblereduce.config import print_flush

__all__ = [
    "COMM_MODES",
    "validate_config",
    "validate_model_fit",
    "model_layer_count",
    "load_or_check_profile",
    "profile_model",
    "summary_lines",
    "write_outputs",
    "run_demo",
    "cli_main",
]

COMM_MODES: tuple[str, ...] = ("overlap", "blocking")
_MODELS: tuple[str, ...] = ("mlp", "gpt")

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
    if cfg["model"] == "gpt":
        return _gpt_demo_config(cfg).num_profiled_layers
    widths = cfg["mlp_widths"]
    if isinstance(widths, str) or not isinstance(widths, list | tuple) or len(widths) < 2:
        raise ValueError(f"mlp_widths must be a list of at least 2 positive integers, got {widths!r}")
    if not all(_is_int(w) and w >= 1 for w in widths):
        raise ValueError(f"mlp_widths must hold positive integers, got {list(widths)!r}")
    return len(widths) - 1


def validate_config(cfg: Mapping[str, Any]) -> None:
    """Check every knob that does not depend on the model; raise ``ValueError`` naming the bad value.

    Checks: positive stage/block/batch counts, microbatch counts that divide
    ``global_batch``, positive bandwidths, non-negative latency/alpha/slack, known
    schedules and comm mode, representative values that are in their lists, the MLP
    widths (when no profile is loaded) and a writable ``out_dir``. Each message says
    what is allowed. Creates nothing. :func:`validate_model_fit` does the rest once the
    layer count is known.
    """
    if cfg["model"] not in _MODELS:
        raise ValueError(f"model must be one of {', '.join(_MODELS)}, got {cfg['model']!r}")
    _validate_model_knobs(cfg)
    for key in ("num_stages", "block_n", "multi_stage_block_n", "stages_per_device"):
        _need_int(cfg, key, 1)
    global_batch = _need_int(cfg, "global_batch", 1)
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

    for s in _need_list(cfg, "schedules"):
        if s not in sched_mod.SCHEDULES:
            raise ValueError(f"unknown schedule {s!r}; known schedules: {', '.join(sched_mod.SCHEDULES)}")
    if cfg["profile_path"] is None:
        model_layer_count(cfg)
    io_mod.check_writable_dir(cfg["out_dir"])


def validate_model_fit(cfg: Mapping[str, Any], num_layers: int) -> None:
    """Check that ``num_layers`` layers fit the pipeline and that every schedule can run.

    ``num_layers`` comes from ``mlp_widths`` or the loaded profile. Raises ``ValueError``
    when ``num_stages`` exceeds the blocks of ``block_n`` layers, when a multi-stage
    schedule's ``num_stages x v`` model stages exceed the blocks of
    ``multi_stage_block_n`` layers, or when a schedule can run with none of the
    microbatch counts; each message says what is allowed. (A schedule that cannot run
    some counts, e.g. dualpipev with m < 2 x devices, skips those cells with a note.)
    """
    num_stages = int(cfg["num_stages"])
    block_n = int(cfg["block_n"])
    multi_block_n = int(cfg["multi_stage_block_n"])
    v_cfg = int(cfg["stages_per_device"])
    mbs = list(cfg["microbatches"])
    scheds = list(cfg["schedules"])
    layers = int(num_layers)
    if cfg["engine_check"] and layers != len(cfg["mlp_widths"]) - 1:
        raise ValueError(
            f"engine_check runs the MLP of mlp_widths ({len(cfg['mlp_widths']) - 1} layers) but the profile "
            f"has {layers} layers; allowed: mlp_widths matching the profile, or engine_check=False"
        )
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
        ok, reasons = ex.supported_microbatches(s, num_stages, mbs, v_cfg)
        if not ok:
            raise ValueError(
                f"schedule {s} cannot run with any of microbatches={mbs} on {num_stages} devices "
                f"({reasons[mbs[0]]}); change microbatches or drop {s}"
            )


# --------------------------------------------------------------------------- GPT, analytic, memory
# (issue 9) the knobs default to the MLP demo's behaviour when absent from ``cfg``

_PROFILE_SOURCES: tuple[str, ...] = ("measured", "analytic")


def _gpt_demo_config(cfg: Mapping[str, Any]) -> Any:
    """The ``GPTConfig`` of the ``gpt_*`` knobs (``None`` knobs keep the preset's value)."""
    from bubblereduce import gpt

    return gpt.gpt_config(
        cfg.get("gpt_preset", "tiny"), layers=cfg.get("gpt_layers"), hidden=cfg.get("gpt_hidden"),
        heads=cfg.get("gpt_heads"), seq_len=cfg.get("gpt_seq_len"), vocab_size=cfg.get("gpt_vocab"),
        split_sublayers=cfg.get("gpt_split_sublayers", False),
    )


def _validate_model_knobs(cfg: Mapping[str, Any]) -> None:
    """Check the GPT, profile-source, device-preset and memory knobs (ValueError naming the value)."""
    from bubblereduce import analytic, memory

    source = cfg.get("profile_source", "measured")
    if source not in _PROFILE_SOURCES:
        raise ValueError(f"profile_source must be one of {', '.join(_PROFILE_SOURCES)}, got {source!r}")
    if source == "analytic":
        analytic.device_preset(cfg.get("device_preset", "h100-sxm"))
    cap = cfg.get("memory_capacity_GB")
    if cap is not None and (not _is_num(cap) or cap <= 0):
        raise ValueError(f"memory_capacity_GB must be a number > 0 or None, got {cap!r}")
    opt = cfg.get("optimizer", "adam-mixed")
    if opt not in memory.OPTIMIZER_BYTES_PER_PARAM:
        raise ValueError(f"optimizer must be one of {', '.join(memory.OPTIMIZER_BYTES_PER_PARAM)}, got {opt!r}")
    if cfg["model"] == "gpt":
        for key in ("gpt_layers", "gpt_hidden", "gpt_heads", "gpt_seq_len", "gpt_vocab"):
            v = cfg.get(key)
            if v is not None and (not _is_int(v) or v < 1):
                raise ValueError(f"{key} must be an integer >= 1 or None (the preset's value), got {v!r}")
        _gpt_demo_config(cfg)


def _analytic_profiles(cfg: Mapping[str, Any], printer: Printer) -> list[Any]:
    """Analytic profiles (``bubblereduce.analytic``) at every microbatch size, no measurement."""
    from bubblereduce import analytic

    sizes = [cfg["global_batch"] // m for m in cfg["microbatches"]]
    dev = cfg.get("device_preset", "h100-sxm")
    printer(f"analytic profiles of {cfg['model']} on {dev} at microbatch sizes {sizes}")
    if cfg["model"] == "gpt":
        gcfg = _gpt_demo_config(cfg)
        return [analytic.analytic_profile(gcfg, s, dev) for s in sizes]
    model, input_fn = _build_model(cfg)
    return [analytic.analytic_profile(model, s, dev, sample_input=input_fn(1)) for s in sizes]


def _memory_outputs(tmp: Path, cfg: Mapping[str, Any], profile: Any, printer: Printer) -> list[str]:
    """Memory-aware partition vs practitioner splits for the GPT model: memory_per_stage.png,
    memory.csv in ``tmp``; returns the summary sentences."""
    from bubblereduce import analytic, memory, plotting

    gcfg = _gpt_demo_config(cfg)
    size = int(profile.meta.microbatch_size)
    dtype = None if cfg.get("profile_source", "measured") == "analytic" else profile.meta.dtype
    counts = analytic.count_layers(gcfg, size, dtype=dtype)
    p = int(cfg["num_stages"])
    # 1F1B first: the schedule practitioners run, and the one whose memory the comparison is about
    schedule = next((s for s in ("1f1b", "zb-h1", "zb-h2", "gpipe") if s in cfg["schedules"]), "1f1b")
    if p > len(counts):
        return ["", f"Memory comparison skipped: {p} devices exceed the {len(counts)} layers."]
    cap_GB = cfg.get("memory_capacity_GB")
    opt = cfg.get("optimizer", "adam-mixed")
    cmp = memory.compare_partitions(
        profile, _gpt_kinds(gcfg), [c.saved_bytes for c in counts], [c.param_count for c in counts],
        p, int(cfg["representative_microbatches"]), schedule=schedule,
        bandwidth_GBps=float(cfg["representative_bandwidth_GBps"]), latency_s=float(cfg["latency_s"]),
        bytes_per_param=opt, capacity_bytes=None if cap_GB is None else float(cap_GB) * 1e9)
    header, rows = memory.comparison_csv(cmp)
    io_mod.write_csv(tmp / "memory.csv", header, rows)
    plotting.plot_stage_memory(
        {r.strategy: (r.persistent_bytes, r.activation_bytes) for r in cmp.reports},
        tmp / "memory_per_stage.png",
        title=f"{gcfg.name}, {schedule}, m={cmp.microbatches}: memory per device by partition",
        capacity_bytes=cmp.capacity_bytes)
    lines = memory.comparison_lines(cmp, opt)
    printer("\n".join(lines))
    return lines


def _gpt_kinds(gcfg: Any) -> list[str]:
    from bubblereduce import gpt

    return gpt.gpt_layer_kinds(gcfg)


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

    if cfg["model"] == "gpt":
        from bubblereduce import gpt

        gcfg = _gpt_demo_config(cfg)
        return gpt.build_gpt(gcfg, seed=cfg["seed"]), lambda b: gpt.gpt_input(gcfg, b, seed=cfg["seed"])
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

    if cfg.get("profile_source", "measured") == "analytic":
        return _analytic_profiles(cfg, printer)
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


# --------------------------------------------------------------------------- summary


def summary_lines(rows: Sequence[ex.GridRow], cfg: Mapping[str, Any], profile: Any) -> list[str]:
    """Sentences a paper can quote, each with units and the configuration it came from.

    ``rows`` is the full grid, ``cfg`` the resolved config, ``profile`` one of the run's
    ``ModelProfile`` objects (layer count; device, threads, torch version from its meta).
    Deterministic text: no times of day, paths or wall-clock durations. Built from
    :mod:`bubblereduce.report` helpers.
    """
    meta = profile.meta
    rep_m = int(cfg["representative_microbatches"])
    rep_bw = float(cfg["representative_bandwidth_GBps"])
    bws = sorted({r.bandwidth_GBps for r in rows})
    mbs = sorted(int(m) for m in cfg["microbatches"])
    strategies = list(dict.fromkeys(r.strategy for r in rows))
    size = int(cfg["global_batch"]) // rep_m
    threads = f"{meta.threads} thread{'' if meta.threads == 1 else 's'}"
    lines = [
        "BubbleReduce main demo summary",
        "",
        f"Setup: {cfg['model']} model with {len(profile.layers)} layers"
        f", blocks of {cfg['block_n']} layers (multi-stage schedules: {cfg['multi_stage_block_n']}),"
        f" {cfg['num_stages']} devices, global batch {cfg['global_batch']} samples split into"
        f" m = {', '.join(map(str, mbs))} microbatches; links {', '.join(f'{b:g}' for b in bws)} GB/s"
        f" with {rp.fmt_time(float(cfg['latency_s']))} latency, comm_mode {cfg['comm_mode']}; "
        + (f"costs from the analytic model of {meta.device.removesuffix(' (analytic)')} ({meta.dtype},"
           " bubblereduce.analytic: FLOPs and bytes counted from shapes, efficiencies assumed)."
           if meta.device.endswith("(analytic)") else
           f"costs measured on {meta.device} ({meta.dtype}, {threads}, torch {meta.torch_version},"
           f" median of {meta.repeats} runs)."),
        f"Strategies: {', '.join(strategies)} (greedy alpha {cfg['alpha']:g}, dp_slack slack"
        f" {cfg['slack']:g}); each is planned for the configuration it runs in.",
        f"Representative configuration: m = {rep_m} ({size} samples per microbatch), {rep_bw:g} GB/s.",
        "",
    ]
    lines += rp.skipped_lines(rows, mbs, int(cfg["num_stages"]))
    work = rp.compute_per_step_line(rows, mbs)
    lines += [work] if work else []
    for block in (
        rp.best_strategy_lines(rows, rep_m),
        rp.comm_share_lines(rows, rep_m),
        rp.slack_lines(rows, float(cfg["slack"]), rep_m, rep_bw),
        rp.gain_lines(rows, "schedule_aware", "dp_min_max", rep_m, rep_bw),
        rp.not_helping_lines(rows),
        rp.peak_inflight_line(rows, "dp_min_max", rep_m, rep_bw),
    ):
        if block:
            lines += ["", *block]
    return lines


# --------------------------------------------------------------------------- outputs


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
    bubble and speedup plots vs microbatches, per schedule timelines and Chrome traces of
    uniform and the best strategy at the representative configuration, profile.json,
    config.json, env.json and summary.txt.
    """

    extra = {
        "global_batch": int(cfg["global_batch"]),
        "latency_s": float(cfg["latency_s"]),
        "comm_mode": str(cfg["comm_mode"]),
        "alpha": float(cfg["alpha"]),
        "slack": float(cfg["slack"]),
    }
    header, table = ex.grid_csv(rows, extra)
    io_mod.write_csv(tmp / "results.csv", header, table)
    names = ["results.csv"]
    names += ex.write_grid_plots(rows, tmp, num_devices=int(cfg["num_stages"]), global_batch=int(cfg["global_batch"]))
    printer(f"plotted {len(names) - 1} figures vs microbatches")
    names += ex.write_timelines(
        rows,
        costs_for,
        tmp,
        microbatches=int(cfg["representative_microbatches"]),
        bandwidth_GBps=float(cfg["representative_bandwidth_GBps"]),
        latency_s=float(cfg["latency_s"]),
        comm_mode=str(cfg["comm_mode"]),
    )
    names += io_mod.write_run_record(tmp, config=cfg, summary="\n".join(summary), profiles=profiles)
    return names


def run_demo(cfg: Mapping[str, Any], printer: Printer = print) -> Path:
    """Run the whole demo for the resolved config ``cfg``; return the output folder.

    Raises ``ValueError`` for bad input before any profiling or writing; on any error
    later nothing is moved into ``out_dir`` (outputs are staged and committed at the end).
    """
    t_start = time.perf_counter()
    validate_config(cfg)
    loaded = load_or_check_profile(cfg)
    validate_model_fit(cfg, model_layer_count(cfg) if loaded is None else len(loaded[0].layers))
    with io_mod.StagedOutput(cfg["out_dir"]) as tmp:
        t_profile = time.perf_counter()
        if loaded is None:
            profiles = profile_model(cfg, printer)
        else:
            printer(f"loaded profile '{cfg['profile_path']}' ({len(loaded)} microbatch sizes)")
            profiles = loaded
        t_profile = time.perf_counter() - t_profile
        by_m = dict(zip(cfg["microbatches"], profiles, strict=True))
        costs_for = ex.block_cost_lookup(by_m, cfg["block_n"], cfg["multi_stage_block_n"])

        rep_m = int(cfg["representative_microbatches"])
        rep_bw = float(cfg["representative_bandwidth_GBps"])
        printer(f"\nper-layer costs at microbatch size {cfg['global_batch'] // rep_m} (m={rep_m}):")
        printer(rp.layer_table(by_m[rep_m]))
        printer(f"\nper-block costs (block_n={cfg['block_n']}):")
        printer(rp.block_table(costs_for(rep_m, 1)))

        schedules = ex.runnable_microbatches(cfg["schedules"], cfg["num_stages"], cfg["microbatches"],
                                             cfg["stages_per_device"], printer)
        planners = ex.standard_planners(alpha=float(cfg["alpha"]), slack=float(cfg["slack"]))
        for s, ok in schedules.items():
            if rep_m not in ok:
                printer(f"note: no timeline for {s}: it cannot run the representative m={rep_m}")
        needs_w = [s for s in schedules if s in sched_mod.NEEDS_W]
        if needs_w and costs_for(rep_m, 1).weight_s is None:
            raise ValueError(f"schedules {', '.join(needs_w)} need the profile's I/W split, which it lacks")
        printer("")
        t_grid = time.perf_counter()
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
        t_grid = time.perf_counter() - t_grid
        _print_partitions(rows, costs_for, rep_m, rep_bw, printer)
        summary = summary_lines(rows, cfg, profiles[0])
        if cfg["engine_check"]:
            summary += _engine_check(tmp, cfg, by_m[rep_m], printer)
        if cfg["model"] == "gpt":
            summary += _memory_outputs(tmp, cfg, by_m[rep_m], printer)
        t_write = time.perf_counter()
        write_outputs(tmp, rows, cfg, profiles, costs_for, summary, printer)
        t_write = time.perf_counter() - t_write
    printer("\n" + "\n".join(summary))
    out = Path(cfg["out_dir"])
    printer(f"\nwrote {out}/: results.csv, makespan_/bubble_/speedup_<schedule>_<bw>.png, "
            "timeline_/trace_<schedule>_<strategy>, profile.json, config.json, env.json, summary.txt")
    printer(
        f"wall time {time.perf_counter() - t_start:.1f} s (profiling {t_profile:.1f} s,"
        f" planning + simulation {t_grid:.1f} s, writing outputs {t_write:.1f} s)"
    )
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
            f"\n{label} (m={rep_m}, {rep_bw:g} GB/s): bottleneck {rp.fmt_time(r.bottleneck_s)},"
            f" boundary bytes {rp.fmt_bytes(r.boundary_bytes_total)} per microbatch"
        )
        printer(rp.partition_table(costs, r.partition))


def _engine_check(tmp: Path, cfg: Mapping[str, Any], profile: Any, printer: Printer) -> list[str]:
    """Run uniform and dp_min_max on torch.distributed.pipelining (2 ranks) and compare with the simulator.

    Partitions: 2 stages over blocks of ``block_n`` layers, planned on ``profile`` (the
    representative microbatch size); schedules: gpipe and 1f1b where configured; the
    demo's microbatch counts and global batch. Writes ``engine_check.csv`` into ``tmp``
    and returns the engine module's summary lines.
    """
    from bubblereduce import engine, models
    from bubblereduce.profile import group_blocks

    blocks = group_blocks(profile, block_n=int(cfg["block_n"]))
    if len(blocks.names) < 2:
        raise ValueError(f"engine_check needs at least 2 blocks for 2 ranks, got {len(blocks.names)}")
    parts = engine.plan_engine_partitions(blocks, num_stages=2, strategies=("uniform", "dp_min_max"))
    schedules = [s for s in ("gpipe", "1f1b") if s in cfg["schedules"]] or ["1f1b"]
    widths = [int(w) for w in cfg["mlp_widths"]]
    printer(f"engine check: {', '.join(schedules)} on 2 gloo ranks, m = {list(cfg['microbatches'])} (slow)")
    rows = engine.engine_check(
        functools.partial(models.build_mlp, widths, seed=int(cfg["seed"])),  # picklable for spawn
        parts,
        schedules=schedules,
        microbatch_counts=list(cfg["microbatches"]),
        global_batch=int(cfg["global_batch"]),
        world=2,
        comm_mode=str(cfg["comm_mode"]),
        seed=int(cfg["seed"]),
        progress=lambda line: printer("  " + line),
    )
    engine.write_engine_check(tmp / "engine_check.csv", rows)
    return ["", *engine.engine_summary_lines(rows)]


# --------------------------------------------------------------------------- CLI


def cli_main(defaults: Mapping[str, Any], argv: Sequence[str], printer: Printer = print_flush) -> int:
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
