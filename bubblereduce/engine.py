"""Real-engine check: run a partition on torch.distributed.pipelining and hold the simulator to it.

One process per pipeline rank (gloo on CPU, NCCL on GPU, torch threads = 1
each, rank r pinned to CPU r), launched by
``bubblereduce.engine_worker.run_ranks`` on 127.0.0.1. ``engine_check`` runs,
in one launch:

1. a gloo send/recv ping-pong at a few message sizes, fitted to
   ``one_way_s = latency_s + bytes / (bandwidth_GBps * 1e9)``;
2. warm-up steps of every (partition, schedule, microbatch count);
3. ``rounds`` rounds, each: a layer profile of the whole model at every
   microbatch size, measured in every rank at once (threads = 1, one busy
   process per core, as in the run); the per-step overheads of every
   configuration, timed on their own; then timed training steps of every
   configuration (MSE loss to a fixed target, SGD). A step time is rank 0's
   wall time between a barrier before ``schedule.step`` and one after the
   optimizer step. Interleaving spreads load changes over all of them.

The prediction simulates the same partition, schedule and microbatch count
(``bubblereduce.simulate``, ``comm_mode="overlap"`` by default) with per-stage
costs summed from the profile, the MSE loss's forward/backward added to the
last stage, each stage's gradient accumulation (an in-place add over its
parameters, done by every microbatch after the first) added to its backward,
boundary transfers from the measured link, and each rank's post-schedule work (gradient scaling by 1/m, ``SGD.step``, ``zero_grad``),
measured on its own in that rank, added after that rank's last action
(overheads: medians over rounds; profile: median over rounds, mean over ranks):
``predicted_s = max_d(end_d + post_step_s[d])``. ``predicted_sim_s`` is the
plain simulator makespan without that last term. Nothing is fitted to the
measured step times.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from bubblereduce.engine_worker import (
    TORCH_SCHEDULES,
    EngineError,
    LinkTask,
    PipelineJob,
    PipelineTask,
    ProfileTask,
    run_ranks,
    split_sequential,
)

__all__ = [
    "ENGINE_SCHEDULES",
    "ENGINE_CSV_HEADER",
    "EngineError",
    "EngineRow",
    "LinkFit",
    "PipelineRun",
    "RankingCheck",
    "block_to_layer_ranges",
    "engine_check",
    "engine_summary_lines",
    "fit_link",
    "measure_link",
    "plan_engine_partitions",
    "predict_step",
    "ranking_checks",
    "run_pipeline",
    "split_sequential",
    "write_engine_check",
]

ENGINE_SCHEDULES: tuple[str, ...] = tuple(TORCH_SCHEDULES)
DEFAULT_LINK_SIZES_BYTES: tuple[int, ...] = (4096, 65536, 1 << 20, 4 << 20, 16 << 20)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class LinkFit:
    """A measured link: ``one_way_s ≈ latency_s + bytes / (bandwidth_GBps * 1e9)``.

    ``sizes_bytes`` / ``one_way_s`` are the ping-pong medians it was fitted to
    (one-way = half a round trip).
    """

    latency_s: float
    bandwidth_GBps: float
    sizes_bytes: tuple[int, ...]
    one_way_s: tuple[float, ...]


@dataclass(frozen=True)
class PipelineRun:
    """Result of ``run_pipeline``: timed step seconds (rank 0), the mean microbatch loss of
    the last step, per-rank post-schedule seconds and, with ``return_grads``, every
    parameter's gradient by its name in the full model."""

    step_s: tuple[float, ...]
    loss: float
    post_step_s: tuple[float, ...]
    grads: Mapping[str, Any] | None


@dataclass(frozen=True)
class EngineRow:
    """One measured and predicted configuration (seconds per training step).

    ``error = (predicted_s - measured_s) / measured_s``; ``noise`` = IQR / median
    of the timed steps; ``measured_iqr_s`` the IQR itself. ``predicted_sim_s`` /
    ``error_sim``: the simulator makespan alone, without the post-step term.
    ``predicted_inrun_s`` / ``error_inrun`` (diagnostic): the same prediction
    from each stage's forward/backward calls timed inside the run instead of
    the layer profile; it separates profile error from schedule-model error.
    ``profile_stage_s`` / ``inrun_stage_s``: per stage, forward + backward
    seconds of one microbatch from the profile and as timed inside the run.
    ``stage_layers``: the partition as half-open layer ranges of the model.
    """

    strategy: str
    schedule: str
    microbatches: int
    microbatch_size: int
    global_batch: int
    stage_layers: tuple[tuple[int, int], ...]
    measured_s: float
    measured_iqr_s: float
    noise: float
    predicted_s: float
    error: float
    predicted_sim_s: float
    error_sim: float
    predicted_inrun_s: float
    error_inrun: float
    profile_stage_s: tuple[float, ...]
    inrun_stage_s: tuple[float, ...]
    post_step_s: float
    steps: int
    loss: float
    link_latency_s: float
    link_bandwidth_GBps: float
    comm_mode: str


@dataclass(frozen=True)
class RankingCheck:
    """Uniform-vs-other ranking in one (schedule, microbatches): measured and predicted
    differences ``a - b`` in seconds, the noise they are compared with
    (larger of the two IQRs), and whether the predicted order agrees."""

    schedule: str
    microbatches: int
    strategy_a: str
    strategy_b: str
    measured_diff_s: float
    predicted_diff_s: float
    noise_s: float
    significant: bool
    agrees: bool


# --------------------------------------------------------------------------- helpers


def block_to_layer_ranges(
    parts: Sequence[tuple[int, int]], block_layer_ranges: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Map a partition of blocks to half-open layer ranges of the model.

    ``parts``: half-open block ranges (contiguous, covering, non-empty);
    ``block_layer_ranges[i]``: the layers ``(start, end)`` of block i (e.g.
    ``BlockProfile.layer_ranges``). Stage ``(a, b)`` becomes
    ``(block_layer_ranges[a][0], block_layer_ranges[b - 1][1])``. Raises
    ``ValueError`` when ``parts`` does not partition the blocks.
    """
    blocks = [tuple(r) for r in block_layer_ranges]
    n = len(blocks)
    expect = 0
    out: list[tuple[int, int]] = []
    for k, (a, b) in enumerate(tuple(p) for p in parts):
        if a != expect or b <= a or b > n:
            raise ValueError(
                f"parts[{k}] = {(a, b)} breaks a contiguous, non-empty cover of blocks 0..{n}: {list(parts)}"
            )
        out.append((int(blocks[a][0]), int(blocks[b - 1][1])))
        expect = b
    if expect != n or not out:
        raise ValueError(f"parts {list(parts)} must cover all {n} blocks")
    return out


def plan_engine_partitions(
    blocks: Any, num_stages: int = 2, strategies: Sequence[str] = ("uniform", "dp_min_max")
) -> dict[str, list[tuple[int, int]]]:
    """Partition a ``BlockProfile`` with ``bubblereduce.partition`` and return layer ranges.

    Block costs are ``forward_s + backward_s`` (seconds per microbatch) and the
    cut cost is the boundary activation bytes (for the DP strategies bytes and
    seconds give the same partition: every plan has ``num_stages - 1`` cuts).
    ``strategies`` name functions of ``bubblereduce.partition`` taking
    ``(costs, comm, num_stages)``. Returns ``{strategy: [(first_layer, end_layer), ...]}``.
    """
    from bubblereduce import partition

    costs = np.asarray(blocks.forward_s, dtype=np.float64) + np.asarray(blocks.backward_s, dtype=np.float64)
    comm = np.asarray(blocks.act_bytes, dtype=np.float64)
    out = {}
    for name in strategies:
        fn = getattr(partition, name, None)
        if not callable(fn):
            raise ValueError(f"unknown partition strategy {name!r}; e.g. 'uniform', 'greedy', 'dp_min_max', 'dp_slack'")
        out[name] = block_to_layer_ranges(fn(costs, comm, num_stages), blocks.layer_ranges)
    return out


def fit_link(sizes_bytes: Sequence[float], one_way_s: Sequence[float]) -> tuple[float, float]:
    """Fit ``one_way_s = latency_s + bytes / (bandwidth_GBps * 1e9)`` by least squares on relative residuals.

    Returns ``(latency_s, bandwidth_GBps)``. Needs at least two distinct sizes
    (bytes) and finite, non-negative times (seconds). A negative fitted
    intercept (noise at small sizes) is clamped to 0 s and the slope refitted
    through the origin. Raises ``ValueError`` when the times do not grow with
    size (no bandwidth can be fitted).
    """
    x = np.asarray(sizes_bytes, dtype=np.float64)
    y = np.asarray(one_way_s, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"sizes_bytes and one_way_s must be 1-D of equal length, got {x.shape} and {y.shape}")
    if np.unique(x).size < 2:
        raise ValueError(f"need at least two distinct message sizes, got {x.tolist()}")
    if not (np.all(np.isfinite(x)) and np.all(x >= 0) and np.all(np.isfinite(y)) and np.all(y >= 0)):
        raise ValueError(f"sizes and times must be finite and >= 0, got {x.tolist()} and {y.tolist()}")
    # relative residuals: sizes span orders of magnitude and the small ones carry the latency
    wt = 1.0 / np.maximum(y, np.finfo(np.float64).tiny)
    design = np.stack([np.ones_like(x), x], axis=1) * wt[:, None]
    (intercept, slope), *_ = np.linalg.lstsq(design, y * wt, rcond=None)
    if intercept < 0:
        intercept = 0.0
        slope = float((x * wt) @ (y * wt) / ((x * wt) @ (x * wt)))
    # the size-dependent part must be visible above float noise at the largest message
    if not slope * x.max() > 1e-9 * y.max():
        raise ValueError(f"transfer time does not grow with size (slope {slope!r} s/byte); cannot fit a bandwidth")
    return float(intercept), float(1.0 / slope / 1e9)


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _iqr(values: Sequence[float]) -> float:
    if len(values) < 2:
        return 0.0
    q = np.quantile(np.asarray(values, dtype=np.float64), [0.25, 0.75])
    return float(q[1] - q[0])


def _infer_input_shape(model: nn.Sequential) -> tuple[int, ...]:
    for mod in model.modules():
        if isinstance(mod, nn.Linear):
            return (int(mod.in_features),)
    raise TypeError(
        "cannot infer the input shape (no nn.Linear in the model); pass input_shape=(features, ...)"
    )


def _schedule_info(schedule: str) -> tuple[int, str]:
    if schedule not in TORCH_SCHEDULES:
        raise ValueError(f"unknown engine schedule {schedule!r}; allowed: {', '.join(ENGINE_SCHEDULES)}")
    _, per_rank, placement = TORCH_SCHEDULES[schedule]
    return per_rank, placement


def _check_job(schedule: str, num_stages: int, world: int, microbatches: int, global_batch: int) -> None:
    per_rank, _ = _schedule_info(schedule)
    if num_stages != world * per_rank:
        raise ValueError(
            f"schedule {schedule!r} runs {per_rank} stage(s) per rank: a {num_stages}-stage partition "
            f"needs {num_stages // per_rank if num_stages % per_rank == 0 else 'a non-integer number of'} ranks, "
            f"have {world}"
        )
    if global_batch % microbatches:
        raise ValueError(
            f"global_batch ({global_batch}) must be divisible by microbatches ({microbatches})"
        )
    if schedule == "1f1b" and microbatches < num_stages:
        raise ValueError(f"torch's Schedule1F1B needs microbatches >= stages ({num_stages}), got {microbatches}")


# --------------------------------------------------------------------------- measuring


def measure_link(
    sizes_bytes: Sequence[int] = DEFAULT_LINK_SIZES_BYTES,
    *,
    warmup: int = 3,
    repeats: int = 15,
    device_type: str = "cpu",
    timeout_s: float = 120.0,
) -> LinkFit:
    """Measure the rank-0 ↔ rank-1 link with a send/recv ping-pong and fit latency and bandwidth.

    For every message size (bytes, float32 buffers) the one-way time is half
    the median round trip over ``repeats`` (after ``warmup``); the fit is
    :func:`fit_link`. Spawns two processes (gloo on CPU); ``timeout_s`` bounds
    the whole measurement (seconds).
    """
    sizes = tuple(_check_int("message size", int(s), 4) for s in sizes_bytes)
    payloads = run_ranks(LinkTask(sizes, warmup, repeats), 2, device_type=device_type, timeout_s=timeout_s)
    return _link_from_payload(payloads[0])


def _link_from_payload(payload: Mapping[str, Any], say: Callable[[str], None] | None = None) -> LinkFit:
    """Fit the ping-pong; if noise hides the size effect, fall back to latency = the fastest
    one-way time and bandwidth = the best observed bytes per second (said via ``say``)."""
    sizes = tuple(int(s) for s in payload["sizes_bytes"])
    times = tuple(float(t) for t in payload["one_way_s"])
    try:
        latency_s, bandwidth_GBps = fit_link(sizes, times)
    except ValueError as exc:
        latency_s = min(times)
        bandwidth_GBps = max(s / t for s, t in zip(sizes, times, strict=True) if t > 0) / 1e9
        if say is not None:
            say(f"engine: link fit failed ({exc}); using latency {latency_s * 1e6:.1f} us and the best "
                f"observed {bandwidth_GBps:.2f} GB/s (use larger link_sizes_bytes)")
    return LinkFit(latency_s, bandwidth_GBps, sizes, times)


def run_pipeline(
    model_fn: Callable[[], nn.Sequential],
    layer_ranges: Sequence[tuple[int, int]],
    schedule: str = "1f1b",
    microbatches: int = 4,
    global_batch: int = 32,
    *,
    input_shape: tuple[int, ...] | None = None,
    warmup_steps: int = 1,
    measure_steps: int = 3,
    return_grads: bool = False,
    seed: int = 0,
    lr: float = 1e-3,
    device_type: str = "cpu",
    timeout_s: float = 300.0,
    collective_timeout_s: float = 60.0,
    _fail_rank: int | None = None,
    _crash_rank: int | None = None,
) -> PipelineRun:
    """Run ``model_fn()`` cut at ``layer_ranges`` on torch.distributed.pipelining; time its steps.

    ``model_fn`` must be picklable (a module-level function or a
    ``functools.partial`` of one) and build the same weights in every process
    (a fixed seed). Inputs and targets are standard-normal, drawn with ``seed``.
    ``schedule`` is one of ``ENGINE_SCHEDULES``; the number of ranks is the
    number of stages divided by the schedule's stages per rank. With
    ``return_grads`` one step runs without an optimizer step and the result
    holds the loss (mean of the microbatch MSE losses = the full-batch MSE)
    and all gradients by full-model parameter name; otherwise ``warmup_steps``
    untimed then ``measure_steps`` timed steps (seconds, rank 0, barrier to
    barrier). ``EngineError`` names a failing rank; no process outlives the call.
    """
    ranges = tuple((int(a), int(b)) for a, b in layer_ranges)
    per_rank, _ = _schedule_info(schedule)
    _check_int("microbatches", microbatches, 1)
    _check_int("global_batch", global_batch, 1)
    _check_int("warmup_steps", warmup_steps, 0)
    _check_int("measure_steps", measure_steps, 1)
    if len(ranges) % per_rank:
        raise ValueError(f"schedule {schedule!r} needs a multiple of {per_rank} stages, got {len(ranges)}")
    world = len(ranges) // per_rank
    _check_job(schedule, len(ranges), world, microbatches, global_batch)
    model = model_fn()
    split_sequential(model, ranges)  # validate in the parent: a clear error before any spawn
    shape = tuple(input_shape) if input_shape is not None else _infer_input_shape(model)
    del model
    job = PipelineJob("run", ranges, schedule, microbatches, warmup_steps, measure_steps, return_grads)
    task = PipelineTask(model_fn, shape, global_batch, (job,), lr=lr, seed=seed,
                        fail_rank=_fail_rank, crash_rank=_crash_rank)
    payloads = run_ranks(task, world, device_type=device_type, timeout_s=timeout_s,
                         collective_timeout_s=collective_timeout_s)
    results = [p["jobs"]["run"] for p in payloads]
    last = next(r for r in results if len(ranges) - 1 in r["stages"])
    grads = None
    if return_grads:
        grads = {}
        for r in results:
            grads.update(r["grads"])
    return PipelineRun(
        step_s=tuple(results[0].get("step_s", ())),
        loss=float(last["loss"]),
        post_step_s=tuple(float(r["post_step_s"]) for r in results),
        grads=grads,
    )


# --------------------------------------------------------------------------- predicting


def _mean_profile_arrays(per_rank_rounds: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
    """Per-layer arrays: median over a rank's rounds, then mean over ranks (same model, same size)."""
    out = {}
    first = per_rank_rounds[0][0]
    for attr in ("forward_s", "backward_s", "weight_grad_s"):
        per_rank = []
        for rounds in per_rank_rounds:
            arrays = [getattr(p, attr) for p in rounds]
            if any(a is None for a in arrays):
                arrays = [np.zeros(len(first.layers))]
            per_rank.append(np.median(np.stack(arrays), axis=0))
        out[attr] = np.mean(np.stack(per_rank), axis=0)
    out["act_bytes"] = np.asarray(first.act_bytes, dtype=np.float64)
    return out


def _inrun_stage_s(per_rank_res: Sequence[Mapping[str, Any]], num: int) -> tuple[float, ...]:
    timed: dict[str, float] = {}
    for r in per_rank_res:
        timed.update(r["inrun_s"])
    return tuple(timed.get(f"F{s}", math.nan) + timed.get(f"B{s}", math.nan) + timed.get(f"W{s}", 0.0)
                 for s in range(num))


def _predict_inrun(
    per_rank_res: Sequence[Mapping[str, Any]], ranges: Sequence[tuple[int, int]], schedule: str,
    m: int, link: LinkFit, layer_act_bytes: np.ndarray, post: Sequence[float], comm_mode: str,
) -> float:
    """Diagnostic prediction from the stage calls timed inside the run (no profile involved)."""
    num = len(ranges)
    timed: dict[str, float] = {}
    for r in per_rank_res:
        timed.update(r["inrun_s"])
    if not all(f"F{s}" in timed and f"B{s}" in timed for s in range(num)):
        return math.nan
    f = np.array([timed[f"F{s}"] for s in range(num)])
    i_or_b = np.array([timed[f"B{s}"] for s in range(num)])
    w = np.array([timed.get(f"W{s}", 0.0) for s in range(num)])
    last = next(r for r in per_rank_res if num - 1 in r["stages"])
    f[-1] += float(last["loss_forward_s"])
    # one pseudo-layer per stage: the in-run seconds are already per stage
    act = np.array([layer_act_bytes[b - 1] for _, b in ranges], dtype=np.float64)
    stage_ranges = [(s, s + 1) for s in range(num)]
    pred, _ = predict_step(f, i_or_b + w, act, stage_ranges, schedule, m, link,
                           layer_weight_grad_s=w, post_step_s=post, comm_mode=comm_mode)
    return pred


def predict_step(
    layer_forward_s: Sequence[float],
    layer_backward_s: Sequence[float],
    layer_act_bytes: Sequence[float],
    layer_ranges: Sequence[tuple[int, int]],
    schedule: str,
    microbatches: int,
    link: LinkFit,
    *,
    layer_weight_grad_s: Sequence[float] | None = None,
    loss_s: tuple[float, float] = (0.0, 0.0),
    accumulate_s: Sequence[float] | None = None,
    post_step_s: Sequence[float] | None = None,
    comm_mode: str = "overlap",
) -> tuple[float, float]:
    """Predict one training step (seconds) of a partition under ``schedule``.

    Per-layer seconds for one microbatch (``layer_*_s``) and output bytes are
    summed per stage over ``layer_ranges``; ``loss_s = (forward_s, backward_s)``
    of the loss is added to the last stage; ``accumulate_s[s]`` (seconds to add
    one microbatch's gradients into stage s's ``.grad``, done by all but the
    first microbatch of a step) is added to every backward of stage s as
    ``accumulate_s[s] * (m - 1) / m``; boundary transfers cost
    ``link.latency_s + bytes / (link.bandwidth_GBps * 1e9)``. The simulator
    gives each device's last end ``end_d``; ``post_step_s[d]`` (per rank, the
    work after the schedule) is added: returns ``(max_d(end_d + post_step_s[d]),
    makespan)``.
    """
    from bubblereduce.schedules import NEEDS_W
    from bubblereduce.simulate import comm_seconds, simulate

    per_rank, _ = _schedule_info(schedule)
    f = np.asarray(layer_forward_s, dtype=np.float64)
    b = np.asarray(layer_backward_s, dtype=np.float64)
    act = np.asarray(layer_act_bytes, dtype=np.float64)
    ranges = [(int(a), int(c)) for a, c in layer_ranges]
    f_st = np.array([f[a:c].sum() for a, c in ranges])
    b_st = np.array([b[a:c].sum() for a, c in ranges])
    f_st[-1] += loss_s[0]
    b_st[-1] += loss_s[1]
    if accumulate_s is not None:
        acc = np.asarray(accumulate_s, dtype=np.float64)
        if acc.shape != b_st.shape:
            raise ValueError(f"accumulate_s needs one value per stage ({b_st.size}), got {acc.tolist()}")
        b_st = b_st + acc * (microbatches - 1) / microbatches
    w_st = None
    if schedule in NEEDS_W:
        if layer_weight_grad_s is None:
            raise ValueError(f"schedule {schedule!r} needs layer_weight_grad_s (W seconds per layer)")
        wg = np.asarray(layer_weight_grad_s, dtype=np.float64)
        w_st = np.minimum(np.array([wg[a:c].sum() for a, c in ranges]), b_st)
    comm = comm_seconds(np.array([act[c - 1] for _, c in ranges[:-1]]), link.bandwidth_GBps, link.latency_s)
    res = simulate(schedule, f_st, b_st, microbatches, comm=comm, comm_mode=comm_mode, w=w_st,
                   stages_per_device=per_rank)
    ends = np.zeros(res.num_devices)
    for dev, _kind, _stage, _mb, _start, end in res.events:
        ends[dev] = max(ends[dev], end)
    post = np.zeros(res.num_devices) if post_step_s is None else np.asarray(post_step_s, dtype=np.float64)
    if post.shape != (res.num_devices,):
        raise ValueError(f"post_step_s needs one value per device ({res.num_devices}), got {post.tolist()}")
    return float(np.max(ends + post)), float(res.makespan)


# --------------------------------------------------------------------------- the check


@dataclass(frozen=True)
class _CheckTask:
    link: LinkTask
    pipeline: PipelineTask

    def run(self, rank: int, world: int, device: Any) -> dict[str, Any]:
        out = {"link": self.link.run(rank, world, device)}
        out.update(self.pipeline.run(rank, world, device))
        return out


def engine_check(
    model_fn: Callable[[], nn.Sequential],
    partitions: Mapping[str, Sequence[tuple[int, int]]],
    schedules: Sequence[str] = ("gpipe", "1f1b"),
    microbatch_counts: Sequence[int] = (2, 4, 8),
    global_batch: int = 128,
    *,
    world: int = 2,
    input_shape: tuple[int, ...] | None = None,
    warmup_steps: int = 1,
    rounds: int = 3,
    steps_per_round: int = 3,
    profile_warmup: int = 1,
    profile_repeats: int = 3,
    link_sizes_bytes: Sequence[int] = DEFAULT_LINK_SIZES_BYTES,
    comm_mode: str = "overlap",
    seed: int = 0,
    device_type: str = "cpu",
    malloc_steady: bool = False,
    timeout_s: float = 900.0,
    progress: Callable[[str], None] | None = None,
) -> list[EngineRow]:
    """Measure and predict every (strategy, schedule, microbatch count); one row each.

    ``partitions`` maps a strategy name to half-open layer ranges of
    ``model_fn()``'s children (use :func:`block_to_layer_ranges` for block
    partitions). A (strategy, schedule) pair runs when the partition has
    ``world × stages-per-rank`` stages for that schedule (1 for ``gpipe`` and
    ``1f1b``, 2 for ``interleaved-1f1b``, ``zbv``, ``dualpipev``); other pairs
    are skipped with a progress note. Microbatch counts split ``global_batch``
    (semantics §1). Everything runs in one launch of ``world`` processes (see
    the module docstring for what is measured and how it is predicted): after
    ``warmup_steps`` per configuration, ``rounds`` rounds each profile the
    model once (``profile_warmup``/``profile_repeats`` per layer) and then run
    ``steps_per_round`` timed steps of every configuration, so load changes
    hit all configurations and the profile alike. The profile used is, per
    layer, the median over rounds, averaged over ranks; rank r is pinned to
    CPU r; ``malloc_steady`` applies ``engine_worker.steady_malloc`` in the
    workers (off by default: the default allocator is what users run);
    ``timeout_s`` bounds it (seconds). Rows follow the order strategy,
    schedule, microbatches of the arguments. Raises ``ValueError`` for bad
    arguments and ``EngineError`` when a rank fails.
    """
    say = progress if progress is not None else (lambda _line: None)
    _check_int("world", world, 2)
    _check_int("global_batch", global_batch, 1)
    _check_int("rounds", rounds, 1)
    _check_int("steps_per_round", steps_per_round, 1)
    _check_int("warmup_steps", warmup_steps, 0)
    counts = [_check_int("microbatch count", m, 1) for m in microbatch_counts]
    if not counts or not partitions or not schedules:
        raise ValueError("need at least one partition, one schedule and one microbatch count")
    if comm_mode not in ("overlap", "blocking"):
        raise ValueError(f"comm_mode must be 'overlap' or 'blocking', got {comm_mode!r}")
    model = model_fn()
    shape = tuple(input_shape) if input_shape is not None else _infer_input_shape(model)
    jobs: list[PipelineJob] = []
    meta: dict[str, tuple[str, str, int, tuple[tuple[int, int], ...]]] = {}
    for strategy, ranges in partitions.items():
        ranges_t = tuple((int(a), int(b)) for a, b in ranges)
        split_sequential(model, ranges_t)
        for schedule in schedules:
            per_rank, _ = _schedule_info(schedule)
            if len(ranges_t) != world * per_rank:
                say(f"engine: skip {strategy}/{schedule}: {len(ranges_t)} stages, "
                    f"the schedule needs {world * per_rank} on {world} ranks")
                continue
            for m in counts:
                _check_job(schedule, len(ranges_t), world, m, global_batch)
                key = f"{strategy}|{schedule}|{m}"
                jobs.append(PipelineJob(key, ranges_t, schedule, m, warmup_steps, steps_per_round))
                meta[key] = (strategy, schedule, m, ranges_t)
    del model
    if not jobs:
        raise ValueError(
            f"no (partition, schedule) pair fits {world} ranks: partitions have "
            f"{sorted({len(r) for r in partitions.values()})} stages, schedules {list(schedules)}"
        )
    sizes = tuple(sorted({global_batch // m for m in counts}, reverse=True))
    task = _CheckTask(
        link=LinkTask(tuple(int(s) for s in link_sizes_bytes)),
        pipeline=PipelineTask(
            model_fn, shape, global_batch, tuple(jobs), rounds=rounds,
            profile=ProfileTask(shape, sizes, profile_warmup, profile_repeats, seed), seed=seed,
        ),
    )
    say(f"engine: {len(jobs)} configurations on {world} {('gloo' if device_type == 'cpu' else 'nccl')} "
        f"ranks: link ping-pong, {warmup_steps} warm-up step(s) each, then {rounds} rounds of "
        f"(profile at microbatch sizes {list(sizes)}, {steps_per_round} timed steps of each configuration)")
    payloads = run_ranks(task, world, device_type=device_type, timeout_s=timeout_s,
                         malloc_steady=malloc_steady)
    link = _link_from_payload(payloads[0]["link"], say)
    say(f"engine: link latency {link.latency_s * 1e6:.1f} us, bandwidth {link.bandwidth_GBps:.2f} GB/s")

    rows: list[EngineRow] = []
    for job in jobs:
        strategy, schedule, m, ranges_t = meta[job.key]
        per_rank_res = [p["jobs"][job.key] for p in payloads]
        mb = global_batch // m
        arrays = _mean_profile_arrays([[rnd[mb] for rnd in p["profiles"]] for p in payloads])
        last = next(r for r in per_rank_res if len(ranges_t) - 1 in r["stages"])
        post = [float(r["post_step_s"]) for r in per_rank_res]
        acc_by_stage = {int(s): float(v) for r in per_rank_res for s, v in r["accumulate_s"].items()}
        accumulate = [acc_by_stage[s] for s in range(len(ranges_t))]
        predicted_s, sim_s = predict_step(
            arrays["forward_s"], arrays["backward_s"], arrays["act_bytes"], ranges_t, schedule, m, link,
            layer_weight_grad_s=arrays["weight_grad_s"],
            loss_s=(float(last["loss_forward_s"]), float(last["loss_backward_s"])),
            accumulate_s=accumulate, post_step_s=post, comm_mode=comm_mode,
        )
        inrun_s = _predict_inrun(per_rank_res, ranges_t, schedule, m, link, arrays["act_bytes"], post, comm_mode)
        steps = per_rank_res[0]["step_s"]
        measured = float(statistics.median(steps))
        iqr = _iqr(steps)
        row = EngineRow(
            strategy=strategy, schedule=schedule, microbatches=m, microbatch_size=mb,
            global_batch=global_batch, stage_layers=ranges_t,
            measured_s=measured, measured_iqr_s=iqr, noise=iqr / measured,
            predicted_s=predicted_s, error=(predicted_s - measured) / measured,
            predicted_sim_s=sim_s, error_sim=(sim_s - measured) / measured,
            predicted_inrun_s=inrun_s, error_inrun=(inrun_s - measured) / measured,
            profile_stage_s=tuple(float(arrays["forward_s"][a:b].sum() + arrays["backward_s"][a:b].sum())
                                  for a, b in ranges_t),
            inrun_stage_s=_inrun_stage_s(per_rank_res, len(ranges_t)),
            post_step_s=max(post), steps=len(steps), loss=float(last["loss"]),
            link_latency_s=link.latency_s, link_bandwidth_GBps=link.bandwidth_GBps, comm_mode=comm_mode,
        )
        say(f"engine: {strategy:>10} {schedule:>6} m={m:<3} measured {measured * 1e3:8.1f} ms  "
            f"predicted {predicted_s * 1e3:8.1f} ms  error {row.error:+.1%}  noise {row.noise:.1%}")
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- reporting


def ranking_checks(
    rows: Sequence[EngineRow], strategy_a: str = "uniform", strategy_b: str = "dp_min_max"
) -> list[RankingCheck]:
    """Compare ``strategy_a`` with ``strategy_b`` in every (schedule, microbatches) both ran.

    The measured difference (median a − median b, seconds) is significant when
    it exceeds the noise, the larger of the two IQRs; ``agrees`` says whether
    the predicted difference has the same sign (ties count as agreeing only
    with ties).
    """
    by_key = {(r.strategy, r.schedule, r.microbatches): r for r in rows}
    out = []
    seen = []
    for r in rows:
        key = (r.schedule, r.microbatches)
        if key in seen:
            continue
        ra, rb = by_key.get((strategy_a, *key)), by_key.get((strategy_b, *key))
        if ra is None or rb is None:
            continue
        seen.append(key)
        md = ra.measured_s - rb.measured_s
        pd = ra.predicted_s - rb.predicted_s
        noise = max(ra.measured_iqr_s, rb.measured_iqr_s)
        out.append(RankingCheck(r.schedule, r.microbatches, strategy_a, strategy_b, md, pd, noise,
                                abs(md) > noise, bool(np.sign(md) == np.sign(pd))))
    return out


ENGINE_CSV_HEADER: tuple[str, ...] = (
    "strategy", "schedule", "microbatches", "microbatch_size", "global_batch", "stage_layers",
    "measured_s", "predicted_s", "error", "noise", "measured_iqr_s", "predicted_sim_s", "error_sim",
    "predicted_inrun_s", "error_inrun", "profile_stage_s", "inrun_stage_s", "post_step_s", "steps", "loss", "link_latency_s", "link_bandwidth_GBps", "comm_mode",
)


def _row_cells(r: EngineRow) -> list[object]:
    layers = " ".join(f"{a}-{b}" for a, b in r.stage_layers)
    return [r.strategy, r.schedule, r.microbatches, r.microbatch_size, r.global_batch, layers,
            r.measured_s, r.predicted_s, r.error, r.noise, r.measured_iqr_s, r.predicted_sim_s,
            r.error_sim, r.predicted_inrun_s, r.error_inrun, " ".join(repr(x) for x in r.profile_stage_s),
            " ".join(repr(x) for x in r.inrun_stage_s), r.post_step_s, r.steps, r.loss, r.link_latency_s, r.link_bandwidth_GBps,
            r.comm_mode]


def write_engine_check(path: str | Path, rows: Sequence[EngineRow]) -> None:
    """Write the rows as CSV (``ENGINE_CSV_HEADER``; seconds, ratios) atomically to ``path``."""
    from bubblereduce.io import write_csv

    write_csv(path, list(ENGINE_CSV_HEADER), [_row_cells(r) for r in rows])


def engine_summary_lines(rows: Sequence[EngineRow]) -> list[str]:
    """Short sentences with the check's key numbers (errors in %, seconds, GB/s) for summary.txt."""
    if not rows:
        return ["engine check: no configurations were measured."]
    errs = [abs(r.error) for r in rows]
    errs_sim = [abs(r.error_sim) for r in rows]
    med = statistics.median(errs)
    r0 = rows[0]
    lines = [
        f"engine check ({len(rows)} configurations on torch.distributed.pipelining, {len(r0.stage_layers)} "
        f"stages, global batch {r0.global_batch}, threads = 1 per rank): median |prediction error| "
        f"{med:.1%} (max {max(errs):.1%}; goal <= 15%), simulator makespan alone {statistics.median(errs_sim):.1%}.",
        f"engine check: measured link latency {r0.link_latency_s * 1e6:.1f} us, bandwidth "
        f"{r0.link_bandwidth_GBps:.2f} GB/s; median step noise (IQR/median) "
        f"{statistics.median(r.noise for r in rows):.1%}.",
    ]
    checks = ranking_checks(rows)
    if checks:
        sig = [c for c in checks if c.significant]
        agree = [c for c in sig if c.agrees]
        lines.append(
            f"engine check: uniform vs dp_min_max ranking agrees in {len(agree)} of {len(sig)} "
            f"configurations where the measured difference exceeds the noise ({len(checks)} compared)."
        )
    if not all(math.isfinite(r.loss) for r in rows):
        lines.append("engine check: some runs produced a non-finite loss.")
    return lines
