"""Real-engine check: run uniform and dp_min_max partitions of the default MLP on
torch.distributed.pipelining (2 gloo processes on CPU, threads = 1 each) and compare the
measured step times with the simulator's predictions (measured link, same-condition profile).

Run from the repository root (about 1-2 minutes on 2 idle cores):

    python bench/engine_check.py                                # writes bench/engine_check.csv
    python bench/engine_check.py --out=figs/engine_check.csv --rounds=5

Prints the partitions, one table row per (strategy, schedule, microbatches) with measured
and predicted seconds per step, the relative error and the noise (IQR / median of the
timed steps), the summary lines, and the machine load before and after.
"""

from __future__ import annotations

import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# -----------------------------------------------------------------------------
mlp_widths = [1024, 2048, 1536, 4096, 1024, 3072, 512, 2048, 1024, 4096, 2048, 1024, 3072, 1536, 512, 2048, 1024]
# (the default MLP; e.g. --mlp_widths=1024,1024,1024,1024,1024,2048,2048,2048,4096,2048 is
#  skewed towards the output, so the uniform 2-stage split is clearly imbalanced)
global_batch = 128  # samples per training step, split into microbatches
microbatches = [2, 4, 8]  # microbatch counts (each divides global_batch; 1f1b needs >= 2)
schedules = ["gpipe", "1f1b"]
strategies = ["uniform", "dp_min_max"]
num_stages = 2  # = processes (one per core)
block_n = 1  # layers per partition block
plan_microbatches = 4  # partitions are planned on the profile at global_batch / plan_microbatches
warmup_steps = 1  # untimed steps per configuration
rounds = 5  # rounds of (profile once, steps_per_round timed steps of every configuration)
steps_per_round = 2
profile_repeats = 3  # timed repeats per layer in each round's profile
comm_mode = "overlap"
malloc_steady = False  # True: workers keep freed memory in the heap (see engine_worker.steady_malloc)
seed = 0
out = "bench/engine_check.csv"
# -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from bubblereduce.config import ConfigError, resolve_config
    from bubblereduce.engine import (
        ENGINE_CSV_HEADER,
        engine_check,
        engine_summary_lines,
        plan_engine_partitions,
        write_engine_check,
    )
    from bubblereduce.models import build_mlp, mlp_input
    from bubblereduce.profile import group_blocks, profile_sequential

    defaults = {k: v for k, v in globals().items() if k in _CONFIG_KEYS}
    try:
        cfg = resolve_config(defaults, sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"error: {exc}")
        return 2
    print("config:", cfg)
    t_start = time.perf_counter()
    load_before = os.getloadavg()

    widths = [int(w) for w in cfg["mlp_widths"]]
    model_fn = functools.partial(build_mlp, widths, seed=cfg["seed"])
    plan_mb = cfg["global_batch"] // cfg["plan_microbatches"]
    prof = profile_sequential(model_fn(), mlp_input(plan_mb, widths[0], seed=cfg["seed"]), threads=1,
                              repeats=cfg["profile_repeats"])
    blocks = group_blocks(prof, block_n=cfg["block_n"])
    partitions = plan_engine_partitions(blocks, cfg["num_stages"], cfg["strategies"])
    for name, ranges in partitions.items():
        f = [float(prof.forward_s[a:b].sum() + prof.backward_s[a:b].sum()) * 1e3 for a, b in ranges]
        print(f"partition {name:>10}: layers {ranges}  f+b per stage (ms, microbatch {plan_mb}): "
              + ", ".join(f"{x:.1f}" for x in f))

    rows = engine_check(
        model_fn, partitions, cfg["schedules"], cfg["microbatches"], cfg["global_batch"],
        warmup_steps=cfg["warmup_steps"], rounds=cfg["rounds"], steps_per_round=cfg["steps_per_round"],
        profile_repeats=cfg["profile_repeats"], comm_mode=cfg["comm_mode"], seed=cfg["seed"],
        malloc_steady=cfg["malloc_steady"],
        progress=print,
    )
    print()
    print(f"{'strategy':>10} {'schedule':>8} {'m':>3} {'measured_ms':>11} {'predicted_ms':>12} "
          f"{'error':>7} {'sim_only':>8} {'inrun_ms':>8} {'inrun_err':>9} {'noise':>6}")
    for r in rows:
        print(f"{r.strategy:>10} {r.schedule:>8} {r.microbatches:>3} {r.measured_s * 1e3:>11.1f} "
              f"{r.predicted_s * 1e3:>12.1f} {r.error:>+7.1%} {r.error_sim:>+8.1%} "
              f"{r.predicted_inrun_s * 1e3:>8.1f} {r.error_inrun:>+9.1%} {r.noise:>6.1%}")
    print()
    for line in engine_summary_lines(rows):
        print(line)
    print("per stage f+b of one microbatch, profile vs in run (ms):")
    for r in rows:
        pairs = ", ".join(f"{p * 1e3:.1f} vs {q * 1e3:.1f}" for p, q in zip(r.profile_stage_s, r.inrun_stage_s, strict=True))
        print(f"  {r.strategy:>10} {r.schedule:>6} m={r.microbatches:<2} {pairs}")
    write_engine_check(cfg["out"], rows)
    load_after = os.getloadavg()
    print(f"wrote {cfg['out']} ({len(rows)} rows, columns: {', '.join(ENGINE_CSV_HEADER[:10])}, ...)")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f} on "
          f"{os.cpu_count()} CPUs; wall {time.perf_counter() - t_start:.1f} s")
    return 0


_CONFIG_KEYS = (
    "mlp_widths", "global_batch", "microbatches", "schedules", "strategies", "num_stages", "block_n",
    "plan_microbatches", "warmup_steps", "rounds", "steps_per_round", "profile_repeats", "comm_mode", "malloc_steady", "seed", "out",
)

if __name__ == "__main__":
    raise SystemExit(main())
