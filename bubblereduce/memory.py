"""Per-stage memory, practitioner baseline splits and memory-aware exact partitions.

Memory of pipeline stage ``s`` holding layers ``[i, j)`` (bytes)::

    persistent: Σ param_count[i:j] * bytes_per_param        weights + gradients + optimizer state
    in flight:  Σ saved_bytes[i:j] * inflight[s]            activations stored for backward

``bytes_per_param`` covers weights, gradients and optimizer state together
(:data:`OPTIMIZER_BYTES_PER_PARAM`: mixed-precision Adam is 16 B/param).
``saved_bytes`` is what each layer stores for its backward per microbatch
(:func:`bubblereduce.analytic.count_layers`), ``inflight[s]`` the schedule's
``peak_inflight`` on stage s from the simulator (1F1B: ``min(p - s, m)``, so the
first stages hold the most; GPipe: ``m``). Framework workspace, fragmentation and
the communication buffers are not modelled.

The exact memory-aware partition is ``partition.dp_min_max`` with a
``partition.StageMemory`` built from these numbers: the minimum bottleneck among
partitions that fit, or a ``MemoryCapacityError`` naming the smallest capacity
that would fit. It is compared with the splits practitioners use
(:func:`even_split`, :func:`megatron_split`, :func:`torchtitan_split`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import experiment as ex
from . import partition as part_mod
from . import schedules as sched_mod
from . import simulate as sim_mod
from .profile import ModelProfile

__all__ = [
    "OPTIMIZER_BYTES_PER_PARAM",
    "ONE_STAGE_SCHEDULES",
    "inflight_per_stage",
    "layer_memory",
    "build_stage_memory",
    "stage_memory_bytes",
    "even_split",
    "megatron_split",
    "torchtitan_split",
    "PartitionReport",
    "MemoryComparison",
    "compare_partitions",
    "comparison_csv",
    "comparison_lines",
]

OPTIMIZER_BYTES_PER_PARAM: dict[str, float] = {
    # bf16/fp16 weights 2 + gradients 2 + fp32 master weights 4 + Adam moments 4 + 4
    # (Rajbhandari et al. 2020, "ZeRO", section 3.1: 2 + 2 + 12 = 16 bytes per parameter)
    "adam-mixed": 16.0,
    # fp32 weights 4 + gradients 4 + Adam moments 4 + 4
    "adam-fp32": 16.0,
    # fp32 weights 4 + gradients 4 + momentum 4
    "sgd-momentum-fp32": 12.0,
    # fp32 weights 4 + gradients 4
    "sgd-fp32": 8.0,
}

ONE_STAGE_SCHEDULES: tuple[str, ...] = ("gpipe", "1f1b", "zb-h1", "zb-h2")
"""Schedules with one model stage per device: per-stage memory is per-device memory."""


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def inflight_per_stage(schedule: str, num_stages: int, microbatches: int) -> np.ndarray:
    """Peak in-flight microbatches per stage (float64, length ``num_stages``) for ``schedule``.

    Read from the simulator's ``peak_inflight`` (semantics §5) on a run with unit
    costs: a device's in-flight count changes only at its own actions, which run
    in the order's sequence, so the peak does not depend on the costs. Only the
    one-stage-per-device schedules :data:`ONE_STAGE_SCHEDULES` are accepted.
    """
    if schedule not in ONE_STAGE_SCHEDULES:
        raise ValueError(f"memory-aware partitioning needs one stage per device; schedule must be "
                         f"one of {', '.join(ONE_STAGE_SCHEDULES)}, got {schedule!r}")
    p = _check_int("num_stages", num_stages, 1)
    m = _check_int("microbatches", microbatches, 1)
    ones = np.ones(p)
    w = 0.5 * ones if schedule in sched_mod.NEEDS_W else None
    res = sim_mod.simulate(schedule, ones, ones, m, w=w)
    return np.asarray(res.peak_inflight, dtype=np.float64)


def layer_memory(param_count: Sequence[int], saved_bytes: Sequence[int],
                 bytes_per_param: float | str = "adam-mixed") -> tuple[np.ndarray, np.ndarray]:
    """Per-layer ``(persistent_bytes, activation_bytes)`` as float64 arrays.

    ``persistent_bytes = param_count * bytes_per_param`` (weights, gradients and
    optimizer state; a number of bytes or a key of :data:`OPTIMIZER_BYTES_PER_PARAM`);
    ``activation_bytes = saved_bytes`` (stored for backward, per microbatch).
    """
    if isinstance(bytes_per_param, str):
        if bytes_per_param not in OPTIMIZER_BYTES_PER_PARAM:
            raise ValueError(f"unknown optimizer {bytes_per_param!r}; known: "
                             f"{', '.join(OPTIMIZER_BYTES_PER_PARAM)} (or give bytes per parameter)")
        bpp = OPTIMIZER_BYTES_PER_PARAM[bytes_per_param]
    elif isinstance(bytes_per_param, bool) or not isinstance(bytes_per_param, int | float) \
            or not math.isfinite(bytes_per_param) or bytes_per_param < 0:
        raise ValueError(f"bytes_per_param must be a number >= 0 or an optimizer name, "
                         f"got {bytes_per_param!r}")
    else:
        bpp = float(bytes_per_param)
    pc = np.asarray(param_count, dtype=np.float64)
    sb = np.asarray(saved_bytes, dtype=np.float64)
    if pc.shape != sb.shape or pc.ndim != 1:
        raise ValueError(f"param_count and saved_bytes must be 1-D of equal length, "
                         f"got shapes {pc.shape} and {sb.shape}")
    if (pc < 0).any() or (sb < 0).any():
        raise ValueError("param_count and saved_bytes must be >= 0")
    return pc * bpp, sb.copy()


def build_stage_memory(persistent_bytes: Sequence[float], activation_bytes: Sequence[float],
                       inflight: Sequence[float], capacity_bytes: float) -> part_mod.StageMemory:
    """A ``partition.StageMemory`` (per-block bytes, per-stage in-flight counts, capacity in bytes)."""
    return part_mod.StageMemory(np.asarray(persistent_bytes, dtype=np.float64),
                                np.asarray(activation_bytes, dtype=np.float64),
                                np.asarray(inflight, dtype=np.float64), float(capacity_bytes))


def stage_memory_bytes(parts: Sequence[tuple[int, int]], persistent_bytes: Sequence[float],
                       activation_bytes: Sequence[float], inflight: Sequence[float],
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Per-stage ``(persistent, in-flight activation)`` bytes of partition ``parts``.

    Stage s over blocks ``[i, j)``: ``Σ persistent[i:j]`` and
    ``inflight[s] * Σ activation[i:j]``; their sum is what ``StageMemory`` checks.
    """
    pers = np.asarray(persistent_bytes, dtype=np.float64)
    act = np.asarray(activation_bytes, dtype=np.float64)
    inf = np.asarray(inflight, dtype=np.float64)
    part_mod.validate_partition(parts, pers.size, len(parts))
    if act.size != pers.size or inf.size != len(parts):
        raise ValueError(f"need {pers.size} activation entries and {len(parts)} in-flight counts, "
                         f"got {act.size} and {inf.size}")
    p_s = np.array([pers[a:b].sum() for a, b in parts])
    a_s = np.array([inf[k] * act[a:b].sum() for k, (a, b) in enumerate(parts)])
    return p_s, a_s


# ----------------------------------------------------------------------------- baselines


def _units(kinds: Sequence[str]) -> list[tuple[int, int]]:
    """Layer ranges of the transformer blocks between a leading embed and a trailing head."""
    kinds = list(kinds)
    if len(kinds) < 3 or kinds[0] != "embed" or kinds[-1] != "head":
        raise ValueError(f"kinds must be ['embed', <blocks>..., 'head'], got {kinds!r}")
    units, k = [], 1
    while k < len(kinds) - 1:
        if kinds[k] == "block":
            units.append((k, k + 1))
            k += 1
        elif kinds[k] == "attn" and kinds[k + 1] == "mlp":
            units.append((k, k + 2))
            k += 2
        else:
            raise ValueError(f"layer {k} has kind {kinds[k]!r}; expected 'block' or an 'attn', 'mlp' pair")
    return units


def _from_counts(kinds: Sequence[str], counts: Sequence[int]) -> list[tuple[int, int]]:
    """Partition (layer ranges) giving stage s ``counts[s]`` blocks; embed first, head last."""
    units = _units(kinds)
    n = len(kinds)
    if sum(counts) != len(units) or any(c < 0 for c in counts):
        raise AssertionError(f"block counts {counts} do not cover {len(units)} blocks")
    edges, done = [0], 0
    for c in counts[:-1]:
        done += c
        edges.append(units[done - 1][1] if done > 0 else 1)
    edges.append(n)
    parts = list(zip(edges[:-1], edges[1:], strict=True))
    if any(b <= a for a, b in parts):
        raise ValueError(f"{len(counts)} stages leave a stage empty with {len(units)} blocks "
                         f"(block counts {list(counts)}); use fewer stages")
    return parts


def _spread(total: int, stages: int) -> list[int]:
    q, r = divmod(total, stages)
    return [q + 1] * r + [q] * (stages - r)


def even_split(kinds: Sequence[str], num_stages: int) -> list[tuple[int, int]]:
    """Even transformer-block split: ``L // p`` blocks per stage (the first ``L % p`` get one more),
    the embedding joins stage 0 and the head the last stage (the framework default).

    ``kinds`` from :func:`bubblereduce.gpt.gpt_layer_kinds`; returns layer ranges.
    """
    p = _check_int("num_stages", num_stages, 1)
    return _from_counts(kinds, _spread(len(_units(kinds)), p))


def megatron_split(kinds: Sequence[str], num_stages: int, reduce: int = 1) -> list[tuple[int, int]]:
    """Megatron-style uneven split: the first and last stages get ``L // p - reduce`` blocks
    (``--decoder-first/last-pipeline-num-layers``) to make room for embedding and head; the
    middle stages share the rest evenly. With fewer than 3 stages it is :func:`even_split`."""
    p = _check_int("num_stages", num_stages, 1)
    r = _check_int("reduce", reduce, 0)
    n_blocks = len(_units(kinds))
    if p < 3:
        return even_split(kinds, p)
    edge = max(0, n_blocks // p - r)
    return _from_counts(kinds, [edge, *_spread(n_blocks - 2 * edge, p - 2), edge])


def torchtitan_split(kinds: Sequence[str], num_stages: int, input_weight: int = 1,
                     output_weight: int = 1) -> list[tuple[int, int]]:
    """torchtitan-style split: the embedding counts as ``input_weight`` blocks and the head as
    ``output_weight``; the ``L + input_weight + output_weight`` units are spread evenly (the first
    stages take the remainder), stage 0's share includes the embedding and the last's the head."""
    p = _check_int("num_stages", num_stages, 1)
    wi = _check_int("input_weight", input_weight, 0)
    wo = _check_int("output_weight", output_weight, 0)
    n_blocks = len(_units(kinds))
    if p == 1:
        return [(0, len(kinds))]
    units = _spread(n_blocks + wi + wo, p)
    counts = list(units)
    counts[0] -= wi
    counts[-1] -= wo
    if min(counts[0], counts[-1]) < 0:
        raise ValueError(f"{p} stages with input_weight {wi} and output_weight {wo} leave the first "
                         f"or last stage a negative block count {counts}; use fewer stages")
    return _from_counts(kinds, counts)


# ----------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class PartitionReport:
    """One partition of the layers, simulated: seconds per training step, bytes per stage.

    ``bottleneck_s``: largest stage ``f + b`` per microbatch; ``makespan_s`` and
    ``bubble_fraction`` from the simulator; ``persistent_bytes`` /
    ``activation_bytes`` per stage; ``peak_memory_bytes`` their largest sum;
    ``fits``: peak within the capacity (``None`` when unconstrained).
    """

    strategy: str
    partition: tuple[tuple[int, int], ...]
    bottleneck_s: float
    makespan_s: float
    bubble_fraction: float
    persistent_bytes: tuple[float, ...]
    activation_bytes: tuple[float, ...]
    peak_memory_bytes: float
    fits: bool | None


@dataclass(frozen=True)
class MemoryComparison:
    """Reports per strategy (baselines, ``dp_min_max``, and ``dp_min_max+memory`` when a capacity
    is set and some partition fits) plus the configuration; ``min_capacity_bytes`` is the smallest
    capacity any partition fits (exact, from ``partition``'s parametric search)."""

    reports: tuple[PartitionReport, ...]
    schedule: str
    num_stages: int
    microbatches: int
    capacity_bytes: float | None
    min_capacity_bytes: float

    def report(self, strategy: str) -> PartitionReport | None:
        """The report of ``strategy`` or ``None``."""
        return next((r for r in self.reports if r.strategy == strategy), None)


def compare_partitions(profile: ModelProfile, kinds: Sequence[str], saved_bytes: Sequence[int],
                       param_count: Sequence[int], num_stages: int, microbatches: int, *,
                       schedule: str = "1f1b", bandwidth_GBps: float | None = None,
                       latency_s: float = 0.0, bytes_per_param: float | str = "adam-mixed",
                       capacity_bytes: float | None = None) -> MemoryComparison:
    """Compare practitioner splits with the exact (memory-aware) partition on one layer profile.

    ``profile`` gives per-layer seconds per microbatch (one layer = one block);
    ``kinds`` the layer kinds (:func:`bubblereduce.gpt.gpt_layer_kinds`);
    ``saved_bytes`` and ``param_count`` per layer (from
    :func:`bubblereduce.analytic.count_layers`). Every partition is simulated
    with ``schedule`` over ``microbatches`` microbatches; links move each stage's
    output at ``bandwidth_GBps`` (None: free) plus ``latency_s``. Strategies:
    ``even``, ``megatron``, ``torchtitan``, ``dp_min_max`` (costs ``f + b``, comm
    seconds as cut costs, no memory limit) and, with ``capacity_bytes``,
    ``dp_min_max+memory`` (omitted when nothing fits: see ``min_capacity_bytes``).
    A baseline that cannot be formed for this stage count is left out.
    """
    n = len(profile.layers)
    if len(kinds) != n or len(saved_bytes) != n or len(param_count) != n:
        raise ValueError(f"kinds, saved_bytes and param_count need {n} entries (one per layer), got "
                         f"{len(kinds)}, {len(saved_bytes)} and {len(param_count)}")
    p = _check_int("num_stages", num_stages, 1)
    m = _check_int("microbatches", microbatches, 1)
    if capacity_bytes is not None and (not math.isfinite(capacity_bytes) or capacity_bytes <= 0):
        raise ValueError(f"capacity_bytes must be a finite number > 0 or None, got {capacity_bytes!r}")
    costs = ex.block_costs(profile, 1)
    comm = costs.comm_s(bandwidth_GBps, latency_s) if bandwidth_GBps is not None else np.zeros(n)
    pers, act = layer_memory(param_count, saved_bytes, bytes_per_param)
    inflight = inflight_per_stage(schedule, p, m)

    plans: list[tuple[str, list[tuple[int, int]]]] = []
    for name, fn in (("even", even_split), ("megatron", megatron_split), ("torchtitan", torchtitan_split)):
        try:
            plans.append((name, fn(kinds, p)))
        except ValueError:
            continue
    plans.append(("dp_min_max", part_mod.dp_min_max(costs.cost_s, comm, p)))
    try:
        part_mod.dp_min_max(costs.cost_s, comm, p,
                            memory=build_stage_memory(pers, act, inflight, 0.0))
        min_cap = 0.0
    except part_mod.MemoryCapacityError as exc:
        min_cap = float(exc.min_capacity_bytes)
    if capacity_bytes is not None and min_cap <= capacity_bytes * (1 + part_mod.REL_TOL):
        mem = build_stage_memory(pers, act, inflight, capacity_bytes)
        plans.append(("dp_min_max+memory", part_mod.dp_min_max(costs.cost_s, comm, p, memory=mem)))

    reports = []
    for name, parts in plans:
        res = ex.simulate_partition(schedule, costs, parts, m, bandwidth_GBps=bandwidth_GBps,
                                    latency_s=latency_s)
        p_s, a_s = stage_memory_bytes(parts, pers, act, inflight)
        peak = float((p_s + a_s).max())
        fits = None if capacity_bytes is None else bool(peak <= capacity_bytes * (1 + part_mod.REL_TOL))
        reports.append(PartitionReport(
            strategy=name, partition=tuple((int(a), int(b)) for a, b in parts),
            bottleneck_s=part_mod.bottleneck(costs.cost_s, parts), makespan_s=float(res.makespan),
            bubble_fraction=float(res.bubble_fraction), persistent_bytes=tuple(p_s.tolist()),
            activation_bytes=tuple(a_s.tolist()), peak_memory_bytes=peak, fits=fits))
    return MemoryComparison(tuple(reports), schedule, p, m,
                            None if capacity_bytes is None else float(capacity_bytes), min_cap)


def comparison_csv(cmp: MemoryComparison) -> tuple[list[str], list[list[object]]]:
    """``(header, rows)`` of a comparison: one row per strategy and stage (seconds, bytes)."""
    header = ["strategy", "partition", "bottleneck_s", "makespan_s", "bubble_fraction",
              "peak_memory_bytes", "fits", "stage", "persistent_bytes", "activation_bytes"]
    rows: list[list[object]] = []
    for r in cmp.reports:
        text = " ".join(f"{a}:{b}" for a, b in r.partition)
        for s, (pb, ab) in enumerate(zip(r.persistent_bytes, r.activation_bytes, strict=True)):
            rows.append([r.strategy, text, r.bottleneck_s, r.makespan_s, r.bubble_fraction,
                         r.peak_memory_bytes, "" if r.fits is None else r.fits, s, pb, ab])
    return header, rows


def _gb(x: float) -> str:
    return f"{x / 1e9:.3g} GB" if x >= 1e8 else f"{x / 1e6:.3g} MB"


def _t(x: float) -> str:
    return f"{x:.3g} s" if x >= 1 else f"{x * 1e3:.3g} ms"


def comparison_lines(cmp: MemoryComparison, bytes_per_param: float | str) -> list[str]:
    """Summary sentences for a comparison: each strategy's step time, bottleneck and peak memory,
    and how much the exact (memory-aware when a capacity is set) partition beats the even split."""
    bpp = (f"{bytes_per_param} ({OPTIMIZER_BYTES_PER_PARAM[bytes_per_param]:g} B/param)"
           if isinstance(bytes_per_param, str) else f"{bytes_per_param:g} B/param")
    cap = "no capacity limit" if cmp.capacity_bytes is None else f"capacity {_gb(cmp.capacity_bytes)}"
    out = ["", f"Memory per device ({cmp.schedule}, {cmp.num_stages} devices, m = {cmp.microbatches}, "
               f"one layer per block; weights + grads + optimizer state at {bpp} + stored activations "
               f"x peak in-flight microbatches; {cap}):"]
    for r in cmp.reports:
        fits = "" if r.fits is None else ("; fits" if r.fits else "; does NOT fit")
        out.append(f"- {r.strategy}: step {_t(r.makespan_s)}, bottleneck {_t(r.bottleneck_s)} per "
                   f"microbatch, peak memory {_gb(r.peak_memory_bytes)}{fits} "
                   f"[{' '.join(f'{a}:{b}' for a, b in r.partition)}].")
    out.append(f"- Smallest per-device memory any partition fits: {_gb(cmp.min_capacity_bytes)}.")
    even = cmp.report("even")
    exact = cmp.report("dp_min_max+memory") or (cmp.report("dp_min_max") if cmp.capacity_bytes is None
                                                else None)
    if even is None:
        return out
    if exact is None:
        out.append(f"- No partition fits {_gb(cmp.capacity_bytes or 0.0)}: the exact memory-aware "
                   f"partition needs at least {_gb(cmp.min_capacity_bytes)} per device.")
        return out
    gain = even.makespan_s / exact.makespan_s
    line = (f"- Exact {exact.strategy} vs even split: step {_t(exact.makespan_s)} vs "
            f"{_t(even.makespan_s)} ({gain:.3f}x), bottleneck {_t(exact.bottleneck_s)} vs "
            f"{_t(even.bottleneck_s)}, peak memory {_gb(exact.peak_memory_bytes)} vs "
            f"{_gb(even.peak_memory_bytes)}")
    if even.fits is False:
        line += "; the even split does not fit the capacity at all"
    out.append(line + ".")
    return out
