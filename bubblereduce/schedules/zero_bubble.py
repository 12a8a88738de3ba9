"""Handcrafted zero-bubble orders ZB-H1 and ZB-H2 (Qi et al., ICLR 2024), one stage per device.

The backward is split into ``I`` (input gradient, on the critical path) and ``W`` (weight
gradient, free to move). Both orders are 1F1B-like slot sequences: in slot ``x`` device
``s`` of ``p`` runs ``F_x``, then ``I_{x-k(p-1-s)}``, then ``W_{x-k(p-1)}``, dropping any
microbatch outside ``0..m-1``. ``k = 1`` is ZB-H1 (same peak memory as 1F1B: ``p``
microbatches in flight on device 0); ``k = 2`` is ZB-H2 (twice the warm-up forwards, peak
``2p - 1``, parallelogram layout). For p = 3, m = 4, ZB-H1 reads::

    d0: 0F0 0F1 0F2 0I0 0W0 0F3 0I1 0W1 0I2 0W2 0I3 0W3
    d1: 1F0 1F1 1I0 1F2 1I1 1W0 1F3 1I2 1W1 1I3 1W2 1W3
    d2: 2F0 2I0 2F1 2I1 2F2 2I2 2W0 2F3 2I3 2W1 2W2 2W3

The paper's closed forms need ``m >= p`` (ZB-H1) and ``m >= 2p - 1`` (ZB-H2). With fewer
microbatches we do not raise: the same slot rule still gives a valid, deadlock-free order
(the handcrafted order with the missing microbatches removed), but the closed forms no
longer hold. ZB-H1 equals torch 2.13 ``ScheduleInterleavedZeroBubble`` with one stage per
rank for every m torch accepts; torch has no ZB-H2 class.
"""

from __future__ import annotations

from bubblereduce.schedules import Order
from bubblereduce.schedules.runs import OrderArrays, Runs, check_sizes, expand_arrays, expand_lists

__all__ = ["zb_h1", "zb_h2", "zb_h1_arrays", "zb_h2_arrays"]


def _zero_bubble_slots(num_devices: int, microbatches: int, lag: int) -> list[Runs]:
    p, m = num_devices, microbatches
    devices = []
    for s in range(p):
        i_lag = lag * (p - 1 - s)  # I trails F by the round trip to the last stage and back
        w_lag = lag * (p - 1)  # W trails F the same on every device: it fills the tail
        slots = Runs()
        # warm-up (F only, then F+I), steady (F+I+W), cool-down (I+W, then W only):
        # all phases are the slot F_x I_{x-i_lag} W_{x-w_lag} with out-of-range microbatches dropped
        slots.run(m + w_lag, ("F", s, 0), ("I", s, -i_lag), ("W", s, -w_lag))
        devices.append(slots)
    return devices


def zb_h1(num_devices: int, microbatches: int, stages_per_device: int = 1) -> Order:
    """ZB-H1 order: 1F1B memory (device s holds at most ``min(p - s, m)`` microbatches).

    Device s warms up with ``p-1-s`` forwards, runs ``s`` (F, I) pairs, then (F, I, W)
    triples, then (I, W) pairs and finally its ``s`` deferred W's. Uniform stages without
    communication, ``m >= p`` and ``w <= min(f, i)`` give
    ``makespan = m(f+i+w) + (p-1)(f+i-w)`` seconds. Any m >= 1 is accepted (see the module
    docstring for m < p). Raises ``ValueError`` for non-positive sizes or
    ``stages_per_device != 1``.
    """
    check_sizes("zb-h1", num_devices, microbatches, stages_per_device, required_stages_per_device=1,
                hint=" (one stage per device; use \'zbv\' for two)")
    return expand_lists(_zero_bubble_slots(num_devices, microbatches, lag=1), microbatches)


def zb_h2(num_devices: int, microbatches: int, stages_per_device: int = 1) -> Order:
    """ZB-H2 order: extra warm-up forwards fill the start bubble (device s holds ``2(p-s)-1``).

    Device s warms up with ``2(p-1-s)`` forwards, runs ``2s`` (F, I) pairs, then (F, I, W)
    triples, then (I, W) pairs and finally its ``2s`` deferred W's. Uniform stages without
    communication, ``m >= 2p - 1`` and ``w <= min(f, i)`` give a longest device span
    (first start to last end on one device) of ``m(f+i+w) + (p-1)(f+i-2w)`` seconds. Any
    m >= 1 is accepted (see the module docstring for m < 2p - 1). Raises ``ValueError``
    for non-positive sizes or ``stages_per_device != 1``.
    """
    check_sizes("zb-h2", num_devices, microbatches, stages_per_device, required_stages_per_device=1,
                hint=" (one stage per device; use \'zbv\' for two)")
    return expand_lists(_zero_bubble_slots(num_devices, microbatches, lag=2), microbatches)


def zb_h1_arrays(num_devices: int, microbatches: int, stages_per_device: int = 1) -> OrderArrays:
    """``zb_h1``'s order as flat arrays (``OrderArrays``), built without Python tuples; same errors."""
    check_sizes("zb-h1", num_devices, microbatches, stages_per_device, required_stages_per_device=1,
                hint=" (one stage per device; use \'zbv\' for two)")
    return expand_arrays(_zero_bubble_slots(num_devices, microbatches, lag=1), microbatches)


def zb_h2_arrays(num_devices: int, microbatches: int, stages_per_device: int = 1) -> OrderArrays:
    """``zb_h2``'s order as flat arrays (``OrderArrays``), built without Python tuples; same errors."""
    check_sizes("zb-h2", num_devices, microbatches, stages_per_device, required_stages_per_device=1,
                hint=" (one stage per device; use \'zbv\' for two)")
    return expand_arrays(_zero_bubble_slots(num_devices, microbatches, lag=2), microbatches)
