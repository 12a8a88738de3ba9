"""Plan 7B- and 70B-parameter GPT configurations on 8-64 pipeline stages without the hardware.

For each preset the layers are counted once on the meta device (no memory),
timed with a device preset (analytic profile, efficiency assumptions of
``bubblereduce.analytic``), and for each stage count the practitioner splits
(even, Megatron-style, torchtitan-style), the exact ``dp_min_max`` and the exact
memory-aware ``dp_min_max+memory`` (capacity = the device's memory) are
simulated under 1F1B with ``microbatches`` microbatches of ``microbatch_size``
sequences over the link preset. Memory per stage: weights + gradients +
optimizer state (``optimizer`` bytes per parameter) + stored activations x the
schedule's peak in-flight microbatches; pure pipeline parallelism (no tensor or
data parallelism, no activation recomputation). Prints one table per
configuration and the wall time of each plan. Run from the repository root:

    python bench/plan_large.py
    python bench/plan_large.py --presets=70b --stages=16,32 --device=mi300x --link=nvlink4
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bubblereduce.analytic import (  # noqa: E402
    count_layers,
    device_preset,
    link_preset,
    profile_from_counts,
)
from bubblereduce.config import format_config, resolve_config, run_main  # noqa: E402
from bubblereduce.gpt import gpt_config, gpt_layer_kinds, gpt_param_count  # noqa: E402
from bubblereduce.memory import compare_partitions  # noqa: E402

DEFAULTS = {
    "presets": ["7b", "70b"],
    "stages": [8, 16, 32, 64],
    "microbatches": 128,
    "microbatch_size": 1,  # sequences per microbatch
    "split_sublayers": False,
    "device": "h100-sxm",
    "link": "ib-ndr",
    "optimizer": "adam-mixed",
    "capacity_GB": None,  # None: the device's memory
    "efficiency": 0.6,
}


def main() -> int:
    """Print one planning table per preset x stage count; return 0."""
    cfg = resolve_config(DEFAULTS, sys.argv[1:])
    print(format_config(cfg))
    dev = device_preset(cfg["device"])
    link = link_preset(cfg["link"])
    cap_GB = dev.memory_GB if cfg["capacity_GB"] is None else float(cfg["capacity_GB"])
    for key in cfg["presets"]:
        t0 = time.perf_counter()
        gcfg = gpt_config(key, split_sublayers=cfg["split_sublayers"])
        counts = count_layers(gcfg, cfg["microbatch_size"])
        prof = profile_from_counts(counts, dev, gcfg.dtype, cfg["microbatch_size"],
                                   model_name=gcfg.name, efficiency=float(cfg["efficiency"]))
        t_count = time.perf_counter() - t0
        print(f"\n## {gcfg.name}: {gpt_param_count(gcfg) / 1e9:.1f}e9 parameters, "
              f"{len(counts)} layers, {gcfg.dtype} on {dev.name}, link {link.name} "
              f"({link.bandwidth_GBps:g} GB/s); counted and timed in {t_count:.2f} s")
        for p in cfg["stages"]:
            if p > len(counts):
                print(f"\n{p} stages: skipped, the model has only {len(counts)} layers")
                continue
            t1 = time.perf_counter()
            cmp = compare_partitions(
                prof, gpt_layer_kinds(gcfg), [c.saved_bytes for c in counts],
                [c.param_count for c in counts], p, int(cfg["microbatches"]), schedule="1f1b",
                bandwidth_GBps=link.bandwidth_GBps, latency_s=link.latency_s,
                bytes_per_param=cfg["optimizer"], capacity_bytes=cap_GB * 1e9)
            dt = time.perf_counter() - t1
            print(f"\n{p} stages, 1F1B, m = {cfg['microbatches']}, capacity {cap_GB:g} GB "
                  f"(smallest that any partition fits: {cmp.min_capacity_bytes / 1e9:.1f} GB); "
                  f"planned in {dt:.2f} s")
            print("| strategy | bottleneck ms | step s | bubble | peak memory GB | fits |")
            print("|---|---:|---:|---:|---:|:---:|")
            for r in cmp.reports:
                print(f"| {r.strategy} | {r.bottleneck_s * 1e3:.2f} | {r.makespan_s:.3f} | "
                      f"{r.bubble_fraction * 100:.1f} % | {r.peak_memory_bytes / 1e9:.1f} | "
                      f"{'yes' if r.fits else 'no'} |")
            if cmp.report("dp_min_max+memory") is None:
                print(f"no partition fits {cap_GB:g} GB: more stages, recomputation or sharding needed")
        print(f"\n{gcfg.name}: all plans in {time.perf_counter() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
