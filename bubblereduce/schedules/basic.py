"""GPipe and 1F1B orders (semantics.md §3): one stage per device, stage s on device s.

Orders only; ``bubblereduce.simulate`` times them. For p = 3 devices, m = 4 microbatches::

    gpipe                                1f1b
    d0: F0 F1 F2 F3 B0 B1 B2 B3          d0: F0 F1 F2 B0 F3 B1 B2 B3
    d1: F0 F1 F2 F3 B0 B1 B2 B3          d1: F0 F1 B0 F2 B1 F3 B2 B3
    d2: F0 F1 F2 F3 B0 B1 B2 B3          d2: F0 B0 F1 B1 F2 B2 F3 B3
"""

from __future__ import annotations

import operator

from bubblereduce.schedules import Action, Order

__all__ = ["gpipe", "one_f_one_b"]


def _check_args(name: str, num_devices: int, microbatches: int, stages_per_device: int) -> None:
    for label, value in (("num_devices", num_devices), ("microbatches", microbatches)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: {label} must be an integer >= 1, got {value!r}")
    if stages_per_device != 1:
        raise ValueError(
            f"{name} places one stage per device: stages_per_device must be 1, "
            f"got {stages_per_device!r} (use 'interleaved-1f1b' for several stages per device)"
        )


def gpipe(num_devices: int, microbatches: int, stages_per_device: int = 1) -> Order:
    """GPipe order: on every device all forwards ``F0..F(m-1)``, then all backwards ``B0..B(m-1)``.

    ``num_devices`` = number of stages (stage s on device s), ``microbatches`` = m >= 1.
    Returns one list of ``(kind, stage, microbatch)`` actions per device. Raises
    ``ValueError`` for non-positive sizes or ``stages_per_device != 1``.
    """
    _check_args("gpipe", num_devices, microbatches, stages_per_device)
    order: Order = []
    for s in range(num_devices):
        actions: list[Action] = [("F", s, j) for j in range(microbatches)]
        actions += [("B", s, j) for j in range(microbatches)]
        order.append(actions)
    return order


def one_f_one_b(num_devices: int, microbatches: int, stages_per_device: int = 1) -> Order:
    """1F1B (PipeDream-Flush / Megatron) order, stage s on device s.

    Device s runs ``min(p - s - 1, m)`` warm-up forwards, then alternates one ``F`` and
    one ``B`` while forwards remain (steady state), then the remaining ``B`` s (cool-down).
    ``p = num_devices``, ``m = microbatches``; returns one action list per device.
    Raises ``ValueError`` for non-positive sizes or ``stages_per_device != 1``.
    """
    _check_args("1f1b", num_devices, microbatches, stages_per_device)
    m = operator.index(microbatches)
    order: Order = []
    for s in range(num_devices):
        warmup = min(num_devices - s - 1, m)
        # warm-up
        actions: list[Action] = [("F", s, j) for j in range(warmup)]
        # steady 1F1B
        for k in range(m - warmup):
            actions.append(("F", s, warmup + k))
            actions.append(("B", s, k))
        # cool-down
        actions += [("B", s, j) for j in range(m - warmup, m)]
        order.append(actions)
    return order
