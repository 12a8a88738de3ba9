"""GPipe and 1F1B orders (semantics.md §3): one stage per device, stage s on device s.

Orders only; ``bubblereduce.simulate`` times them. For p = 3 devices, m = 4 microbatches::

    gpipe                                1f1b
    d0: F0 F1 F2 F3 B0 B1 B2 B3          d0: F0 F1 F2 B0 F3 B1 B2 B3
    d1: F0 F1 F2 F3 B0 B1 B2 B3          d1: F0 F1 B0 F2 B1 F3 B2 B3
    d2: F0 F1 F2 F3 B0 B1 B2 B3          d2: F0 B0 F1 B1 F2 B2 F3 B3
"""

from __future__ import annotations

from bubblereduce.schedules import Order
from bubblereduce.schedules.runs import OrderArrays, Runs, check_sizes, expand_arrays, expand_lists

__all__ = ["gpipe", "one_f_one_b", "gpipe_arrays", "one_f_one_b_arrays", "one_f_one_b_runs"]


def gpipe(num_devices: int, microbatches: int, stages_per_device: int = 1) -> Order:
    """GPipe order: on every device all forwards ``F0..F(m-1)``, then all backwards ``B0..B(m-1)``.

    ``num_devices`` = number of stages (stage s on device s), ``microbatches`` = m >= 1.
    Returns one list of ``(kind, stage, microbatch)`` actions per device. Raises
    ``ValueError`` for non-positive sizes or ``stages_per_device != 1``.
    """
    check_sizes("gpipe", num_devices, microbatches, stages_per_device, required_stages_per_device=1,
                hint=" (one stage per device; use \'interleaved-1f1b\' for several)")
    return expand_lists(_gpipe_runs(num_devices, microbatches), microbatches)


def one_f_one_b(num_devices: int, microbatches: int, stages_per_device: int = 1) -> Order:
    """1F1B (PipeDream-Flush / Megatron) order, stage s on device s.

    Device s runs ``min(p - s - 1, m)`` warm-up forwards, then alternates one ``F`` and
    one ``B`` while forwards remain (steady state), then the remaining ``B`` s (cool-down).
    ``p = num_devices``, ``m = microbatches``; returns one action list per device.
    Raises ``ValueError`` for non-positive sizes or ``stages_per_device != 1``.
    """
    check_sizes("1f1b", num_devices, microbatches, stages_per_device, required_stages_per_device=1,
                hint=" (one stage per device; use \'interleaved-1f1b\' for several)")
    return expand_lists(_one_f_one_b_order_runs(num_devices, microbatches), microbatches)


def gpipe_arrays(num_devices: int, microbatches: int, stages_per_device: int = 1) -> OrderArrays:
    """``gpipe``'s order as flat arrays (``OrderArrays``), built without Python tuples; same errors."""
    check_sizes("gpipe", num_devices, microbatches, stages_per_device, required_stages_per_device=1,
                hint=" (one stage per device; use \'interleaved-1f1b\' for several)")
    return expand_arrays(_gpipe_runs(num_devices, microbatches), microbatches)


def one_f_one_b_arrays(num_devices: int, microbatches: int, stages_per_device: int = 1) -> OrderArrays:
    """``one_f_one_b``'s order as flat arrays (``OrderArrays``), built without Python tuples; same errors."""
    check_sizes("1f1b", num_devices, microbatches, stages_per_device, required_stages_per_device=1,
                hint=" (one stage per device; use \'interleaved-1f1b\' for several)")
    return expand_arrays(_one_f_one_b_order_runs(num_devices, microbatches), microbatches)


def one_f_one_b_runs(stage: int, warmup: int, count: int) -> Runs:
    """One device's 1F1B over microbatches ``0..count-1`` of ``stage``, as ``Runs``.

    ``warmup`` forwards (0 <= warmup <= count), then ``F``/``B`` pairs while forwards
    remain, then the remaining backwards. Interleaved 1F1B reuses it over a device's
    (chunk, microbatch) slots.
    """
    acts = Runs()  # run(count, pattern): repetition r adds r to each microbatch
    # warm-up
    acts.run(warmup, ("F", stage, 0))
    # steady 1F1B: the next forward, then the oldest backward
    acts.run(count - warmup, ("F", stage, warmup), ("B", stage, 0))
    # cool-down
    acts.run(warmup, ("B", stage, count - warmup))
    return acts


def _gpipe_runs(p: int, m: int) -> list[Runs]:
    devices = []
    for s in range(p):
        acts = Runs()
        acts.run(m, ("F", s, 0))
        acts.run(m, ("B", s, 0))
        devices.append(acts)
    return devices


def _one_f_one_b_order_runs(p: int, m: int) -> list[Runs]:
    return [one_f_one_b_runs(s, min(p - s - 1, m), m) for s in range(p)]
