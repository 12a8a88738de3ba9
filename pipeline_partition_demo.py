"""Main demo: how much does communication-aware partitioning shrink pipeline bubbles?

Profiles the default MLP layer by layer at every microbatch size (a fixed global
batch split into m microbatches), partitions it into pipeline stages with five
strategies (uniform, greedy, dp_min_max, dp_slack, schedule_aware), simulates every
strategy x schedule x microbatch count x link bandwidth, and writes figures, a CSV,
Chrome traces and a summary to ``figs/``.

Run:

    python pipeline_partition_demo.py
    python pipeline_partition_demo.py --num_stages=2 --bandwidths_GBps=1,100
    python pipeline_partition_demo.py --profile_path=figs/profile.json   # repeat exactly

Every constant between the rulers below can be overridden as ``--key=value``;
``--help`` lists them. Bad input prints ``error: ...`` and exits with status 2.
"""

import sys

from bubblereduce.config import script_knobs
from bubblereduce.demo import cli_main
from bubblereduce.models import DEFAULT_MLP_WIDTHS
from bubblereduce.schedules import SCHEDULES

# -----------------------------------------------------------------------------
# the pipeline
num_stages = 4  # devices in the pipeline
block_n = 2  # layers per block (partitions cut between blocks); 1 is finer
multi_stage_block_n = 1  # layers per block for schedules with 2 stages per device
stages_per_device = 2  # model stages per device for interleaved-1f1b (zbv, dualpipev: always 2)
schedules = list(SCHEDULES)  # gpipe, 1f1b, interleaved-1f1b, zb-h1, zb-h2, zbv, dualpipev
# the batch: m microbatches of global_batch / m samples each
global_batch = 256
microbatches = [4, 8, 16, 32]
# the links between devices: seconds per transfer = latency_s + bytes / (GB/s * 1e9)
bandwidths_GBps = [0.01, 0.1, 1.0]  # scaled to CPU compute speed: see the README
latency_s = 10e-6
comm_mode = "overlap"  # "overlap": transfers run beside compute; "blocking": they stall the sender
# the partitioners
alpha = 1.0  # greedy: penalty per second of boundary transfer
slack = 0.1  # dp_slack: bottleneck may exceed the optimum by this fraction to save traffic
# the figures: timelines are drawn for this configuration
representative_microbatches = 8
representative_bandwidth_GBps = 0.01
# profiling
model = "mlp"  # "mlp", or "gpt": a GPT-style decoder (knobs below; samples are sequences)
gpt_preset = "tiny"  # tiny, gpt-125m, 7b, 70b, 175b (bubblereduce/gpt.py cites their sources)
gpt_layers = None  # None: the preset's value (same for the next four)
gpt_hidden = None
gpt_heads = None
gpt_seq_len = None
gpt_vocab = None
gpt_split_sublayers = False  # attention and MLP sub-blocks as separate layers
profile_source = "measured"  # "measured" here, or "analytic": FLOPs/bytes on device_preset
device_preset = "h100-sxm"  # analytic profiles: a100-80gb, h100-sxm, h200, mi300x, l4
memory_capacity_GB = None  # GPT: per-device memory cap for the memory-aware partition (None: none)
optimizer = "adam-mixed"  # bytes per parameter of weights + grads + optimizer state (memory.py)
mlp_widths = list(DEFAULT_MLP_WIDTHS)  # feature widths: 16 Linear+ReLU layers
profile_path = None  # a saved profile.json: skip measuring, reproduce a run exactly
warmup = 1
repeats = 5
threads = 1  # torch threads while profiling (None: torch's default)
seed = 0
# outputs
out_dir = "figs"
engine_check = False  # also run the partitions on torch.distributed.pipelining (slow)
# -----------------------------------------------------------------------------



def main(argv: list[str] | None = None) -> int:
    """Run the demo with ``--key=value`` overrides from ``argv`` (default: the command line); return the exit code."""
    return cli_main(script_knobs(globals()), sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
