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

import sys

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



def main(argv: list[str] | None = None) -> int:
    """Run with ``--key=value`` overrides from ``argv`` (default: the command line); return the exit code."""
    from bubblereduce.config import script_knobs
    from bubblereduce.online_scenarios import cli_main

    return cli_main(script_knobs(globals()), sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
