"""Interleaved 1F1B (Megatron-LM; torch ``ScheduleInterleaved1F1B``): v stages per device.

Placement: stage ``s`` lives on device ``s % p`` (device d holds d, d+p, ..., d+(v-1)p).
Microbatches move in rounds of ``r = m // max(1, m // p)`` (``r = p`` when p divides m).
A device's k-th forward runs local chunk ``(k // r) % v`` and its k-th backward runs chunk
``v - 1 - (k // r) % v``; device d warms up with ``min((v-1)·r + 2·(p-1-d), m·v)`` forwards, then
alternates F and B, then drains the B's. For p = 2, m = 4, v = 2 (stages 0..3,
action = stage, kind, microbatch)::

    d0: 0F0 0F1 2F0 2F1 0F2 2B0 0F3 2B1 2F2 0B0 2F3 0B1 2B2 2B3 0B2 0B3
    d1: 1F0 1F1 3F0 3B0 3F1 3B1 1F2 1B0 1F3 1B1 3F2 3B2 3F3 3B3 1B2 1B3

Torch 2.13 accepts any m with ``m % max(1, m // p) == 0`` (p=4: m = 1..8, 10, 12, ...);
we raise ``ValueError`` for the others, exactly where torch does.
"""

from __future__ import annotations

from typing import Any

from bubblereduce.schedules import Order
from bubblereduce.schedules.basic import one_f_one_b, one_f_one_b_arrays, one_f_one_b_runs
from bubblereduce.schedules.runs import OrderArrays, Runs, check_sizes, expand_arrays, expand_lists

__all__ = ["interleaved_1f1b", "interleaved_round_size", "interleaved_1f1b_arrays"]


def interleaved_round_size(num_devices: int, microbatches: int) -> int:
    """Microbatches per round of interleaved 1F1B, as torch.distributed.pipelining computes it.

    ``rounds = max(1, m // p)`` and the round size is ``m // rounds``; this equals ``p`` when
    ``p`` divides ``m``. Raises ``ValueError`` when ``m`` is not a multiple of ``rounds``
    (e.g. p = 4, m = 9), naming the values and what is allowed.
    """
    check_sizes("interleaved-1f1b", num_devices, microbatches, 1)
    rounds = max(1, microbatches // num_devices)
    if microbatches % rounds:
        raise ValueError(
            f"interleaved-1f1b: microbatches ({microbatches}) must be a multiple of the number "
            f"of rounds max(1, microbatches // num_devices) = {rounds} for {num_devices} devices "
            f"(any m <= {2 * num_devices - 1} or a multiple of {num_devices} works)"
        )
    return microbatches // rounds


def interleaved_1f1b(num_devices: int, microbatches: int, stages_per_device: int = 2) -> Order:
    """Interleaved (virtual-stage) 1F1B order; one action list per device.

    ``num_devices`` = p, ``microbatches`` = m, ``stages_per_device`` = v (stage s on device
    s % p, so there are p·v stages). Identical to torch 2.13 ``ScheduleInterleaved1F1B``
    for v >= 2. With v = 1 it falls back to plain 1F1B (Megatron's non-interleaved order;
    torch's class would instead warm up with 2(p-1-d) forwards). Uniform stages without
    communication give ``makespan = m(f+b) + (p-1)(f+b)/v`` seconds for per-device costs
    f, b split evenly over the v stages. Raises ``ValueError`` for non-positive sizes or an
    m that torch rejects (see ``interleaved_round_size``).
    """
    check_sizes("interleaved-1f1b", num_devices, microbatches, stages_per_device)
    p, m, v = num_devices, microbatches, stages_per_device
    if v == 1:
        return one_f_one_b(p, m, 1)
    r, ops = interleaved_round_size(p, m), m * v
    # a device's k-th forward / backward as (stage - device, microbatch): the same on every device
    slot = {kind: [_stage_and_microbatch(kind == "B", 0, k, p, v, r) for k in range(ops)] for kind in "FB"}
    virtual = expand_lists(_virtual_runs(p, m, v), ops)  # (kind, device, k) per device
    return [[(kind, slot[kind][k][0] + d, slot[kind][k][1]) for kind, d, k in dev] for dev in virtual]


def interleaved_1f1b_arrays(num_devices: int, microbatches: int, stages_per_device: int = 2) -> OrderArrays:
    """``interleaved_1f1b``'s order as flat arrays (``OrderArrays``), built without Python tuples; same errors."""
    check_sizes("interleaved-1f1b", num_devices, microbatches, stages_per_device)
    p, m, v = num_devices, microbatches, stages_per_device
    if v == 1:
        return one_f_one_b_arrays(p, m, 1)
    r, ops = interleaved_round_size(p, m), m * v
    kinds, device, k, lengths = expand_arrays(_virtual_runs(p, m, v), ops)
    stages, mbs = _stage_and_microbatch(kinds == "B", device, k, p, v, r)
    return OrderArrays(kinds, stages, mbs, lengths)


def _virtual_runs(p: int, m: int, v: int) -> list[Runs]:
    """Per device, 1F1B over its m·v virtual slots k (stage field = device)."""
    r, ops = interleaved_round_size(p, m), m * v
    # warm-up: chunk by chunk, one round at a time, (v-1) rounds plus the 1F1B ramp
    return [one_f_one_b_runs(d, min((v - 1) * r + 2 * (p - 1 - d), ops), ops) for d in range(p)]


def _stage_and_microbatch(backward: Any, device: Any, k: Any, p: int, v: int, r: int) -> tuple[Any, Any]:
    """Stage and microbatch of a device's k-th forward (or backward): ints or numpy arrays alike.

    Forwards visit local chunks 0..v-1 round by round, backwards v-1..0.
    """
    chunk = (k // r) % v
    chunk = chunk + backward * (v - 1 - 2 * chunk)  # v-1-chunk for backwards, as int arithmetic
    return chunk * p + device, (k // (r * v)) * r + k % r
