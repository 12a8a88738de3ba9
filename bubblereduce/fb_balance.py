"""Forward/backward imbalance compensation: partition by Σ(f + α·b) and see whether it pays.

``balance.py`` holds the knobs and calls :func:`cli_main`; everything else happens
here. Backward passes cost more than forwards, and not by the same factor in every
block: a block under activation recomputation (``torch.utils.checkpoint``) runs its
forward again inside its backward (b/f near 3 instead of near 2). Weighting the
backward by ``α > 1`` in the partitioner's cost, ``f + α·b``, keeps blocks with slow
backwards from piling onto one stage. Whether that shortens the simulated step is an
empirical question, answered here against the schedule-aware search
(``partition.schedule_aware``) as the reference best partition.

Steps of :func:`run_balance`:

1. validate the knobs (the main demo's checks, :func:`bubblereduce.demo.validate_config`,
   plus the α knobs and the model knobs here);
2. build the model (:func:`build_balance_model`: the demo MLP with some layers wrapped
   in :class:`Recompute` and a wide output head) and measure it with the package
   profiler at every microbatch size ``global_batch / m``, or load a saved profile;
3. for every schedule x bandwidth x microbatch count, plan ``dp_min_max`` on
   ``f + α·b`` (comm seconds as the tie-break, as in the demo) for every α of the
   sweep, plus ``schedule_aware``, and simulate each
   (:func:`bubblereduce.experiment.simulate_grid`);
4. write results.csv, figures and summary.txt into a staging folder that replaces
   ``out_dir``'s files only when everything succeeded.

α = 1 IS the baseline: ``dp_min_max(f + 1.0·b, ...)`` on the same arrays as the
demo's ``dp_min_max(f + b, ...)`` (``1.0·b == b`` exactly in floating point).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from bubblereduce import demo
from bubblereduce import experiment as ex
from bubblereduce import io as io_mod
from bubblereduce import partition as part_mod
from bubblereduce import report as rp
from bubblereduce.config import print_flush

__all__ = [
    "RECOMPUTE_SUFFIX",
    "HEAD_NAME",
    "MATERIAL_FRACTION",
    "Recompute",
    "build_balance_model",
    "balance_layer_count",
    "alpha_label",
    "alpha_costs",
    "alpha_partition",
    "backward_imbalance",
    "alpha_planners",
    "sweep_alphas",
    "validate_balance_config",
    "profile_balance_model",
    "ratio_table",
    "balance_csv",
    "summary_lines",
    "write_outputs",
    "run_balance",
    "cli_main",
]

RECOMPUTE_SUFFIX = "_ckpt"
"""Suffix of the profiled layer names that run under activation recomputation."""

HEAD_NAME = "head"
"""Name of the output block (``Linear(mlp_widths[-1], head_width)`` + ``LogSoftmax``)."""

MATERIAL_FRACTION = 0.005
"""Step-time changes below this fraction (0.5 %) are called "no material difference" in the summary."""

_REFERENCE = "schedule_aware"
_REL_TOL = 1e-9

Printer = Callable[[str], None]


# --------------------------------------------------------------------------- model


class Recompute(nn.Module):
    """Run ``inner`` under activation recomputation when autograd records a graph.

    With grad enabled, ``forward`` calls ``torch.utils.checkpoint.checkpoint``
    (non-reentrant): the forward keeps only the input, and the backward runs
    ``inner``'s forward again before its own backward, so backward seconds include
    one extra forward. Without grad (inference, the profiler's input pass) it is
    ``inner`` itself. ``inner`` must be deterministic (no dropout): the RNG state is
    not saved for the recomputation.
    """

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        if not isinstance(inner, nn.Module):
            raise TypeError(f"inner must be an nn.Module, got {type(inner).__name__}")
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``inner(x)``; recomputed in the backward when grad is enabled."""
        if torch.is_grad_enabled():
            return checkpoint(self.inner, x, use_reentrant=False, preserve_rng_state=False)
        return self.inner(x)


def _is_int(x: object) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _check_checkpoint_layers(checkpoint_layers: object, num_mlp_layers: int) -> list[int]:
    if isinstance(checkpoint_layers, str) or not isinstance(checkpoint_layers, list | tuple):
        raise ValueError(f"checkpoint_layers must be a list of layer indices, got {checkpoint_layers!r}")
    out = list(checkpoint_layers)
    for k in out:
        if not _is_int(k) or not 0 <= k < num_mlp_layers:
            raise ValueError(
                f"checkpoint_layers must hold MLP layer indices in 0..{num_mlp_layers - 1}, "
                f"got {k!r} in {out!r}"
            )
    if len(set(out)) != len(out):
        raise ValueError(f"checkpoint_layers must not repeat indices, got {out!r}")
    return [int(k) for k in out]


def build_balance_model(
    widths: Sequence[int], checkpoint_layers: Sequence[int], head_width: int, seed: int = 0
) -> nn.Sequential:
    """The demo MLP with recomputed layers and a wide output head, as an ``nn.Sequential``.

    Children, one profiled layer each: ``fc{k}`` = ``models.build_mlp(widths)``'s
    ``Linear(widths[k], widths[k+1]) + ReLU``, wrapped in :class:`Recompute` and named
    ``fc{k}_ckpt`` when ``k`` is in ``checkpoint_layers``; then ``head`` =
    ``Linear(widths[-1], head_width) + LogSoftmax`` (an output layer over
    ``head_width`` classes). Weights come from generators seeded with ``seed`` (MLP)
    and ``seed + 1`` (head), never from torch's global RNG. Widths are feature counts.
    """
    from bubblereduce import models

    if not _is_int(head_width) or head_width < 1:
        raise ValueError(f"head_width must be an integer >= 1, got {head_width!r}")
    mlp = models.build_mlp(list(widths), seed=seed)
    ckpt = set(_check_checkpoint_layers(list(checkpoint_layers), len(mlp)))
    net = nn.Sequential()
    for k, (name, layer) in enumerate(mlp.named_children()):
        if k in ckpt:
            net.add_module(name + RECOMPUTE_SUFFIX, Recompute(layer))
        else:
            net.add_module(name, layer)
    head_linear = models.build_mlp([int(list(widths)[-1]), int(head_width)], seed=seed + 1)[0][0]
    net.add_module(HEAD_NAME, nn.Sequential(head_linear, nn.LogSoftmax(dim=-1)))
    return net


def balance_layer_count(cfg: Mapping[str, Any]) -> int:
    """Profiled layers of the configured model: ``len(mlp_widths) - 1`` MLP layers plus the head."""
    return demo.model_layer_count(_adapter(cfg)) + 1


# --------------------------------------------------------------------------- planning


def _check_alpha(alpha: object, name: str = "alpha") -> float:
    if not (_is_int(alpha) or isinstance(alpha, float | np.floating)) or not math.isfinite(float(alpha)) or float(alpha) < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {alpha!r}")
    return float(alpha)


def alpha_label(alpha: float) -> str:
    """Strategy name of the ``α``-weighted partition: ``alpha_1``, ``alpha_2``, ``alpha_0.5``."""
    return f"alpha_{_check_alpha(alpha):g}"


def alpha_costs(forward_s: Sequence[float] | np.ndarray, backward_s: Sequence[float] | np.ndarray,
                alpha: float) -> np.ndarray:
    """Per-block cost ``f + α·b`` (seconds) that the ``α``-weighted partition balances.

    ``forward_s`` and ``backward_s`` are per-block seconds per microbatch of equal
    length; ``alpha >= 0`` (0: forward only, 1: the usual ``f + b``).
    """
    a = _check_alpha(alpha)
    f = np.asarray(forward_s, dtype=float)
    b = np.asarray(backward_s, dtype=float)
    if f.shape != b.shape or f.ndim != 1:
        raise ValueError(f"forward_s and backward_s must be 1-D of equal length, got shapes {f.shape} and {b.shape}")
    return f + a * b


def alpha_partition(forward_s: Sequence[float] | np.ndarray, backward_s: Sequence[float] | np.ndarray,
                    comm_s: Sequence[float] | np.ndarray, num_stages: int, alpha: float) -> list[tuple[int, int]]:
    """``dp_min_max`` on per-block ``f + α·b`` seconds, with ``comm_s`` (seconds per cut) as the tie-break.

    Returns half-open block ranges (semantics.md §2). ``alpha = 1`` gives exactly the
    baseline ``dp_min_max(f + b, comm_s, num_stages)``.
    """
    return [tuple(p) for p in part_mod.dp_min_max(alpha_costs(forward_s, backward_s, alpha), comm_s, num_stages)]


def backward_imbalance(costs: ex.BlockCosts, parts: Sequence[tuple[int, int]]) -> float:
    """Max stage backward seconds over the mean stage backward (1.0 = perfectly balanced backward).

    Stage backward = sum of the blocks' measured full backward ``b`` in each stage
    of ``parts`` (per microbatch). Raises ``ValueError`` when every stage has zero backward.
    """
    _, b, _ = ex.stage_arrays(costs, parts)
    mean = float(np.mean(b))
    if not mean > 0:
        raise ValueError(f"backward imbalance is undefined: stage backward seconds are {b.tolist()}")
    return float(np.max(b)) / mean


def sweep_alphas(alphas: Sequence[float], alpha: float) -> list[float]:
    """The α values to plan: ``alphas`` plus 1 (the baseline) and ``alpha`` when missing, ascending.

    Each value must be finite, ``>= 0`` and written with at most 6 significant digits
    (its :func:`alpha_label` names it exactly); otherwise ``ValueError`` names it.
    """
    vals = [_check_alpha(a, "alphas") for a in alphas] + [1.0, _check_alpha(alpha)]
    for a in vals:
        if float(f"{a:g}") != a:
            raise ValueError(f"alpha values need at most 6 significant digits (e.g. 1.25), got {a!r}")
    return sorted(set(vals))


def alpha_planners(alphas: Sequence[float], reference: bool = True) -> dict[str, ex.Planner]:
    """Planners named :func:`alpha_label` for each α (``dp_min_max`` on ``f + α·b``), then ``schedule_aware``.

    Each α planner uses the row's block costs (seconds, at the row's microbatch size)
    and the row's comm seconds per cut, like the main demo's ``dp_min_max``. With
    ``reference`` the schedule-aware search (``partition.schedule_aware``, the
    reference best) is added under the name ``schedule_aware``.
    """
    out: dict[str, ex.Planner] = {}
    for a in alphas:
        a = _check_alpha(a, "alphas")

        def plan(ctx: ex.PlanContext, a: float = a) -> list[tuple[int, int]]:
            return alpha_partition(ctx.costs.forward_s, ctx.costs.backward_s, ctx.comm_s, ctx.num_stages, a)

        out[alpha_label(a)] = plan
    if reference:
        out.update(ex.standard_planners(strategies=[_REFERENCE]))
    return out


# --------------------------------------------------------------------------- validation and profiling


def _adapter(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` with the main demo's knobs that balance.py does not have, fixed to harmless values."""
    return {**dict(cfg), "model": "mlp", "slack": 0.0, "engine_check": False}


def validate_balance_config(cfg: Mapping[str, Any]) -> None:
    """Check every knob before any profiling; raise ``ValueError`` naming the bad value and what is allowed.

    The pipeline, batch, link, schedule, profiling and output knobs go through the
    main demo's :func:`bubblereduce.demo.validate_config`; here: ``alpha`` and every
    entry of ``alphas`` finite and ``>= 0`` (``alphas`` a non-empty list without
    repeats), ``head_width`` an integer ``>= 1`` and ``checkpoint_layers`` distinct
    MLP layer indices. Creates nothing.
    """
    demo.validate_config(_adapter(cfg))
    _check_alpha(cfg["alpha"])
    alphas = cfg["alphas"]
    if isinstance(alphas, str) or not isinstance(alphas, list | tuple) or not alphas:
        raise ValueError(f"alphas must be a non-empty list of numbers >= 0, got {alphas!r}")
    for a in alphas:
        _check_alpha(a, "alphas")
    if len({float(a) for a in alphas}) != len(alphas):
        raise ValueError(f"alphas must not repeat values, got {list(alphas)!r}")
    sweep_alphas(alphas, cfg["alpha"])
    if not _is_int(cfg["head_width"]) or cfg["head_width"] < 1:
        raise ValueError(f"head_width must be an integer >= 1, got {cfg['head_width']!r}")
    if cfg["profile_path"] is None:
        _check_checkpoint_layers(cfg["checkpoint_layers"], demo.model_layer_count(_adapter(cfg)))


def profile_balance_model(cfg: Mapping[str, Any], printer: Printer = print) -> list[Any]:
    """Measure :func:`build_balance_model` once per microbatch size ``global_batch / m`` (one ``ModelProfile`` each).

    Uses the package profiler (``profile.profile_microbatch_sizes``, I/W split on)
    with the config's ``warmup``, ``repeats``, ``threads`` and ``seed``; inputs are
    ``models.mlp_input`` of ``mlp_widths[0]`` features. Seconds per microbatch.
    """
    from bubblereduce import models
    from bubblereduce.profile import profile_microbatch_sizes

    widths = [int(w) for w in cfg["mlp_widths"]]
    net = build_balance_model(widths, list(cfg["checkpoint_layers"]), int(cfg["head_width"]), seed=int(cfg["seed"]))
    sizes = [int(cfg["global_batch"]) // int(m) for m in cfg["microbatches"]]
    printer(
        f"profiling the balance model ({len(net)} layers, recomputed: {_recomputed_text(net)}) at microbatch sizes "
        f"{sizes} (warmup {cfg['warmup']}, repeats {cfg['repeats']}, threads {cfg['threads']})"
    )
    t0 = time.perf_counter()
    profiles = profile_microbatch_sizes(
        net,
        lambda size: models.mlp_input(size, widths[0], seed=int(cfg["seed"])),
        sizes,
        progress=lambda line: printer("  " + line),
        warmup=int(cfg["warmup"]),
        repeats=int(cfg["repeats"]),
        threads=cfg["threads"],
        split_backward=True,
        seed=int(cfg["seed"]),
        model_name="mlp+recompute+head",
    )
    printer(f"profiled in {time.perf_counter() - t0:.1f} s")
    return profiles


def _recomputed_text(net: nn.Sequential) -> str:
    names = [n.removesuffix(RECOMPUTE_SUFFIX) for n, _ in net.named_children() if n.endswith(RECOMPUTE_SUFFIX)]
    return ", ".join(names) if names else "none"


# --------------------------------------------------------------------------- text


def _pct(x: float) -> str:
    """A signed fraction as a percentage: 0.0123 -> ``"+1.2 %"``."""
    return f"{x * 100:+.1f} %"


def _block_recomputed(costs: ex.BlockCosts, layer_names: Sequence[str]) -> list[str]:
    """Per block: "all", "none" or "k/n" of its layers recomputed (from the profiled layer names)."""
    out = []
    n_layers = len(layer_names)
    for k in range(costs.num_blocks):
        lo, hi = k * costs.block_n, min((k + 1) * costs.block_n, n_layers)
        flags = [layer_names[i].endswith(RECOMPUTE_SUFFIX) for i in range(lo, hi)]
        out.append("all" if all(flags) else "none" if not any(flags) else f"{sum(flags)}/{len(flags)}")
    return out


def ratio_table(costs: ex.BlockCosts, layer_names: Sequence[str]) -> str:
    """Per-block text table: forward and backward ms, measured b/f, and whether the block is recomputed.

    ``layer_names`` are the profiled layer names (a layer named ``*_ckpt`` runs under
    activation recomputation); blocks are ``costs.block_n`` consecutive layers.
    """
    rec = _block_recomputed(costs, layer_names)
    rows = []
    for k, name in enumerate(costs.names):
        f, b = float(costs.forward_s[k]), float(costs.backward_s[k])
        rows.append([str(k), name, f"{f * 1e3:.3f}", f"{b * 1e3:.3f}", f"{b / f:.2f}" if f > 0 else "n/a", rec[k]])
    return rp.text_table(["block", "layers", "F ms", "B ms", "B/F", "recomputed"], rows)


# --------------------------------------------------------------------------- results


def _cells(rows: Sequence[ex.GridRow]) -> dict[tuple[str, float, int], dict[str, ex.GridRow]]:
    out: dict[tuple[str, float, int], dict[str, ex.GridRow]] = {}
    for r in rows:
        out.setdefault((r.schedule, r.bandwidth_GBps, r.microbatches), {})[r.strategy] = r
    return out


def _alpha_of(strategy: str) -> float | None:
    return float(strategy.removeprefix("alpha_")) if strategy.startswith("alpha_") else None


def balance_csv(
    rows: Sequence[ex.GridRow], costs_for: Callable[[int, int], ex.BlockCosts], extra: Mapping[str, object]
) -> tuple[list[str], list[list[object]]]:
    """CSV header and rows: the grid columns, then ``alpha``, ``gap_to_best``, ``backward_imbalance`` and ``extra``.

    The grid's ``speedup_vs_uniform`` column is named ``speedup_vs_alpha_1`` here (the
    grid's baseline is the α = 1 partition). ``alpha`` is empty for the reference;
    ``gap_to_best`` = makespan / the same cell's schedule_aware makespan - 1 (negative
    when an α partition beats the search); ``backward_imbalance`` = max over mean of
    the per-model-stage backward seconds (:func:`backward_imbalance`).
    """
    header, table = ex.grid_csv(rows)
    header = ["speedup_vs_alpha_1" if h == "speedup_vs_uniform" else h for h in header]
    cells = _cells(rows)
    header += ["alpha", "gap_to_best", "backward_imbalance", *extra]
    out = []
    for r, vals in zip(rows, table, strict=True):
        ref = cells[(r.schedule, r.bandwidth_GBps, r.microbatches)].get(_REFERENCE)
        gap = r.makespan_s / ref.makespan_s - 1 if ref is not None and ref.makespan_s > 0 else math.nan
        imb = backward_imbalance(costs_for(r.microbatches, r.stages_per_device), r.partition)
        out.append([*vals, _alpha_of(r.strategy), gap, imb, *extra.values()])
    return header, out


def _gap(cell: Mapping[str, ex.GridRow], strategy: str) -> float:
    return cell[strategy].makespan_s / cell[_REFERENCE].makespan_s - 1


def _best_alpha(gaps: Mapping[float, float]) -> float:
    """The α with the smallest gap; near-ties (relative 1e-9) go to the α closest to 1, then the smaller."""
    lo = min(gaps.values())
    tied = [a for a, g in gaps.items() if g <= lo + _REL_TOL * (1 + abs(lo))]
    return min(tied, key=lambda a: (abs(a - 1.0), a))


def _mean_gaps(cells: Mapping[tuple[str, float, int], Mapping[str, ex.GridRow]], schedule: str,
               alphas: Sequence[float]) -> dict[float, float]:
    mine = [c for (sc, _, _), c in cells.items() if sc == schedule]
    return {a: float(np.mean([_gap(c, alpha_label(a)) for c in mine])) for a in alphas}


def _ratio_lines(costs_by_m: Mapping[int, ex.BlockCosts], rep_m: int, layer_names: Sequence[str]) -> list[str]:
    rep = costs_by_m[rep_m]
    rec = _block_recomputed(rep, layer_names)
    ratio = np.divide(rep.backward_s, rep.forward_s, out=np.full(rep.num_blocks, math.nan), where=rep.forward_s > 0)
    out = [f"Measured backward/forward ratio b/f per block (m = {rep_m}, {rep.microbatch_size} samples per microbatch):",
           "- " + ", ".join(f"{k} {rep.names[k]} {ratio[k]:.2f}" for k in range(rep.num_blocks)) + "."]
    groups = {
        "recomputed": [k for k, r in enumerate(rec) if r == "all"],
        "partly recomputed": [k for k, r in enumerate(rec) if r not in ("all", "none")],
        "plain": [k for k, r in enumerate(rec) if r == "none" and HEAD_NAME not in rep.names[k]],
        "head": [k for k in range(rep.num_blocks) if HEAD_NAME in rep.names[k]],
    }
    texts = []
    for label, ks in groups.items():
        vals = sorted(float(ratio[k]) for k in ks)
        if len(vals) == 1:
            texts.append(f"{label} {vals[0]:.2f}")
        elif vals:
            texts.append(f"{label} {vals[0]:.2f} to {vals[-1]:.2f} (median {statistics.median(vals):.2f})")
    out.append("- b/f by kind of block: " + "; ".join(texts) + ".")
    if len(costs_by_m) > 1:
        per_block = np.array([np.divide(c.backward_s, c.forward_s, out=np.full(c.num_blocks, math.nan),
                                        where=c.forward_s > 0) for c in costs_by_m.values()])
        spread = per_block.max(axis=0) / per_block.min(axis=0)
        k = int(np.argmax(spread))
        out.append(
            f"- The same block's b/f across the {len(costs_by_m)} microbatch sizes varies by a factor of"
            f" {statistics.median(spread.tolist()):.2f} (median over blocks), up to {spread[k]:.2f} (block {k}):"
            " timing noise and per-call overhead of small layers; the partitions use the values measured"
            " at each configuration's own microbatch size."
        )
    return out


def summary_lines(
    rows: Sequence[ex.GridRow],
    cfg: Mapping[str, Any],
    meta: Any,
    costs_by_m: Mapping[int, ex.BlockCosts],
    layer_names: Sequence[str],
    alphas: Sequence[float],
) -> list[str]:
    """Sentences a paper can quote, each with units and the configuration it came from, and a verdict.

    ``rows`` is the grid (α planners and ``schedule_aware``), ``cfg`` the resolved
    config, ``meta`` the profile's ``ProfileMeta``, ``costs_by_m`` the single-stage
    block costs per microbatch count (measured at that count's microbatch size),
    ``layer_names`` the profiled layer names and ``alphas`` the planned α values.
    Deterministic text (no wall-clock times or paths).
    """
    alpha = float(cfg["alpha"])
    a_name, base = alpha_label(alpha), alpha_label(1.0)
    rep_m = int(cfg["representative_microbatches"])
    rep_bw = float(cfg["representative_bandwidth_GBps"])
    rep_costs = costs_by_m[rep_m]
    cells = _cells(rows)
    schedules = list(dict.fromkeys(r.schedule for r in rows))
    bws = sorted({r.bandwidth_GBps for r in rows})
    mbs = sorted({r.microbatches for r in rows})
    has_ref = any(r.strategy == _REFERENCE for r in rows)
    lines = [
        "BubbleReduce forward/backward balance summary",
        "",
        f"Setup: {len(layer_names)} profiled layers ({', '.join(layer_names)}; '{RECOMPUTE_SUFFIX}' = activation"
        f" recomputation, '{HEAD_NAME}' = wide output layer), blocks of {cfg['block_n']} layers (multi-stage"
        f" schedules: {cfg['multi_stage_block_n']}), {cfg['num_stages']} devices, global batch {cfg['global_batch']}"
        f" samples split into m = {', '.join(map(str, mbs))} microbatches; links {', '.join(f'{b:g}' for b in bws)}"
        f" GB/s with {rp.fmt_time(float(cfg['latency_s']))} latency, comm_mode {cfg['comm_mode']}; costs measured on"
        f" {meta.device} ({meta.dtype}, {meta.threads} thread{'' if meta.threads == 1 else 's'}, torch"
        f" {meta.torch_version}, median of {meta.repeats} runs).",
        f"Partitions: dp_min_max on per-block f + alpha*b seconds (comm seconds per cut as the tie-break) for"
        f" alpha = {', '.join(f'{a:g}' for a in alphas)}; baseline alpha = 1 (= f + b), compared alpha = {alpha:g}"
        + ("; reference best = partition.schedule_aware (search on the simulated step time)" if has_ref else "")
        + "; every partition is planned for the configuration it runs in.",
        f"Representative configuration: m = {rep_m} ({rep_costs.microbatch_size} samples per microbatch), {rep_bw:g} GB/s.",
    ]
    work = rp.compute_per_step_line([r for r in rows if r.strategy == base], mbs)
    if work is not None:
        lines.append(work)
    lines += ["", *_ratio_lines(costs_by_m, rep_m, layer_names)]

    # backward balance at the representative configuration (single-stage schedules)
    single = next((s for s in schedules if (s, rep_bw, rep_m) in cells
                   and cells[(s, rep_bw, rep_m)][base].stages_per_device == 1), None)
    if single is not None:
        c = cells[(single, rep_bw, rep_m)]
        p0, p1 = c[base].partition, c[a_name].partition
        i0, i1 = backward_imbalance(rep_costs, p0), backward_imbalance(rep_costs, p1)
        f0, b0, _ = ex.stage_arrays(rep_costs, p0)
        f1, b1, _ = ex.stage_arrays(rep_costs, p1)
        bn0, bn1 = float(np.max(f0 + b0)), float(np.max(f1 + b1))
        lines += [
            "",
            f"Backward balance ({cfg['num_stages']} stages, m = {rep_m}, {rep_bw:g} GB/s; max stage backward / mean"
            " stage backward, 1 = balanced):",
            f"- alpha = 1 [{ex.partition_text(p0)}]: {i0:.3f}; alpha = {alpha:g} [{ex.partition_text(p1)}]: {i1:.3f}"
            + (" (the same partition)." if p0 == p1 else f" ({_pct(i1 / i0 - 1)})."),
            f"- Max stage forward / mean: {float(np.max(f0) / np.mean(f0)):.3f} -> {float(np.max(f1) / np.mean(f1)):.3f};"
            f" bottleneck f + b per microbatch {rp.fmt_time(bn0)} -> {rp.fmt_time(bn1)} ({_pct(bn1 / bn0 - 1)}).",
        ]

    lines += ["", f"Step time, alpha = {alpha:g} vs alpha = 1 (speedup = alpha-1 step time / alpha-{alpha:g} step time):"]
    for s in schedules:
        texts = []
        for bw in bws:
            c = cells.get((s, bw, rep_m))
            if c is None:
                continue
            over = [cells[(s, bw, m)][base].makespan_s / cells[(s, bw, m)][a_name].makespan_s
                    for m in mbs if (s, bw, m) in cells]
            texts.append(
                f"{bw:g} GB/s {c[base].makespan_s / c[a_name].makespan_s:.3f}x"
                f" ({rp.fmt_time(c[a_name].makespan_s)} vs {rp.fmt_time(c[base].makespan_s)};"
                f" over m: {min(over):.3f}x to {max(over):.3f}x)"
            )
        if texts:
            lines.append(f"- {s}, m = {rep_m}: " + "; ".join(texts) + ".")

    if has_ref:
        lines += ["", "Gap to the schedule-aware best per alpha (gap = step time / schedule_aware step time - 1;"
                      " mean over all bandwidths and m; best = smallest mean gap, ties to the alpha nearest 1):"]
        for s in schedules:
            gaps = _mean_gaps(cells, s, alphas)
            best = _best_alpha(gaps)
            rep = cells.get((s, rep_bw, rep_m))
            text = (f"- {s}: best alpha {best:g} ({_pct(gaps[best])}); by alpha: "
                    + ", ".join(f"{a:g} {_pct(g)}" for a, g in gaps.items()))
            if rep is not None:
                rg = {a: _gap(rep, alpha_label(a)) for a in alphas}
                text += f"; at m = {rep_m}, {rep_bw:g} GB/s: best alpha {_best_alpha(rg):g}, alpha = 1 {_pct(rg[1.0])}"
            beat = min(_gap(c, alpha_label(a)) for (sc, _, _), c in cells.items() if sc == s for a in alphas)
            if beat < -_REL_TOL:
                text += f"; some alpha beats schedule_aware somewhere (by up to {-beat * 100:.1f} %)"
            lines.append(text + ".")
    lines += _verdict_lines(cells, schedules, alphas, alpha, has_ref, rep_costs)
    return lines


def _verdict_lines(
    cells: Mapping[tuple[str, float, int], Mapping[str, ex.GridRow]],
    schedules: Sequence[str], alphas: Sequence[float], alpha: float, has_ref: bool, rep_costs: ex.BlockCosts,
) -> list[str]:
    a_name, base = alpha_label(alpha), alpha_label(1.0)
    tol = MATERIAL_FRACTION
    tol_txt = f"{tol * 100:g} %"
    out = ["", f"Verdict (a step-time change counts as material above {tol_txt}):",
           f"- alpha = {alpha:g} vs alpha = 1, step-time gain per schedule (positive = alpha = {alpha:g} faster):"]
    verdict: dict[str, list[str]] = {"helps": [], "no material difference": [], "hurts": []}
    all_gains = []
    for s in schedules:
        gains = [c[base].makespan_s / c[a_name].makespan_s - 1 for (sc, _, _), c in cells.items() if sc == s]
        all_gains += gains
        mean = float(np.mean(gains))
        key = "helps" if mean > tol else "hurts" if mean < -tol else "no material difference"
        verdict[key].append(
            f"{s} (mean {_pct(mean)}; faster in {sum(g > tol for g in gains)}, slower in"
            f" {sum(g < -tol for g in gains)} of {len(gains)}; range {_pct(min(gains))} to {_pct(max(gains))})"
        )
    for key, texts in verdict.items():
        out.append(f"  {key}: {'; '.join(texts) if texts else 'no schedule'}.")
    n = len(all_gains)
    changed = [c for c in cells.values() if c[a_name].partition != c[base].partition]
    faster = sum(c[base].makespan_s / c[a_name].makespan_s - 1 > tol for c in changed)
    slower = sum(c[base].makespan_s / c[a_name].makespan_s - 1 < -tol for c in changed)
    share0 = alpha_costs(rep_costs.forward_s, rep_costs.backward_s, 1.0)
    share1 = alpha_costs(rep_costs.forward_s, rep_costs.backward_s, alpha)
    moved = float(np.max(np.abs((share1 / share1.sum()) / (share0 / share0.sum()) - 1)))
    out.append(
        f"- In plain words: weighting the backward by alpha = {alpha:g} changes the alpha = 1 partition in"
        f" {len(changed)} of {n} configurations (it moves a block's share of the total cost by at most"
        f" {moved * 100:.1f} % at the representative microbatch size)"
        + (f"; where it does, it is faster in {faster}, slower in {slower} and within {tol_txt} in"
           f" {len(changed) - faster - slower}. " if changed else ", so every step time is the same. ")
        + (f"alpha = {alpha:g} helps under {', '.join(t.split(' (')[0] for t in verdict['helps'])} and"
           if verdict["helps"] else f"alpha = {alpha:g} helps under no schedule here and")
        + (f" hurts under {', '.join(t.split(' (')[0] for t in verdict['hurts'])}."
           if verdict["hurts"] else " hurts under none.")
    )
    if changed:
        with_links = [c[base].makespan_s / c[a_name].makespan_s - 1 for c in changed]
        free = [c[base].makespan_no_comm_s / c[a_name].makespan_no_comm_s - 1 for c in changed]
        less = sum(c[a_name].boundary_bytes_total < c[base].boundary_bytes_total for c in changed)
        more = sum(c[a_name].boundary_bytes_total > c[base].boundary_bytes_total for c in changed)
        g_link, g_free = float(np.mean(with_links)), float(np.mean(free))
        text = (
            f"- Compute balance vs communication: in those {len(changed)} configurations the mean step-time gain of"
            f" alpha = {alpha:g} is {_pct(g_link)} with the links and {_pct(g_free)} on free links (the same partitions,"
            f" no transfer time; faster in {sum(g > tol for g in free)}, slower in {sum(g < -tol for g in free)});"
            f" its cuts move less boundary traffic in {less} and more in {more} of them"
        )
        if abs(g_link) > tol and abs(g_free) < abs(g_link) / 2:
            text += (", so most of the difference comes from where the moved cut falls on the links,"
                     " not from balancing forward and backward compute.")
        elif g_free > tol:
            text += f", so alpha = {alpha:g} also helps the compute alone."
        elif g_free < -tol:
            text += f", so alpha = {alpha:g} unbalances the compute itself."
        else:
            text += "."
        out.append(text)
    if not has_ref:
        return out
    best = {s: _best_alpha(_mean_gaps(cells, s, alphas)) for s in schedules}
    below = [f"{s} ({a:g})" for s, a in best.items() if a < 1]
    at_one = [s for s, a in best.items() if a == 1]
    above = [f"{s} ({a:g})" for s, a in best.items() if a > 1]
    out.append(
        "- Best fixed alpha per schedule: "
        + "; ".join(f"{label}: {', '.join(v) if v else 'none'}"
                    for label, v in (("below 1", below), ("alpha = 1", at_one), ("above 1", above)))
        + "."
    )
    g1 = [_gap(c, base) for c in cells.values()]
    ga = [_gap(c, a_name) for c in cells.values()]
    g_any = [min(_gap(c, alpha_label(a)) for a in alphas) for c in cells.values()]
    near = sum(g <= tol for g in g1)
    big = [s for s in schedules if max(_gap(c, base) for (sc, _, _), c in cells.items() if sc == s) > 10 * tol]
    out.append(
        f"- alpha = 1 is within {tol_txt} of the schedule-aware best in {near} of {n} configurations (median gap"
        f" {_pct(statistics.median(g1))}, worst {_pct(max(g1))}); alpha = {alpha:g}: median {_pct(statistics.median(ga))},"
        f" worst {_pct(max(ga))}; even the best alpha of the sweep chosen per configuration: median"
        f" {_pct(statistics.median(g_any))}, worst {_pct(max(g_any))}."
    )
    if statistics.median(g1) <= tol:
        head = "With f and b measured per block (recomputation included in b), alpha = 1 is already near the best partition"
    else:
        head = f"alpha = 1 is a median {statistics.median(g1) * 100:.1f} % from the best partition"
    if big:
        worst = []
        for s in big:
            mine = [(g1[k], g_any[k]) for k, key in enumerate(cells) if key[0] == s]
            worst.append(f"{s} {max(g for g, _ in mine) * 100:.1f} % -> {max(g for _, g in mine) * 100:.1f} %")
        tail = (
            f"; where alpha = 1 is more than {10 * tol * 100:g} % from it somewhere, the worst gap goes from alpha = 1"
            f" to the best alpha of the sweep chosen per configuration as: {', '.join(worst)}; what remains needs"
            " the schedule-aware search, which times the schedule itself."
        )
    else:
        tail = f"; no schedule leaves a gap above {10 * tol * 100:g} %."
    out.append(f"- {head}{tail}")
    return out


# --------------------------------------------------------------------------- outputs


def write_outputs(
    tmp: Path,
    rows: Sequence[ex.GridRow],
    cfg: Mapping[str, Any],
    profiles: Sequence[Any],
    costs_for: Callable[[int, int], ex.BlockCosts],
    summary: Sequence[str],
    printer: Printer = print,
) -> list[str]:
    """Write every output of balance.py into the staging folder ``tmp``; return the file names.

    results.csv (:func:`balance_csv`); per schedule and bandwidth ``makespan_``,
    ``bubble_`` and ``speedup_`` plots vs microbatches for α = 1, the compared α and
    schedule_aware; ``stage_loads_baseline.png`` and ``stage_loads_alpha.png`` (same
    y scale) at the representative configuration; ``alpha_sweep.png`` (step time over
    the schedule-aware best vs α per schedule, representative configuration);
    profile.json, config.json, env.json and summary.txt.
    """
    from bubblereduce import plotting

    alpha = float(cfg["alpha"])
    a_name, base = alpha_label(alpha), alpha_label(1.0)
    rep_m = int(cfg["representative_microbatches"])
    rep_bw = float(cfg["representative_bandwidth_GBps"])
    extra = {"global_batch": int(cfg["global_batch"]), "latency_s": float(cfg["latency_s"]),
             "comm_mode": str(cfg["comm_mode"]), "compared_alpha": alpha}
    header, table = balance_csv(rows, costs_for, extra)
    io_mod.write_csv(tmp / "results.csv", header, table)
    names = ["results.csv"]

    cells = _cells(rows)
    schedules = list(dict.fromkeys(r.schedule for r in rows))
    bws = list(dict.fromkeys(r.bandwidth_GBps for r in rows))
    shown = {base: "alpha = 1 (f + b, baseline)", a_name: f"alpha = {alpha:g} (f + {alpha:g} b)",
             _REFERENCE: "schedule_aware (reference best)"}
    shown = {k: v for k, v in shown.items() if any(r.strategy == k for r in rows)}
    metrics = [
        ("makespan", "step time (ms)", lambda r: r.makespan_s * 1e3, list(shown)),
        ("bubble", "bubble fraction (idle share of device time)", lambda r: r.bubble_fraction, list(shown)),
        ("speedup", "speedup vs alpha = 1 (x)", lambda r: r.speedup_vs_uniform, [k for k in shown if k != base]),
    ]
    for s in schedules:
        mbs = sorted({m for (sc, _, m) in cells if sc == s})
        for bw in bws:
            tok = ex.bandwidth_token(bw)
            for prefix, ylabel, get, strategies in metrics:
                series = {shown[k]: [get(cells[(s, bw, m)][k]) for m in mbs] for k in strategies}
                fname = f"{prefix}_{s}_{tok}.png"
                plotting.plot_lines(
                    mbs, series, tmp / fname,
                    xlabel=f"microbatches m (global batch {cfg['global_batch']})", ylabel=ylabel,
                    title=f"{s}, {cfg['num_stages']} devices, {bw:g} GB/s: {prefix} vs microbatches",
                    logx=True,
                    reference_y=1.0 if prefix == "speedup" else None,
                    reference_label="alpha = 1" if prefix == "speedup" else None,
                )
                names.append(fname)
    printer(f"plotted {len(names) - 1} makespan/bubble/speedup figures")

    # stage loads: the single-stage partitions at the representative configuration
    rep_costs = costs_for(rep_m, 1)
    single = next((s for s in schedules if cells.get((s, rep_bw, rep_m), {}).get(base) is not None
                   and cells[(s, rep_bw, rep_m)][base].stages_per_device == 1), None)
    if single is not None:
        c = cells[(single, rep_bw, rep_m)]
        loads = [(base, "stage_loads_baseline.png", "alpha = 1 (f + b)"),
                 (a_name, "stage_loads_alpha.png", f"alpha = {alpha:g} (f + {alpha:g} b)")]
        arrays = {k: ex.stage_arrays(rep_costs, c[k].partition) for k, _, _ in loads}
        ymax = max(float(np.max(f + b)) for f, b, _ in arrays.values())
        for key, fname, label in loads:
            f, b, _ = arrays[key]
            parts = c[key].partition
            plotting.plot_stage_loads(
                f, b, tmp / fname, ymax=ymax,
                title=(f"{label}, blocks [{ex.partition_text(parts)}]\nm = {rep_m}, {rep_bw:g} GB/s;"
                       f" max/mean stage backward {backward_imbalance(rep_costs, parts):.2f}"),
                stage_labels=[f"s{k} [{a}:{e}]" for k, (a, e) in enumerate(parts)],
            )
            names.append(fname)

    # alpha sweep
    alphas = sorted({a for r in rows if (a := _alpha_of(r.strategy)) is not None})
    if any(r.strategy == _REFERENCE for r in rows):
        series = {s: [_gap(cells[(s, rep_bw, rep_m)], alpha_label(a)) + 1 for a in alphas]
                  for s in schedules if (s, rep_bw, rep_m) in cells}
        ylabel = "step time / schedule-aware best (x)"
        ref_label = "schedule_aware (reference best)"
    else:
        series = {s: [cells[(s, rep_bw, rep_m)][alpha_label(a)].makespan_s * 1e3 for a in alphas]
                  for s in schedules if (s, rep_bw, rep_m) in cells}
        ylabel, ref_label = "step time (ms)", None
    plotting.plot_lines(
        list(range(len(alphas))), series, tmp / "alpha_sweep.png", xticklabels=[f"{a:g}" for a in alphas],
        xlabel="alpha (partition cost f + alpha * b; sweep values, evenly spaced)", ylabel=ylabel,
        title=f"alpha sweep, {cfg['num_stages']} devices, m = {rep_m}, {rep_bw:g} GB/s",
        reference_y=1.0 if ref_label else None, reference_label=ref_label,
    )
    names.append("alpha_sweep.png")

    names += io_mod.write_run_record(tmp, config=cfg, summary="\n".join(summary), profiles=profiles)
    return names


def run_balance(cfg: Mapping[str, Any], printer: Printer = print) -> Path:
    """Run the whole balance experiment for the resolved config ``cfg``; return the output folder.

    Raises ``ValueError`` for bad input before any profiling or writing; on any later
    error nothing is moved into ``out_dir`` (outputs are staged and committed at the end).
    """
    t_start = time.perf_counter()
    validate_balance_config(cfg)
    adapted = _adapter(cfg)
    loaded = demo.load_or_check_profile(adapted)
    demo.validate_model_fit(adapted, balance_layer_count(cfg) if loaded is None else len(loaded[0].layers))
    alphas = sweep_alphas(cfg["alphas"], cfg["alpha"])
    with io_mod.StagedOutput(cfg["out_dir"]) as tmp:
        if loaded is None:
            profiles = profile_balance_model(cfg, printer)
        else:
            printer(f"loaded profile '{cfg['profile_path']}' ({len(loaded)} microbatch sizes)")
            profiles = loaded
        by_m = dict(zip(cfg["microbatches"], profiles, strict=True))
        costs_for = ex.block_cost_lookup(by_m, cfg["block_n"], cfg["multi_stage_block_n"])

        rep_m = int(cfg["representative_microbatches"])
        layer_names = list(by_m[rep_m].names)
        printer(f"\nmeasured per-block costs, m = {rep_m} ({cfg['global_batch'] // rep_m} samples per microbatch):")
        printer(ratio_table(costs_for(rep_m, 1), layer_names))

        schedules = ex.runnable_microbatches(cfg["schedules"], cfg["num_stages"], cfg["microbatches"],
                                             cfg["stages_per_device"], printer)
        printer("")
        rows = ex.simulate_grid(
            costs_for,
            alpha_planners(alphas),
            schedules=list(schedules),
            microbatches=schedules,
            bandwidths_GBps=[float(b) for b in cfg["bandwidths_GBps"]],
            num_devices=int(cfg["num_stages"]),
            latency_s=float(cfg["latency_s"]),
            comm_mode=cfg["comm_mode"],
            stages_per_device=int(cfg["stages_per_device"]),
            baseline=alpha_label(1.0),
            progress=printer,
        )
        rep_bw = float(cfg["representative_bandwidth_GBps"])
        rep_cell = _cells(rows)
        shown = next((s for s in schedules if ex.model_stages_per_device(s, int(cfg["stages_per_device"])) == 1),
                     next(iter(schedules)))
        for key, label in ((alpha_label(1.0), "alpha = 1"), (alpha_label(float(cfg["alpha"])), f"alpha = {cfg['alpha']:g}")):
            r = rep_cell[(shown, rep_bw, rep_m)][key]
            s = shown
            printer(f"\n{label} partition ({r.num_stages} stages, {s}, m = {rep_m}, {rep_bw:g} GB/s):")
            printer(rp.partition_table(costs_for(rep_m, r.stages_per_device), r.partition))
        costs_by_m = {int(m): costs_for(int(m), 1) for m in cfg["microbatches"]}
        summary = summary_lines(rows, cfg, profiles[0].meta, costs_by_m, layer_names, alphas)
        write_outputs(tmp, rows, cfg, profiles, costs_for, summary, printer)
    printer("\n" + "\n".join(summary))
    printer(f"\nwrote {Path(cfg['out_dir'])}/: results.csv, makespan_/bubble_/speedup_<schedule>_<bw>.png,"
            " stage_loads_baseline.png, stage_loads_alpha.png, alpha_sweep.png, profile.json, config.json,"
            " env.json, summary.txt")
    printer(f"wall time {time.perf_counter() - t_start:.1f} s")
    return Path(cfg["out_dir"])


def cli_main(defaults: Mapping[str, Any], argv: Sequence[str], printer: Printer = print_flush) -> int:
    """Resolve ``--key=value`` overrides of ``defaults``, print them and run :func:`run_balance`; return the exit code.

    Bad input (unknown key, wrong type, invalid value, missing or corrupt profile,
    unwritable ``out_dir``: any ``ValueError``) prints one line ``error: <message>``
    to stderr and returns 2; nothing is written into ``out_dir`` then. Ctrl-C returns
    130, success 0.
    """
    from bubblereduce.config import format_config, resolve_config, run_main

    def main() -> int:
        cfg = resolve_config(dict(defaults), list(argv))
        printer(format_config(cfg))
        run_balance(cfg, printer)
        return 0

    return run_main(main)
