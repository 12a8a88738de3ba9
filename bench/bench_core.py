"""Speed of the core: exact partitioners and the schedule simulator (median milliseconds).

Partitioners run on synthetic blocks (log-normal costs, uniform cut costs, fixed
seed) for n in {1,000, 2,048, 10,000} blocks and p in {8, 64, 128} stages. The
baseline, measured in the same process, is the textbook O(p·n²) min-max DP
(numpy-vectorised over start blocks, bottleneck only, no cut-cost pass): the bench
checks that it finds the same bottleneck as ``min_bottleneck`` and prints the
speedup of ``dp_min_max`` over it. A memory-constrained row uses 1F1B in-flight
counts. Simulator rows time ``simulate`` (order building included) for 1F1B and
GPipe at p = 64, m = 1,024 and ZB-H1 / ZB-V at 64 devices, 1,024 microbatches.
Run from the repository root:

    python bench/bench_core.py            # full table (about a minute)
    python bench/bench_core.py --quick    # smaller sizes, 3 repeats
    python bench/bench_core.py --repeats=9 --seed=1
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from bubblereduce import partition  # noqa: E402

# -----------------------------------------------------------------------------
quick = False  # smaller sizes and 3 repeats (also accepted as a bare --quick)
repeats = 5  # timed runs per cell; the table shows the median
seed = 0
sizes = [1000, 2048, 10000]  # blocks n
stages = [8, 64, 128]  # stages p
baseline_max_n = 2048  # plain O(p·n²) DP only up to this n (it is the slow one)
slack = 0.1  # for dp_slack
sim_devices = 64
sim_microbatches = 1024
# -----------------------------------------------------------------------------

__all__ = ["median_seconds", "plain_min_max_dp", "partition_rows", "simulator_rows", "main"]

TARGET_DP_S = 0.25  # n = 10,000, p = 128 (issue 2)
TARGET_SIM_S = {"1f1b": 0.1, "gpipe": 0.1, "zb-h1": 0.2, "zbv": 0.2}


def median_seconds(fn: Callable[..., Any], repeats: int, *args: Any, **kwargs: Any) -> float:
    """Median wall-clock seconds of ``repeats`` calls ``fn(*args, **kwargs)`` (after a warm-up)."""
    fn(*args, **kwargs)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def plain_min_max_dp(costs: np.ndarray, num_stages: int) -> float:
    """Textbook O(p·n²) min-max DP (the baseline): best[k][j] over all starts i.

    ``best_k(j) = min_i max(best_{k-1}(i), P[j] - P[i])``, one n×n matrix per stage.
    Returns the minimum bottleneck in the unit of ``costs``.
    """
    n = costs.size
    prefix = np.concatenate(([0.0], np.cumsum(costs)))
    span = prefix[None, :] - prefix[:, None]  # span[i, j] = cost of [i, j)
    span[np.tril_indices(n + 1)] = np.inf  # need i < j
    best = prefix.copy()  # one stage covering [0, j)
    best[0] = np.inf
    for _ in range(1, num_stages):
        best = np.maximum(best[:, None], span).min(axis=0)
    return float(best[n])


def _blocks(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.lognormal(0.0, 0.7, n), rng.uniform(0.0, 1.0, n)


def _memory(n: int, p: int, seed: int, costs: np.ndarray) -> partition.StageMemory:
    """1F1B-style memory: weights ∝ cost, activations random, capacity 1.3x the minimum."""
    rng = np.random.default_rng(seed + 1)
    pers = np.round(costs * 4e6)
    act = rng.integers(100_000, 1_000_000, n).astype(float)
    inflight = np.arange(p, 0, -1, dtype=float)  # 1F1B: p - k microbatches on stage k
    probe = partition.StageMemory(pers, act, inflight, 0.0)
    try:
        partition.min_bottleneck(costs, p, memory=probe)
        need = 0.0
    except partition.MemoryCapacityError as exc:
        need = exc.min_capacity_bytes
    return partition.StageMemory(pers, act, inflight, 1.3 * need)


def partition_rows(cfg: dict[str, Any]) -> list[list[str]]:
    """One row per (n, p): median seconds of each partitioner and the baseline speedup."""
    rows = []
    for n in cfg["sizes"]:
        costs, comm = _blocks(n, cfg["seed"])
        for p in cfg["stages"]:
            if p > n:
                continue
            r = cfg["repeats"]
            t = {
                "uniform": median_seconds(partition.uniform, r, costs, comm, p),
                "greedy": median_seconds(partition.greedy, r, costs, comm, p),
                "min_bottleneck": median_seconds(partition.min_bottleneck, r, costs, p),
                "dp_min_max": median_seconds(partition.dp_min_max, r, costs, comm, p),
                "dp_slack": median_seconds(partition.dp_slack, r, costs, comm, p, cfg["slack"]),
            }
            base_s = speedup = "n/a"
            if n <= cfg["baseline_max_n"]:
                b_plain = plain_min_max_dp(costs, p)
                b_fast = partition.min_bottleneck(costs, p)
                assert abs(b_plain - b_fast) <= 1e-9 * b_plain, (n, p, b_plain, b_fast)
                base = median_seconds(plain_min_max_dp, min(r, 3), costs, p)
                base_s, speedup = _ms(base), f"{base / t['dp_min_max']:.0f}x"
            rows.append([str(n), str(p)] + [_ms(v) for v in t.values()] + [base_s, speedup])
    n, p = max(cfg["sizes"]), max(cfg["stages"])
    costs, comm = _blocks(n, cfg["seed"])
    mem = _memory(n, p, cfg["seed"], costs)
    t_mem = median_seconds(partition.dp_min_max, cfg["repeats"], costs, comm, p, memory=mem)
    rows.append([str(n), str(p), "-", "-", "-", _ms(t_mem), "-", "-", "-",
                 "with 1F1B memory limit"])
    return rows


def simulator_rows(cfg: dict[str, Any]) -> list[list[str]]:
    """Median seconds of ``simulate`` per schedule; 'n/a: reason' if it is unavailable."""
    devices, m = cfg["sim_devices"], cfg["sim_microbatches"]
    rows = []
    for name, per_device in (("1f1b", 1), ("gpipe", 1), ("zb-h1", 1), ("zbv", 2)):
        stages_n = devices * per_device
        target = TARGET_SIM_S[name] if (devices, m) == (64, 1024) else None
        try:
            from bubblereduce.simulate import simulate

            rng = np.random.default_rng(cfg["seed"])
            f = rng.uniform(1.0, 2.0, stages_n) * 1e-3
            b = 2 * f
            w = f if name in ("zb-h1", "zbv") else None
            comm = np.full(stages_n - 1, 1e-4)

            sim_s = median_seconds(simulate, cfg["repeats"], name, f, b, m, comm=comm, w=w,
                                   stages_per_device=per_device)
            cell = _ms(sim_s)
        except Exception as exc:  # the simulator or a schedule may not exist yet
            cell = f"n/a: {type(exc).__name__}: {exc}"[:70]
        rows.append([name, str(devices), str(m), cell, "-" if target is None else _ms(target)])
    return rows


def _ms(seconds: float) -> str:
    """Milliseconds with three significant digits."""
    return f"{seconds * 1e3:.3g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows if i < len(r))) for i, h in enumerate(header)]
    line = "| " + " | ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    body = [
        "| " + " | ".join(c.rjust(w) for c, w in zip(list(r) + [""] * (len(header) - len(r)),
                                                        widths, strict=True)) + " |"
        for r in rows
    ]
    return "\n".join([line, sep, *body])


def main(argv: Sequence[str] | None = None) -> int:
    """Print the partitioner and simulator tables; returns 0."""
    from bubblereduce.config import format_config, resolve_config

    args = list(sys.argv[1:] if argv is None else argv)
    args = ["--quick=True" if a == "--quick" else a for a in args]
    defaults = {k: globals()[k] for k in (
        "quick", "repeats", "seed", "sizes", "stages", "baseline_max_n", "slack",
        "sim_devices", "sim_microbatches")}
    cfg = resolve_config(defaults, args)
    if cfg["quick"]:
        cfg.update(repeats=min(cfg["repeats"], 3), sizes=[1000, 2048], stages=[8, 64],
                   baseline_max_n=1000, sim_microbatches=256)
    print(format_config(cfg))
    print(f"\nnumpy {np.__version__}, {os.cpu_count()} CPUs, "
          f"median of {cfg['repeats']} repeats, milliseconds\n")
    print(f"Partitioners, ms (target: dp_min_max and dp_slack <= {_ms(TARGET_DP_S)} ms at n=10000, "
          f"p=128; baseline = plain O(p·n²) min-max DP):\n")
    header = ["n", "p", "uniform", "greedy", "min_bottleneck", "dp_min_max",
              f"dp_slack({cfg['slack']:g})", "plain DP", "speedup", "note"]
    rows = partition_rows(cfg)
    print(_table(header, [r + [""] * (len(header) - len(r)) for r in rows]))
    print("\nSimulator, ms (simulate(), order building included):\n")
    print(_table(["schedule", "devices", "microbatches", "median ms", "target ms"],
                 simulator_rows(cfg)))
    return 0


if __name__ == "__main__":
    from bubblereduce.config import run_main

    raise SystemExit(run_main(main))
