"""Bubble and memory per pipeline schedule, measured by the simulator (markdown table).

Every schedule in ``bubblereduce.schedules.SCHEDULES`` is planned with ``dp_min_max``
on per-layer costs (``p`` stages, or ``p x v`` for interleaved-1f1b / zbv / dualpipev)
and simulated for ``m`` microbatches. Costs come from a saved profile (the main demo's
``figs/profile.json``; the microbatch size ``global_batch / m`` is picked from it), from
a fresh profile of the default MLP at that size when the file is missing, or from
uniform synthetic layers with ``--synthetic=True``. Run from the repository root:

    python bench/schedule_table.py                        # p=4 devices, m=8 microbatches
    python bench/schedule_table.py --p=8 --m=16 --synthetic=True
    python bench/schedule_table.py --bandwidth_GBps=10    # add boundary transfers
    python bench/schedule_table.py --speed=True           # also time 64 devices x 1024 mb

Peak activation memory per device is an estimate from the order: the most bytes held at
once by microbatches whose F has run on the device and whose B (or I) has not finished,
each (stage, microbatch) holding the sum of its stage's layer outputs (a W's saved
inputs are not counted).
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

if TYPE_CHECKING:
    from bubblereduce.experiment import BlockCosts

# -----------------------------------------------------------------------------
profile = "figs/profile.json"  # saved profile (list of microbatch sizes); profiled if missing
synthetic = False  # uniform layers: f = 1 ms, b = 2 ms (w = 1 ms), 1 MiB output each
p = 4  # devices
m = 8  # microbatches
global_batch = 256  # samples per step: microbatch size = global_batch / m (the demo's default)
interleaved_v = 2  # stages per device for interleaved-1f1b
bandwidth_GBps = None  # None: no communication; else link GB/s (plus latency_s per transfer)
latency_s = 10e-6
comm_mode = "overlap"
profile_repeats = 3  # only used when the profile must be measured
seed = 0
speed = False  # also print build + simulate seconds at speed_p devices x speed_m microbatches
speed_p = 64
speed_m = 1024
speed_repeats = 5
# -----------------------------------------------------------------------------

__all__ = ["stage_act_bytes", "peak_act_bytes", "schedule_rows", "markdown_table", "main"]


def stage_act_bytes(act_bytes: Sequence[int], parts: Sequence[tuple[int, int]]) -> list[int]:
    """Bytes one microbatch leaves stored on each stage: the sum of its blocks' outputs."""
    return [int(sum(act_bytes[a:b])) for a, b in parts]


def peak_act_bytes(order: Sequence[Sequence[tuple[str, int, int]]], stage_bytes: Sequence[int]) -> list[int]:
    """Per device, the most activation bytes in flight at once (F run, B/I not finished).

    A device runs its list sequentially, so scanning the order is exact for this model:
    an F adds its stage's ``stage_bytes`` when it runs, a B or I frees them when it ends.
    """
    peaks = []
    for dev in order:
        level = top = 0
        for kind, stage, _ in dev:
            if kind == "F":
                level += stage_bytes[stage]
                top = max(top, level)
            elif kind in ("B", "I"):
                level -= stage_bytes[stage]
        peaks.append(top)
    return peaks


def _costs(cfg: dict[str, Any]) -> tuple[BlockCosts, str]:
    from bubblereduce import experiment as ex

    if cfg["synthetic"]:
        n = cfg["p"] * math.lcm(2, cfg["interleaved_v"])  # every schedule splits it evenly
        costs = ex.BlockCosts(
            names=tuple(f"layer{k}" for k in range(n)),
            forward_s=np.full(n, 1e-3),
            backward_s=np.full(n, 2e-3),
            weight_s=np.full(n, 1e-3),
            act_bytes=np.full(n, 2**20, dtype=np.int64),
            microbatch_size=1,
            block_n=1,
        )
        return costs, f"synthetic: {n} uniform layers, f = 1 ms, b = 2 ms (i = w = 1 ms), 1 MiB out"
    from bubblereduce.profile import load_profiles, profile_for_size

    size = cfg["global_batch"] // cfg["m"]
    if cfg["global_batch"] % cfg["m"]:
        raise ValueError(f"m ({cfg['m']}) must divide global_batch ({cfg['global_batch']})")
    if os.path.exists(cfg["profile"]):
        prof = profile_for_size(load_profiles(cfg["profile"]), size)
        where = cfg["profile"]
    else:
        from bubblereduce.models import build_mlp, mlp_input
        from bubblereduce.profile import profile_sequential

        print(f"{cfg['profile']} not found: profiling the default MLP at microbatch size {size} ...")
        prof = profile_sequential(build_mlp(seed=cfg["seed"]), mlp_input(size, seed=cfg["seed"]),
                                  repeats=cfg["profile_repeats"], seed=cfg["seed"], model_name="mlp")
        where = "fresh profile"
    meta = prof.meta
    return ex.block_costs(prof, 1), (
        f"{where}: {meta.model}, {len(prof.layers)} layers, microbatch {meta.microbatch_size} samples, "
        f"{meta.device}, {meta.threads} threads, torch {meta.torch_version}"
    )


def schedule_rows(cfg: dict[str, Any], costs: BlockCosts) -> list[dict[str, Any]]:
    """Plan (dp_min_max on f + b) and simulate every schedule; one dict of numbers per schedule."""
    from bubblereduce import experiment as ex
    from bubblereduce.partition import dp_min_max
    from bubblereduce.schedules import SCHEDULES, build_order

    rows = []
    for name in SCHEDULES:
        v = ex.model_stages_per_device(name, cfg["interleaved_v"])
        n_stages = cfg["p"] * v
        try:
            build_order(name, n_stages, cfg["m"], v)
        except ValueError as exc:
            rows.append({"schedule": name, "v": v, "skipped": str(exc)})
            continue
        bw = cfg["bandwidth_GBps"]
        comm = costs.comm_s(bw, cfg["latency_s"]) if bw is not None else np.zeros(costs.num_blocks)
        parts = dp_min_max(costs.cost_s, comm, n_stages)
        result = ex.simulate_partition(name, costs, parts, cfg["m"], bandwidth_GBps=bw,
                                       latency_s=cfg["latency_s"], comm_mode=cfg["comm_mode"],
                                       stages_per_device=v)
        mem = peak_act_bytes(build_order(name, n_stages, cfg["m"], v), stage_act_bytes(costs.act_bytes, parts))
        rows.append({"schedule": name, "v": v, "makespan_s": result.makespan,
                     "bubble_fraction": result.bubble_fraction,
                     "peak_inflight": max(result.peak_inflight), "peak_act_bytes": mem})
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a markdown table (makespan in ms, memory in MiB per device d0/d1/...)."""
    out = ["| schedule | stages/device | makespan (ms) | bubble | max peak in-flight (microbatches) "
           "| peak activation memory per device (MiB) |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            out.append(f"| `{r['schedule']}` | {r['v']} | - | - | - | skipped: {r['skipped']} |")
            continue
        mem = " / ".join(f"{x / 2**20:.1f}" for x in r["peak_act_bytes"])
        out.append(f"| `{r['schedule']}` | {r['v']} | {r['makespan_s'] * 1e3:.2f} | "
                   f"{r['bubble_fraction']:.1%} | {r['peak_inflight']:g} | {mem} |")
    return "\n".join(out)


def _speed_table(cfg: dict[str, Any]) -> str:
    from bubblereduce.schedules import NEEDS_W, SCHEDULES, build_order
    from bubblereduce.simulate import simulate

    P, M = cfg["speed_p"], cfg["speed_m"]
    out = [f"speed: {P} devices x {M} microbatches, median of {cfg['speed_repeats']} runs "
           "(simulate includes building the order)",
           "| schedule | actions | build_order (s) | simulate (s) |", "|---|---|---|---|"]
    for name in SCHEDULES:
        v = 2 if name in ("zbv", "dualpipev", "interleaved-1f1b") else 1
        n = P * v
        f, b = np.full(n, 1e-3), np.full(n, 2e-3)
        w = np.full(n, 1e-3) if name in NEEDS_W else None
        build, run = [], []
        for _ in range(cfg["speed_repeats"]):
            t0 = time.perf_counter()
            order = build_order(name, n, M, v)
            t1 = time.perf_counter()
            simulate(name, f, b, M, w=w, stages_per_device=v)
            t2 = time.perf_counter()
            build.append(t1 - t0)
            run.append(t2 - t1)
        actions = sum(len(dev) for dev in order)
        out.append(f"| `{name}` | {actions} | {statistics.median(build):.3f} | {statistics.median(run):.3f} |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the schedule table (and, with ``--speed=True``, the speed table); returns 0."""
    from bubblereduce.config import format_config, resolve_config

    defaults = {k: globals()[k] for k in (
        "profile", "synthetic", "p", "m", "global_batch", "interleaved_v", "bandwidth_GBps",
        "latency_s", "comm_mode", "profile_repeats", "seed", "speed", "speed_p", "speed_m",
        "speed_repeats")}
    cfg = resolve_config(defaults, sys.argv[1:] if argv is None else argv)
    print(format_config(cfg))
    costs, source = _costs(cfg)
    comm = "no communication" if cfg["bandwidth_GBps"] is None else (
        f"links {cfg['bandwidth_GBps']:g} GB/s + {cfg['latency_s'] * 1e6:g} us, {cfg['comm_mode']}")
    print(f"\ncosts: {source}")
    print(f"p = {cfg['p']} devices, m = {cfg['m']} microbatches, dp_min_max partition on f + b, {comm}\n")
    print(markdown_table(schedule_rows(cfg, costs)))
    if cfg["speed"]:
        print()
        print(_speed_table(cfg))
    return 0


if __name__ == "__main__":
    from bubblereduce.config import run_main

    raise SystemExit(run_main(main))
