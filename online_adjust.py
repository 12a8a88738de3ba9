"""Online boundary micro-adjustment vs a static pipeline partition (issue 7).

Profiles an MLP layer by layer (or loads a saved profile), plans a static
partition, then replays seeded noise / drift / straggler series of per-block
step costs and compares, on the same series, the static split, the online
controller (``bubblereduce.online``), a periodic full re-plan and two oracles.
Writes ``online_vs_static.csv``, three figures per scenario, ``summary.txt``
(with the issue's goals, met or not), ``config.json``, ``env.json`` and
``profile.json`` into ``out_dir``.

Run (about 30 s on 2 CPU cores, profiling included):

    python online_adjust.py
    python online_adjust.py --steps=2000 --schedule=gpipe --out_dir=figs_online_gpipe
    python online_adjust.py --profile_path=figs_online/profile.json   # reuse a profile

Every knob below can be overridden with ``--key=value``; ``--help`` lists them.
"""

from __future__ import annotations

import dataclasses
import sys
import time

# -----------------------------------------------------------------------------
# what to profile (ignored when profile_path is given)
profile_path = None  # a JSON written by bubblereduce.profile.save_profiles; None = profile now
mlp_repeats = 2  # the default MLP widths chained this many times (2 -> 32 layers, 8 per stage)
microbatch_size = 16  # samples per microbatch when profiling
block_n = 1  # layers per block (a move shifts whole blocks)
profile_threads = 1
profile_warmup = 1
profile_repeats = 3
# the experiment (bubblereduce.online.OnlineConfig)
scenarios = ["jitter", "drift", "straggler"]
steps = 1000
num_seeds = 5
seed = 0
num_stages = 4
microbatches = 8
schedule = "1f1b"  # any of bubblereduce.schedules.SCHEDULES
planner = "schedule_aware"  # or "dp_min_max": how static, periodic and the regime oracle plan
bandwidth_GBps = 10.0
jitter_sigma = 0.05  # per-block, per-step lognormal noise
drift_strength = 0.3  # up to +30 % on some blocks by the end of a drift run
straggler_factor = 1.3  # one stage's blocks 1.3x slower ...
straggler_start_frac = 0.3  # ... from 30 % of the run ...
straggler_duration_frac = 0.4  # ... for 40 % of the steps
roll_window = 20
cooldown_steps = 10
rollback_patience = 10
improve_epsilon = 0.005  # a plan must gain >= 0.5 % of the step time
significance_z = 3.5
payback_horizon_steps = 100
payback_factor = 2.0
mem_threshold_ratio = 0.9
device_memory_bytes = 0.0  # 0 = 1.5 x the static plan's largest device
pcie_threshold_ratio = 0.8
replan_every_steps = 100
migration_bytes_per_param = 12.0  # fp32 Adam: 4 B weight + 8 B moments
migration_setup_s = 0.1
profile_bytes_per_param = 4.0  # fp32 profile
state_bytes_per_param = 16.0  # weights + grads + 2 Adam moments, for the memory guard
out_dir = "figs_online"
plot_scenario = "straggler"  # its figures get the plain file names
# -----------------------------------------------------------------------------

DEFAULTS = {k: v for k, v in dict(globals()).items() if not k.startswith("_") and k not in (
    "annotations", "dataclasses", "sys", "time")}


def main(argv: list[str] | None = None) -> int:
    """Resolve the config, profile (or load), run every scenario and seed, write the outputs."""
    from bubblereduce.config import format_config, resolve_config
    from bubblereduce.io import (
        StagedOutput,
        atomic_write_text,
        environment_info,
        write_csv,
        write_json,
    )
    from bubblereduce.online import OnlineConfig, model_from_blocks
    from bubblereduce.online_scenarios import (
        CSV_HEADER,
        csv_rows,
        run_experiment,
        summarize,
        summary_text,
        write_figures,
    )
    from bubblereduce.profile import group_blocks, load_profiles, profile_for_size, save_profiles

    t0 = time.perf_counter()
    cfg_dict = resolve_config(DEFAULTS, sys.argv[1:] if argv is None else argv)
    print(format_config(cfg_dict))
    fields = {f.name for f in dataclasses.fields(OnlineConfig)}
    cfg = OnlineConfig(**{k: (tuple(v) if k == "scenarios" else v) for k, v in cfg_dict.items() if k in fields})
    if cfg_dict["plot_scenario"] not in cfg.scenarios:
        raise ValueError(f"plot_scenario {cfg_dict['plot_scenario']!r} is not among scenarios {list(cfg.scenarios)}")
    for key in ("mlp_repeats", "microbatch_size", "block_n", "profile_threads", "profile_repeats"):
        if cfg_dict[key] < 1:
            raise ValueError(f"{key} must be >= 1, got {cfg_dict[key]!r}")

    if cfg_dict["profile_path"] is not None:
        profiles = load_profiles(str(cfg_dict["profile_path"]))
        prof = profiles[0] if len(profiles) == 1 else profile_for_size(profiles, cfg_dict["microbatch_size"])
        source = f"profile loaded from {cfg_dict['profile_path']}"
    else:
        from bubblereduce.models import DEFAULT_MLP_WIDTHS, build_mlp, mlp_input
        from bubblereduce.profile import profile_sequential

        widths = DEFAULT_MLP_WIDTHS + DEFAULT_MLP_WIDTHS[1:] * (cfg_dict["mlp_repeats"] - 1)
        print(f"profiling an MLP of {len(widths) - 1} layers at microbatch size {cfg_dict['microbatch_size']} ...",
              flush=True)
        prof = profile_sequential(
            build_mlp(widths, seed=0), mlp_input(cfg_dict["microbatch_size"], widths[0], seed=0),
            warmup=cfg_dict["profile_warmup"], repeats=cfg_dict["profile_repeats"],
            threads=cfg_dict["profile_threads"], model_name=f"mlp x{cfg_dict['mlp_repeats']}",
        )
        source = (f"profiled now: default MLP widths chained x{cfg_dict['mlp_repeats']} ({len(widths) - 1} layers), "
                  f"microbatch {cfg_dict['microbatch_size']}, {prof.meta.threads} thread(s), median of "
                  f"{cfg_dict['profile_repeats']}")
    blocks = group_blocks(prof, block_n=cfg_dict["block_n"])
    model = model_from_blocks(blocks, cfg)
    print(f"{source}; {blocks.num_blocks} blocks, f+b per microbatch "
          f"{1e3 * float(model.forward_s.sum() + model.backward_s.sum()):.2f} ms ({time.perf_counter() - t0:.1f} s)",
          flush=True)

    runs = run_experiment(model, progress=lambda line: print(line, flush=True))
    summary = summarize(runs, cfg)
    cap = runs[0].capacity_bytes
    cap_note = ("1.5 x the static plan's largest device" if cfg.device_memory_bytes == 0 else "device_memory_bytes")
    text = summary_text(summary, cfg, model_note=(
        f"model: {source}; {blocks.num_blocks} blocks; memory guard capacity {cap / 1e9:.3f} GB per device "
        f"({cap_note}) x {cfg.mem_threshold_ratio:g}"))
    with StagedOutput(cfg_dict["out_dir"]) as tmp:
        write_csv(tmp / "online_vs_static.csv", CSV_HEADER, csv_rows(runs))
        write_figures(runs, cfg, tmp, cfg_dict["plot_scenario"])
        atomic_write_text(tmp / "summary.txt", text)
        write_json(tmp / "config.json", cfg_dict)
        write_json(tmp / "env.json", environment_info())
        save_profiles(tmp / "profile.json", [prof])
    print(text)
    print(f"wrote {cfg_dict['out_dir']}/ (online_vs_static.csv, figures, summary.txt, config.json, env.json, "
          f"profile.json) in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    from bubblereduce.config import run_main

    raise SystemExit(run_main(main))
