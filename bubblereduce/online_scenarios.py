"""Scenarios, baseline policies, the experiment loop and its summary (issue 7).

Every scenario draws ONE seeded series of per-block cost multipliers, shared by
every policy: a noise-free "regime" part (drift or straggler; all ones for
jitter only) times per-block, per-step lognormal jitter (mean 1). A step's true
per-block seconds are the profile's times multiplied by that step's multipliers;
every policy's partition is simulated on them. Policies:

- ``static``: the DP min-max partition of the profile, never changed;
- ``online``: :class:`bubblereduce.online.OnlineController`;
- ``periodic``: DP on the observed per-block estimates every ``replan_every_steps``
  steps, paying the migration stall of every block that changes stage;
- ``regime_oracle``: DP on the noise-free regime costs of each step, moves for free
  (knows the persistent slowdown; the realistic target);
- ``hindsight_oracle``: DP on each step's true (noisy) costs, moves for free
  (upper bound only).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bubblereduce.config import print_flush
from bubblereduce.online import (
    PLANNERS,
    SCENARIOS,
    BlockEstimator,
    Decision,
    OnlineConfig,
    OnlineController,
    PipelineModel,
    cuts_from_parts,
)
from bubblereduce.partition import dp_min_max
from bubblereduce.schedule_search import schedule_aware, stages_per_device_for

__all__ = [
    "run_online",
    "cli_main",
    "POLICIES",
    "scenario_series",
    "plan_partition",
    "REGIME_REPLAN_REL",
    "static_capacity_bytes",
    "PolicyTrace",
    "ScenarioRun",
    "run_scenario",
    "run_experiment",
    "oscillations",
    "summarize",
    "Goal",
    "check_goals",
    "summary_text",
    "CSV_HEADER",
    "csv_rows",
    "write_figures",
]

POLICIES: tuple[str, ...] = ("static", "online", "periodic", "regime_oracle", "hindsight_oracle")

Parts = tuple[tuple[int, int], ...]

REGIME_REPLAN_REL = 0.005
"""The regime oracle re-plans when a block's regime multiplier moved by more than this (relative)."""


def scenario_series(
    scenario: str, num_blocks: int, static_parts: Sequence[tuple[int, int]], cfg: OnlineConfig, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The shared multiplier series of one scenario: ``(regime, jitter)``, each (steps, blocks).

    ``jitter``: ``exp(sigma z - sigma^2 / 2)`` per block and step (mean 1), drawn
    from ``seed`` alone, so every scenario of a seed sees the same jitter.
    ``regime`` (noise-free, what the regime oracle knows): ones for
    ``"jitter"``; for ``"drift"`` ``1 + drift_strength × (t / (steps-1)) × d_i``
    with ``d`` a smooth random field over the blocks scaled to [0, 1] (some
    blocks slowly get up to ``drift_strength`` slower, others stay put); for
    ``"straggler"`` the blocks of one random stage of ``static_parts`` are
    ``straggler_factor`` × slower from ``round(straggler_start_frac × steps)`` for
    ``round(straggler_duration_frac × steps)`` steps.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; allowed: {', '.join(SCENARIOS)}")
    steps, sigma = cfg.steps, cfg.jitter_sigma
    rng_jitter = np.random.default_rng([seed, 0])
    jitter = np.exp(sigma * rng_jitter.standard_normal((steps, num_blocks)) - 0.5 * sigma**2)
    rng = np.random.default_rng([seed, 1 + SCENARIOS.index(scenario)])
    regime = np.ones((steps, num_blocks))
    if scenario == "drift":
        x = np.linspace(0.0, 1.0, num_blocks)
        field = sum(rng.standard_normal() * np.cos(np.pi * k * x + rng.uniform(0, 2 * np.pi)) for k in (1, 2))
        span = float(np.ptp(field))
        d = (field - field.min()) / span if span > 0 else np.ones(num_blocks)
        ramp = np.arange(steps) / max(steps - 1, 1)
        regime = 1.0 + cfg.drift_strength * ramp[:, None] * d[None, :]
    elif scenario == "straggler":
        stage = int(rng.integers(len(static_parts)))
        s, e = static_parts[stage]
        t0 = int(round(cfg.straggler_start_frac * steps))
        t1 = min(steps, t0 + int(round(cfg.straggler_duration_frac * steps)))
        regime[t0:t1, s:e] *= cfg.straggler_factor
    return regime, jitter


def plan_partition(model: PipelineModel, f_s: np.ndarray, b_s: np.ndarray, w_s: np.ndarray | None,
                   planner: str | None = None) -> Parts:
    """A full plan for per-block seconds per microbatch, with ``planner`` (default ``cfg.planner``).

    ``"dp_min_max"``: minimum bottleneck of f + b; the cut cost of block i is
    the link seconds its activation and gradient take per step (``2 m
    comm_i``), used to break ties. ``"schedule_aware"``: the partition with
    the smallest simulated step time for the configured schedule (exhaustive
    for small instances, else local search from DP seeds; never slower than
    ``dp_min_max``).
    """
    cfg = model.cfg
    planner = cfg.planner if planner is None else planner
    comm = model.act_bytes / (cfg.bandwidth_GBps * 1e9)
    if planner == "dp_min_max":
        parts = dp_min_max(np.asarray(f_s) + np.asarray(b_s), 2 * cfg.microbatches * comm, cfg.num_stages)
    elif planner == "schedule_aware":
        w = None
        if model.uses_w:
            assert w_s is not None
            w = np.minimum(w_s, b_s)
        parts = schedule_aware(f_s, b_s, comm, cfg.num_stages, cfg.schedule, cfg.microbatches, w=w,
                               stages_per_device=stages_per_device_for(cfg.schedule))
    else:
        raise ValueError(f"planner must be one of {', '.join(PLANNERS)}; got {planner!r}")
    return tuple((int(s), int(e)) for s, e in parts)


def static_capacity_bytes(model: PipelineModel, static_parts: Parts) -> float:
    """Device memory in bytes: ``cfg.device_memory_bytes``, or if 0, 1.5 × the static plan's largest device."""
    if model.cfg.device_memory_bytes > 0:
        return float(model.cfg.device_memory_bytes)
    return 1.5 * float(model.device_memory_bytes(static_parts).max())


@dataclass(frozen=True)
class PolicyTrace:
    """Per-step record of one policy (seconds; ``cuts[t]``: stage start blocks at step t)."""

    policy: str
    makespan_s: np.ndarray
    stall_s: np.ndarray
    bubble_fraction: np.ndarray
    cuts: tuple[tuple[int, ...], ...]
    moved: np.ndarray  # bool: the partition changed by a move/re-plan before this step
    rolled_back: np.ndarray  # bool: a rollback happened before this step
    pause: tuple[str, ...]  # "" or the guard that blocked a paying move

    @property
    def step_time_s(self) -> np.ndarray:
        """Makespan plus migration stall of every step (seconds)."""
        return self.makespan_s + self.stall_s

    @property
    def total_s(self) -> float:
        """Total time of the run in seconds, migration included."""
        return float(self.step_time_s.sum())


@dataclass(frozen=True)
class ScenarioRun:
    """All policies on one scenario and seed."""

    scenario: str
    seed: int
    static_parts: Parts
    capacity_bytes: float
    traces: dict[str, PolicyTrace]


def run_scenario(model: PipelineModel, scenario: str, seed: int, *,
                 static_parts: Parts | None = None, capacity_bytes: float | None = None) -> ScenarioRun:
    """Run every policy in :data:`POLICIES` on one scenario's shared series for ``cfg.steps`` steps.

    Before step t each policy picks its partition (the online and periodic
    policies from per-stage measurements of steps < t only; the oracles from
    the series they are allowed to know); all policies then run step t on the
    same true per-block seconds and the online/periodic ones are fed the
    per-stage seconds per microbatch they would measure. The hindsight oracle
    takes, per step, the fastest of a DP on that step's true costs and every
    other policy's partition (free moves: an upper bound). Deterministic for a
    given seed.
    """
    cfg = model.cfg
    n, steps = model.num_blocks, cfg.steps
    base_w = model.base_weight_s
    if static_parts is None:
        static_parts = plan_partition(model, model.forward_s, model.backward_s, base_w)
    if capacity_bytes is None:
        capacity_bytes = static_capacity_bytes(model, static_parts)
    regime, jitter = scenario_series(scenario, n, static_parts, cfg, seed)
    mult = regime * jitter
    f_all, b_all = model.forward_s * mult, model.backward_s * mult
    w_all = base_w * mult if base_w is not None else None

    online = OnlineController(model, static_parts, capacity_bytes)
    periodic = _Periodic(model, static_parts)
    live = [p for p in POLICIES if p != "hindsight_oracle"]
    decisions: dict[str, list[Decision]] = {p: [] for p in live}
    dp_parts: list[Parts] = []
    regime_at, regime_parts = None, static_parts
    for t in range(steps):
        f_t, b_t = f_all[t], b_all[t]
        w_t = None if w_all is None else w_all[t]
        if regime_at is None or np.max(np.abs(regime[t] / regime_at - 1.0)) > REGIME_REPLAN_REL:
            regime_at = regime[t]
            rw = None if base_w is None else base_w * regime_at
            regime_parts = plan_partition(model, model.forward_s * regime_at, model.backward_s * regime_at, rw)
        decisions["static"].append(Decision(static_parts))
        decisions["online"].append(online.decide(t))
        decisions["periodic"].append(periodic.decide(t))
        decisions["regime_oracle"].append(Decision(regime_parts))
        dp_parts.append(plan_partition(model, f_t, b_t, w_t, planner="dp_min_max"))
        for ctrl, name in ((online, "online"), (periodic, "periodic")):
            parts = decisions[name][t].parts
            ctrl.observe(*[model.stage_sums(parts, x) for x in (f_t, b_t, w_t) if x is not None])

    # time every (step, partition) pair, batched per distinct partition
    timed: dict[Parts, np.ndarray] = {}  # partition -> makespan per step (nan where not needed)

    def need(parts: Parts, rows: np.ndarray) -> None:
        arr = timed.setdefault(parts, np.full(steps, np.nan))
        rows = rows[np.isnan(arr[rows])]
        if rows.size:
            arr[rows] = model.makespans(parts, f_all[rows], b_all[rows], None if w_all is None else w_all[rows])

    per_step_parts = {p: [d.parts for d in decisions[p]] for p in live}
    per_step_parts["dp"] = dp_parts
    for plist in per_step_parts.values():
        groups: dict[Parts, list[int]] = {}
        for t, parts in enumerate(plist):
            groups.setdefault(parts, []).append(t)
        for parts, rows in groups.items():
            need(parts, np.asarray(rows))
    idx = np.arange(steps)
    traces = {}
    for p in live:
        ds = decisions[p]
        makespan = np.array([timed[d.parts][t] for t, d in enumerate(ds)])
        cuts = tuple(cuts_from_parts(d.parts) for d in ds)
        prev = [cuts_from_parts(static_parts), *cuts[:-1]]
        traces[p] = PolicyTrace(
            p, makespan, np.array([d.stall_s for d in ds]), model.bubble_fractions(makespan, f_all, b_all), cuts,
            np.array([c != q and d.kind != "rollback" for c, q, d in zip(cuts, prev, ds, strict=True)]),
            np.array([d.kind == "rollback" for d in ds]), tuple(d.pause or "" for d in ds),
        )
    # hindsight oracle: per step the fastest of the DP on true costs and every policy's partition
    cands = [per_step_parts[p] for p in (*live, "dp")]
    mk = np.stack([[timed[c[t]][t] for t in idx] for c in cands])  # (candidates, steps)
    best = np.argmin(mk, axis=0)
    h_parts = [cands[best[t]][t] for t in idx]
    h_cuts = tuple(cuts_from_parts(q) for q in h_parts)
    h_prev = [cuts_from_parts(static_parts), *h_cuts[:-1]]
    h_mk = mk[best, idx]
    traces["hindsight_oracle"] = PolicyTrace(
        "hindsight_oracle", h_mk, np.zeros(steps), model.bubble_fractions(h_mk, f_all, b_all), h_cuts,
        np.array([c != q for c, q in zip(h_cuts, h_prev, strict=True)]), np.zeros(steps, dtype=bool),
        ("",) * steps,
    )
    return ScenarioRun(scenario, seed, static_parts, float(capacity_bytes), {p: traces[p] for p in POLICIES})


class _Periodic:
    """Full re-plan (``cfg.planner``) every ``replan_every_steps`` steps on the window's per-block estimates."""

    def __init__(self, model: PipelineModel, parts: Parts) -> None:
        self.model = model
        self.parts = parts
        self.estimator = BlockEstimator(model.forward_s, model.backward_s, model.base_weight_s,
                                        model.cfg.roll_window)

    def observe(self, *stage: np.ndarray) -> None:
        self.estimator.observe(self.parts, list(stage))

    def decide(self, step: int) -> Decision:
        k = self.model.cfg.replan_every_steps
        if step == 0 or step % k or len(self.estimator) == 0:
            return Decision(self.parts)
        est = self.estimator.history().mean(axis=0)
        new = plan_partition(self.model, est[0], est[1], est[2] if self.model.uses_w else None)
        if new == self.parts:
            return Decision(self.parts)
        stall = self.model.migration_s(self.parts, new)
        self.parts = new
        return Decision(new, stall_s=stall, kind="move", note="periodic re-plan")


def run_experiment(model: PipelineModel, progress: Callable[[str], None] | None = None) -> list[ScenarioRun]:
    """Every scenario of ``cfg.scenarios`` × seeds ``cfg.seed .. cfg.seed + num_seeds - 1``.

    ``progress`` receives one line per finished (scenario, seed) run.
    """
    cfg = model.cfg
    static_parts = plan_partition(model, model.forward_s, model.backward_s,
                                  model.weight_s if model.uses_w else None)
    capacity = static_capacity_bytes(model, static_parts)
    runs = []
    for scenario in cfg.scenarios:
        for k in range(cfg.num_seeds):
            t0 = time.perf_counter()
            run = run_scenario(model, scenario, cfg.seed + k, static_parts=static_parts, capacity_bytes=capacity)
            runs.append(run)
            if progress is not None:
                tr = run.traces
                progress(
                    f"{scenario:9s} seed {cfg.seed + k}: static {tr['static'].total_s:.2f} s, "
                    f"online {tr['online'].total_s:.2f} s, regime oracle {tr['regime_oracle'].total_s:.2f} s, "
                    f"online moves {int(tr['online'].moved.sum())} "
                    f"({time.perf_counter() - t0:.1f} s)"
                )
    return runs


def oscillations(trace: PolicyTrace, window_steps: int) -> int:
    """Moves that restore the partition from before the previous change within ``window_steps``.

    A change is any step whose partition differs from the previous step's
    (move or rollback); a move (not a rollback) that returns to the partition
    in force before the previous change, less than ``window_steps`` after it,
    counts as one oscillation.
    """
    count = 0
    last_change: tuple[int, tuple[int, ...]] | None = None  # (step, partition before it)
    for t in range(1, len(trace.cuts)):
        if trace.cuts[t] == trace.cuts[t - 1]:
            continue
        if (trace.moved[t] and last_change is not None and t - last_change[0] < window_steps
                and trace.cuts[t] == last_change[1]):
            count += 1
        last_change = (t, trace.cuts[t - 1])
    return count


def summarize(runs: Sequence[ScenarioRun], cfg: OnlineConfig) -> dict:
    """Numbers per scenario and policy over seeds (seconds; shares in [0, 1]).

    For each scenario: per policy, pooled mean / median / p95 step time
    (makespan + stall), per-seed totals (mean, std, min, max), speedup over
    static (per seed, mean and std), moves, rollbacks, guard pauses (summed
    over seeds), moves per 1,000 steps, and per seed the share of the
    static → regime-oracle gap in total time that the policy recovered
    (``None`` where that gap is under 0.1 % of static).
    """
    out: dict = {}
    for scenario in cfg.scenarios:
        rs = [r for r in runs if r.scenario == scenario]
        if not rs:
            continue
        sc: dict = {"seeds": [r.seed for r in rs], "policies": {}}
        for p in POLICIES:
            step = np.concatenate([r.traces[p].step_time_s for r in rs])
            totals = np.array([r.traces[p].total_s for r in rs])
            static = np.array([r.traces["static"].total_s for r in rs])
            oracle = np.array([r.traces["regime_oracle"].total_s for r in rs])
            gap = static - oracle
            recovered = [None if g < 1e-3 * s else float((s - t) / g)
                         for s, t, g in zip(static, totals, gap, strict=True)]
            moves = int(sum(r.traces[p].moved.sum() for r in rs))
            sc["policies"][p] = {
                "step_mean_s": float(step.mean()), "step_median_s": float(np.median(step)),
                "step_p95_s": float(np.percentile(step, 95)),
                "total_mean_s": float(totals.mean()), "total_std_s": float(totals.std(ddof=1)) if len(rs) > 1 else 0.0,
                "total_min_s": float(totals.min()), "total_max_s": float(totals.max()),
                "speedup_mean": float(np.mean(static / totals)),
                "speedup_std": float(np.std(static / totals, ddof=1)) if len(rs) > 1 else 0.0,
                "time_vs_static_max": float(np.max(totals / static - 1.0)),
                "migration_s": float(sum(r.traces[p].stall_s.sum() for r in rs)),
                "moves": moves, "rollbacks": int(sum(r.traces[p].rolled_back.sum() for r in rs)),
                "pauses_memory": sum(r.traces[p].pause.count("memory") for r in rs),
                "pauses_link": sum(r.traces[p].pause.count("link") for r in rs),
                "moves_per_1000_steps": 1000.0 * moves / (cfg.steps * len(rs)),
                "oscillations": sum(oscillations(r.traces[p], 3 * cfg.cooldown_steps) for r in rs),
                "gap_recovered": recovered,
            }
        out[scenario] = sc
    return out


@dataclass(frozen=True)
class Goal:
    """One goal of issue 7 with its measured value."""

    name: str
    passed: bool
    measured: str


def _mean_recovered(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def check_goals(summary: dict) -> list[Goal]:
    """The issue's goals, measured on ``summary`` (see :func:`summarize`).

    drift / straggler: online recovers >= 80 % of the static → regime-oracle
    gap in total time (mean over seeds, migration included); jitter: at most 1
    move per 1,000 steps and every seed's total time within 0.5 % of static;
    no oscillation in any scenario.
    """
    goals = []
    for scenario in ("drift", "straggler"):
        if scenario not in summary:
            continue
        rec = summary[scenario]["policies"]["online"]["gap_recovered"]
        mean = _mean_recovered(rec)
        if mean is None:
            goals.append(Goal(f"{scenario}: online recovers >= 80% of the static->regime-oracle gap",
                              False, "no gap between static and the regime oracle to recover"))
            continue
        lo = min(v for v in rec if v is not None)
        goals.append(Goal(f"{scenario}: online recovers >= 80% of the static->regime-oracle gap",
                          mean >= 0.8, f"{100 * mean:.1f}% (mean over seeds; worst seed {100 * lo:.1f}%)"))
    if "jitter" in summary:
        on = summary["jitter"]["policies"]["online"]
        goals.append(Goal("jitter: <= 1 move per 1,000 steps", on["moves_per_1000_steps"] <= 1.0,
                          f"{on['moves_per_1000_steps']:.2f} moves per 1,000 steps ({on['moves']} moves)"))
        worst = on["time_vs_static_max"]
        goals.append(Goal("jitter: total time within 0.5% of static", abs(worst) <= 0.005 and worst <= 0.005,
                          f"worst seed {100 * worst:+.3f}% vs static"))
    osc = sum(sc["policies"]["online"]["oscillations"] for sc in summary.values())
    goals.append(Goal("no move undoes the previous change within 3 x cooldown_steps", osc == 0,
                      f"{osc} oscillating moves"))
    return goals


def summary_text(summary: dict, cfg: OnlineConfig, *, model_note: str = "") -> str:
    """Quotable sentences and tables of :func:`summarize` (ms per step, s in total)."""
    lines = [
        "Online boundary micro-adjustment vs static, periodic re-plan and oracles",
        f"configuration: {cfg.num_stages} stages, {cfg.microbatches} microbatches, schedule {cfg.schedule}, "
        f"link {cfg.bandwidth_GBps:g} GB/s, {cfg.steps} steps x {cfg.num_seeds} seeds "
        f"(seeds {cfg.seed}..{cfg.seed + cfg.num_seeds - 1}), jitter sigma {cfg.jitter_sigma:g}, "
        f"drift strength {cfg.drift_strength:g}, straggler x{cfg.straggler_factor:g} for "
        f"{100 * cfg.straggler_duration_frac:g}% of the steps",
        f"controller: window {cfg.roll_window}, cooldown {cfg.cooldown_steps}, patience {cfg.rollback_patience}, "
        f"epsilon {100 * cfg.improve_epsilon:g}%, significance z {cfg.significance_z:g}, payback {cfg.payback_factor:g}x "
        f"over {cfg.payback_horizon_steps} steps; migration {cfg.migration_bytes_per_param:g} B/param "
        f"(fp32 Adam: weights + 2 moments) + {cfg.migration_setup_s:g} s setup; "
        f"periodic re-plan every {cfg.replan_every_steps} steps",
    ]
    if model_note:
        lines.append(model_note)
    lines += [
        f"policies: static = {cfg.planner} plan of the profile; periodic = {cfg.planner} re-plan on the "
        f"observed estimates every {cfg.replan_every_steps} steps, paying migration; regime_oracle = "
        f"{cfg.planner} plan on the noise-free costs (re-planned when a block's multiplier moves by more "
        f"than {100 * REGIME_REPLAN_REL:g}%), free moves; hindsight_oracle = per step the fastest of a DP on "
        "that step's true costs and every policy's split, free moves (an upper bound only)",
        "columns: step times in ms pooled over seeds (makespan + migration stall); total = seconds per run, "
        "mean +- std over seeds; speedup = static total / policy total; moves and rollbacks summed over "
        "seeds (online moves are micro-moves of 1-2 blocks); gap rec. = share of the static -> regime-oracle "
        "gap in total time recovered, mean over seeds (n/a: gap under 0.1% of static)",
    ]
    for scenario, sc in summary.items():
        lines += ["", f"== scenario {scenario} ==",
                  f"{'policy':17s} {'mean ms':>8s} {'median':>8s} {'p95':>8s} {'total s':>16s} "
                  f"{'speedup':>14s} {'migr s':>7s} {'moves':>6s} {'rollb':>6s} {'pauses':>7s} {'gap rec.':>9s}"]
        for p in POLICIES:
            d = sc["policies"][p]
            rec = _mean_recovered(d["gap_recovered"])
            rec_s = "n/a" if rec is None else f"{100 * rec:.1f}%"
            lines.append(
                f"{p:17s} {1e3 * d['step_mean_s']:8.2f} {1e3 * d['step_median_s']:8.2f} "
                f"{1e3 * d['step_p95_s']:8.2f} {d['total_mean_s']:8.3f}+-{d['total_std_s']:<6.3f} "
                f"{d['speedup_mean']:7.4f}+-{d['speedup_std']:<5.4f} {d['migration_s']:7.2f} {d['moves']:6d} "
                f"{d['rollbacks']:6d} {d['pauses_memory'] + d['pauses_link']:7d} {rec_s:>9s}"
            )
        on, st, ro = sc["policies"]["online"], sc["policies"]["static"], sc["policies"]["regime_oracle"]
        rec = _mean_recovered(on["gap_recovered"])
        rec_txt = ("there is no static -> regime-oracle gap to recover" if rec is None else
                   f"online recovers {100 * rec:.1f}% of the static -> regime-oracle gap "
                   f"(per seed {', '.join('n/a' if v is None else f'{100 * v:.0f}%' for v in on['gap_recovered'])})")
        lines.append(
            f"In {scenario}, online takes {on['total_mean_s']:.3f} s per run vs {st['total_mean_s']:.3f} s static "
            f"and {ro['total_mean_s']:.3f} s for the regime oracle (mean of {len(sc['seeds'])} seeds, migration "
            f"included; speedup {on['speedup_mean']:.4f}x); {rec_txt}; {on['moves']} moves, {on['rollbacks']} "
            f"rollbacks, guard pauses: {on['pauses_memory']} memory, {on['pauses_link']} link."
        )
    lines += ["", "== goals (issue 7) =="]
    for g in check_goals(summary):
        lines.append(f"[{'MET' if g.passed else 'NOT MET'}] {g.name}: {g.measured}")
    return "\n".join(lines) + "\n"


CSV_HEADER: tuple[str, ...] = (
    "scenario", "seed", "step", "policy", "step_time_s", "makespan_s", "stall_s", "bubble_fraction",
    "partition_cuts", "move", "rollback", "guard_pause", "moves_so_far", "rollbacks_so_far",
)


def csv_rows(runs: Sequence[ScenarioRun]) -> Iterator[tuple]:
    """Rows of ``online_vs_static.csv`` (see :data:`CSV_HEADER`), by scenario, seed, step, policy.

    ``partition_cuts`` lists the first block of stages 1..p-1 joined by ``|``;
    ``move``/``rollback`` are 1 on the step whose partition changed by a move
    (a micro-move, a re-plan or an oracle change) or a rollback; ``stall_s`` is
    the migration stall paid on that step (included in ``step_time_s``).
    """
    for run in runs:
        moves = {p: np.cumsum(run.traces[p].moved) for p in POLICIES}
        rolls = {p: np.cumsum(run.traces[p].rolled_back) for p in POLICIES}
        for t in range(len(run.traces["static"].makespan_s)):
            for p in POLICIES:
                tr = run.traces[p]
                yield (run.scenario, run.seed, t, p, float(tr.makespan_s[t] + tr.stall_s[t]),
                       float(tr.makespan_s[t]), float(tr.stall_s[t]), float(tr.bubble_fraction[t]),
                       "|".join(str(c) for c in tr.cuts[t]), int(tr.moved[t]), int(tr.rolled_back[t]),
                       tr.pause[t], int(moves[p][t]), int(rolls[p][t]))


def _rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values (shorter at the start)."""
    c = np.cumsum(np.concatenate(([0.0], x)))
    idx = np.arange(1, len(x) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def write_figures(runs: Sequence[ScenarioRun], cfg: OnlineConfig, out_dir: str | Path,
                  plot_scenario: str) -> list[str]:
    """The three figures for the first seed of every scenario; ``plot_scenario``'s get the plain names.

    ``makespan_timeseries.png``: step time (makespan + stall) per step of static,
    online and the regime oracle; ``bubble_timeseries.png``: their bubble fraction
    per step; ``makespan_rolling.png``: trailing ``roll_window``-step mean of the
    step time of every policy with the online moves and rollbacks marked. Other scenarios get ``_<scenario>`` suffixed names.
    Returns the file names written.
    """
    from bubblereduce.plotting import plot_timeseries

    names = []
    for scenario in cfg.scenarios:
        run = next((r for r in runs if r.scenario == scenario), None)
        if run is None:
            continue
        suffix = "" if scenario == plot_scenario else f"_{scenario}"
        steps = np.arange(cfg.steps)
        tr = run.traces
        what = f"{scenario}, seed {run.seed}, {cfg.schedule}, {cfg.num_stages} stages, m={cfg.microbatches}"
        step_ms = {p: 1e3 * tr[p].step_time_s for p in POLICIES}
        # same colour per policy in every figure: the three main ones first
        order = ("static", "online", "regime_oracle", "periodic", "hindsight_oracle")
        few = order[:3]
        on = tr["online"]
        marks = {"online move": [int(t) for t in np.flatnonzero(on.moved)],
                 "online rollback": [int(t) for t in np.flatnonzero(on.rolled_back)]}
        plot_timeseries(steps, {p: step_ms[p] for p in few}, Path(out_dir) / f"makespan_timeseries{suffix}.png",
                        ylabel="step time incl. migration stall (ms)", title=f"Step time per step ({what})")
        plot_timeseries(steps, {p: tr[p].bubble_fraction for p in few},
                        Path(out_dir) / f"bubble_timeseries{suffix}.png", ylabel="bubble fraction",
                        title=f"Bubble fraction per step ({what})")
        plot_timeseries(steps, {p: _rolling_mean(step_ms[p], cfg.roll_window) for p in order},
                        Path(out_dir) / f"makespan_rolling{suffix}.png",
                        ylabel=f"step time, {cfg.roll_window}-step mean (ms)",
                        title=f"Rolling step time ({what})", markers=marks)
        names += [f"makespan_timeseries{suffix}.png", f"bubble_timeseries{suffix}.png",
                  f"makespan_rolling{suffix}.png"]
    return names


def run_online(cfg_dict: Mapping[str, Any], printer: Callable[[str], None] = print_flush) -> str:
    """Run ``online_adjust.py`` for its resolved config: profile (or load), run every
    scenario, policy and seed, write ``out_dir``; return the summary text.

    Raises ``ValueError`` for bad input; outputs are staged, so a failed run leaves
    nothing in ``out_dir``.
    """
    import dataclasses
    import time

    from bubblereduce.io import StagedOutput, write_csv, write_run_record
    from bubblereduce.online import OnlineConfig, model_from_blocks
    from bubblereduce.profile import group_blocks, load_profiles, profile_for_size

    t0 = time.perf_counter()
    fields = {f.name for f in dataclasses.fields(OnlineConfig)}
    cfg = OnlineConfig(**{k: (tuple(v) if k == "scenarios" else v) for k, v in cfg_dict.items() if k in fields})
    if cfg_dict["plot_scenario"] not in cfg.scenarios:
        raise ValueError(f"plot_scenario {cfg_dict['plot_scenario']!r} is not among scenarios {list(cfg.scenarios)}")
    for key in ("mlp_repeats", "microbatch_size", "block_n", "profile_threads", "profile_repeats"):
        if cfg_dict[key] < 1:
            raise ValueError(f"{key} must be >= 1, got {cfg_dict[key]!r}")

    if cfg_dict["profile_path"] is not None:
        profiles = load_profiles(str(cfg_dict["profile_path"]))
        prof = profiles[0] if len(profiles) == 1 else profile_for_size(profiles, cfg_dict["microbatch_size"])
        source = f"profile loaded from {cfg_dict['profile_path']}"
    else:
        from bubblereduce.models import DEFAULT_MLP_WIDTHS, build_mlp, mlp_input
        from bubblereduce.profile import profile_sequential

        widths = DEFAULT_MLP_WIDTHS + DEFAULT_MLP_WIDTHS[1:] * (cfg_dict["mlp_repeats"] - 1)
        printer(f"profiling an MLP of {len(widths) - 1} layers at microbatch size {cfg_dict['microbatch_size']} ...")
        prof = profile_sequential(
            build_mlp(widths, seed=0), mlp_input(cfg_dict["microbatch_size"], widths[0], seed=0),
            warmup=cfg_dict["profile_warmup"], repeats=cfg_dict["profile_repeats"],
            threads=cfg_dict["profile_threads"], model_name=f"mlp x{cfg_dict['mlp_repeats']}",
        )
        source = (f"profiled now: default MLP widths chained x{cfg_dict['mlp_repeats']} ({len(widths) - 1} layers), "
                  f"microbatch {cfg_dict['microbatch_size']}, {prof.meta.threads} thread(s), median of "
                  f"{cfg_dict['profile_repeats']}")
    blocks = group_blocks(prof, block_n=cfg_dict["block_n"])
    model = model_from_blocks(blocks, cfg)
    printer(f"{source}; {blocks.num_blocks} blocks, f+b per microbatch "
            f"{1e3 * float(model.forward_s.sum() + model.backward_s.sum()):.2f} ms ({time.perf_counter() - t0:.1f} s)")

    runs = run_experiment(model, progress=printer)
    summary = summarize(runs, cfg)
    cap = runs[0].capacity_bytes
    cap_note = ("1.5 x the static plan's largest device" if cfg.device_memory_bytes == 0 else "device_memory_bytes")
    text = summary_text(summary, cfg, model_note=(
        f"model: {source}; {blocks.num_blocks} blocks; memory guard capacity {cap / 1e9:.3f} GB per device "
        f"({cap_note}) x {cfg.mem_threshold_ratio:g}"))
    with StagedOutput(cfg_dict["out_dir"]) as tmp:
        write_csv(tmp / "online_vs_static.csv", CSV_HEADER, csv_rows(runs))
        write_figures(runs, cfg, tmp, cfg_dict["plot_scenario"])
        write_run_record(tmp, config=cfg_dict, summary=text, profiles=[prof])
    printer(text)
    printer(f"wrote {cfg_dict['out_dir']}/ (online_vs_static.csv, figures, summary.txt, config.json, env.json, "
            f"profile.json) in {time.perf_counter() - t0:.1f} s")
    return text


def cli_main(defaults: Mapping[str, Any], argv: Sequence[str], printer: Callable[[str], None] = print_flush) -> int:
    """Resolve ``--key=value`` overrides of ``defaults``, print them, run; return the exit code
    (2 with one ``error:`` line for bad input, see ``config.run_main``)."""
    from bubblereduce.config import format_config, resolve_config, run_main

    def main() -> int:
        cfg = resolve_config(dict(defaults), list(argv))
        printer(format_config(cfg))
        run_online(cfg, printer)
        return 0

    return run_main(main)
