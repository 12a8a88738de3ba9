"""Forward/backward imbalance compensation: does partitioning by Σ(f + α·b) beat Σ(f + b)?

Builds the main demo's MLP with activation recomputation on some layers (their
backward runs the forward again) and a wide output head, measures every layer's
forward and backward time at each microbatch size, partitions it with ``dp_min_max``
on ``f + α·b`` for a sweep of α (α = 1 is the usual ``f + b``), simulates every
schedule at every link bandwidth and microbatch count, and compares each α with the
schedule-aware search (the reference best). Writes figures, a CSV and a summary
with a verdict to ``figs_fb/``.

Run:

    python balance.py
    python balance.py --alpha=1.5 --schedules=gpipe,1f1b
    python balance.py --profile_path=figs_fb/profile.json   # repeat exactly

Every constant between the rulers below can be overridden as ``--key=value``;
``--help`` lists them. Bad input prints ``error: ...`` and exits with status 2.
"""

import sys

from bubblereduce.config import script_knobs
from bubblereduce.fb_balance import cli_main
from bubblereduce.models import DEFAULT_MLP_WIDTHS
from bubblereduce.schedules import SCHEDULES

# -----------------------------------------------------------------------------
# forward/backward compensation
alpha = 2.0  # compared partition: dp_min_max on per-block f + alpha * b (1.0 is the baseline f + b)
alphas = [0.0, 0.5, 1.0, 1.25, 1.5, 2.0, 3.0]  # the sweep, each compared with the schedule-aware best
# the pipeline
num_stages = 4  # devices in the pipeline
block_n = 2  # layers per block (partitions cut between blocks)
multi_stage_block_n = 1  # layers per block for schedules with 2 stages per device
stages_per_device = 2  # model stages per device for interleaved-1f1b (zbv, dualpipev: always 2)
schedules = list(SCHEDULES)  # gpipe, 1f1b, interleaved-1f1b, zb-h1, zb-h2, zbv, dualpipev
# the batch: m microbatches of global_batch / m samples each
global_batch = 256
microbatches = [4, 8, 16, 32]
# the links between devices: seconds per transfer = latency_s + bytes / (GB/s * 1e9)
bandwidths_GBps = [0.01, 0.1, 1.0]  # the main demo's links (scaled to CPU compute speed)
latency_s = 10e-6
comm_mode = "overlap"  # "overlap": transfers run beside compute; "blocking": they stall the sender
# the figures: stage loads and the alpha sweep are drawn for this configuration
representative_microbatches = 8
representative_bandwidth_GBps = 0.01
# the model: the demo MLP, some layers recomputed in backward, a wide output head
mlp_widths = list(DEFAULT_MLP_WIDTHS)  # feature widths: 16 Linear+ReLU layers
checkpoint_layers = [0, 1, 2, 3, 4, 5, 6, 7]  # MLP layers under torch.utils.checkpoint
head_width = 8192  # output layer: Linear(mlp_widths[-1], head_width) + LogSoftmax
# profiling
profile_path = None  # a saved profile.json: skip measuring, reproduce a run exactly
warmup = 1
repeats = 5
threads = 1  # torch threads while profiling (1: stable timings on a shared machine)
seed = 0
# outputs
out_dir = "figs_fb"
# -----------------------------------------------------------------------------



def main(argv: list[str] | None = None) -> int:
    """Run the experiment with ``--key=value`` overrides from ``argv`` (default: the command line); return the exit code."""
    return cli_main(script_knobs(globals()), sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
