"""Schedule-aware partitioning: choose stage boundaries by simulated step time.

The exact DP partitioners minimise the bottleneck stage cost, a proxy for the
step time. With few microbatches, warm-up and cool-down, communication on the
critical path and forward/backward asymmetry, two partitions with the same
bottleneck can differ in step time. This module searches partitions by the
makespan of the static-order schedule itself (semantics.md §4):

1. seeds: ``dp_min_max``, the ``dp_slack`` frontier, a comm-blind balance and
   a balance that charges each cut twice (activation out, gradient back);
2. exhaustive enumeration when there are at most 100,000 partitions (exact;
   candidates a proven lower bound rules out are not timed);
3. otherwise local search from the three best seeds: move one cut, or shift a
   run of cuts, by ±1, 2, 3, 4, 6, 8, ... blocks; then move two cuts by ±1, ±2;
   then move every window of up to 4 consecutive cuts by all offsets in -2..2;
   then relocate one cut (merge two stages, split another). Candidates are
   tried lowest lower bound first, 256 at a time, and the best improving one
   is taken; a candidate whose bound exceeds the current makespan is skipped.
   Optionally (``kicks``) an iterated local search perturbs the result.

A static order is a fixed DAG (each action waits for its device predecessor
and its inputs; each transfer for its producer and the previous transfer on
its link), so the makespan is a longest path. The order is compiled once into
topological levels and many candidate partitions are timed together with
numpy. Every number reported comes from ``bubblereduce.simulate.simulate``; if
the compiled evaluator ever disagrees with it on the seeds, the search falls
back to calling ``simulate`` per candidate.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bubblereduce import partition as part
from bubblereduce.schedules import NEEDS_W, SCHEDULES, build_order
from bubblereduce.simulate import SimResult, simulate

__all__ = [
    "CompiledOrder",
    "ScheduleAwareReport",
    "makespan_lower_bound",
    "schedule_aware",
    "schedule_aware_report",
    "stages_per_device_for",
]

Partition = list[tuple[int, int]]

_COMM_MODES = ("overlap", "blocking")
_V_SHAPE = frozenset({"zbv", "dualpipev"})
_INTERLEAVED = "interleaved-1f1b"
# relative tolerance of "strictly better" (semantics.md §2: never an absolute epsilon)
_REL_TOL = 1e-9
# local searches run from this many of the best seeds
_STARTS = 3


@dataclass(frozen=True)
class ScheduleAwareReport:
    """Result of :func:`schedule_aware_report`.

    ``partition`` is the chosen partition (half-open block ranges) and
    ``makespan_s`` its simulated makespan in seconds; ``baseline_*`` are the same
    for ``dp_min_max``. ``gain_fraction = 1 - makespan_s / baseline_makespan_s``
    (0.0 when the search found nothing strictly better). ``evaluations`` counts
    candidate partitions whose makespan was computed, ``pruned`` those skipped by
    the lower bound. ``method`` is ``"exhaustive"`` (the result is optimal over all
    partitions) or ``"local-search"``; ``evaluator`` is ``"compiled"`` or
    ``"simulate"`` (fallback).
    """

    partition: tuple[tuple[int, int], ...]
    makespan_s: float
    baseline_partition: tuple[tuple[int, int], ...]
    baseline_makespan_s: float
    gain_fraction: float
    evaluations: int
    pruned: int
    method: str
    evaluator: str
    schedule: str
    microbatches: int
    comm_mode: str
    stages_per_device: int


# --------------------------------------------------------------------------- inputs


def _as_costs(name: str, x: object, n: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a 1-D sequence of numbers, got {type(x).__name__}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has length {arr.shape[0]}; it must have length {n} (one per block)")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] = {float(arr[i])!r}; seconds must be finite and >= 0")
    return arr


def _check_int(name: str, value: object, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    return int(value)


def stages_per_device_for(schedule: str, stages_per_device: int | None = None) -> int:
    """Number of model stages each device holds under ``schedule``.

    ``zbv`` and ``dualpipev`` are V-shaped: always 2 (any other explicit value is a
    ValueError). ``interleaved-1f1b`` uses ``stages_per_device`` (default 2, must be
    >= 1). Every other schedule places one stage per device (an explicit value other
    than 1 is a ValueError). Returns a count (no unit).
    """
    if not isinstance(schedule, str) or schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; known schedules: {', '.join(SCHEDULES)}")
    if stages_per_device is not None:
        stages_per_device = _check_int("stages_per_device", stages_per_device, 1)
    if schedule in _V_SHAPE:
        if stages_per_device not in (None, 2):
            raise ValueError(f"{schedule} holds exactly 2 stages per device, got stages_per_device={stages_per_device}")
        return 2
    if schedule == _INTERLEAVED:
        return 2 if stages_per_device is None else stages_per_device
    if stages_per_device not in (None, 1):
        raise ValueError(f"{schedule} holds 1 stage per device, got stages_per_device={stages_per_device}")
    return 1


# ------------------------------------------------------------- compiled static order

# Cost-vector layout per candidate (length K = 5S): F[0:S], B[S:2S], I[2S:3S],
# W[3S:4S], C[4S:5S-1] (boundary s -> s+1), then one zero slot at 5S-1.


class CompiledOrder:
    """A static order as a DAG in topological levels, timed for many cost vectors at once."""

    @staticmethod
    def cost_vectors(f: np.ndarray, b: np.ndarray, w: np.ndarray | None, comm: np.ndarray) -> np.ndarray:
        """Cost-vector rows in the layout above from per-stage seconds.

        ``f``, ``b``, ``w``: (rows, S) or (S,) forward, full backward and weight-grad
        seconds (``w`` None: no split); ``comm``: (rows, S-1) or (S-1,) boundary seconds.
        I = max(b - w, 0). Returns a (rows, 5S) array.
        """
        f, b = np.atleast_2d(f), np.atleast_2d(b)
        w = np.zeros_like(b) if w is None else np.atleast_2d(w)
        comm = np.broadcast_to(np.atleast_2d(comm), (f.shape[0], f.shape[1] - 1))
        return np.concatenate((f, b, np.maximum(b - w, 0.0), w, comm, np.zeros((f.shape[0], 1))), axis=1)

    def __init__(self, order: Sequence[Sequence[tuple[str, int, int]]], num_stages: int, comm_mode: str):
        S = num_stages
        self.num_stages = S
        self.num_devices = len(order)
        zero = 5 * S - 1
        kind_base = {"F": 0, "B": S, "I": 2 * S, "W": 3 * S}

        stage_dev = [-1] * S
        for d, acts in enumerate(order):
            for kind, s, _ in acts:
                if kind not in kind_base or not 0 <= s < S:
                    raise ValueError(f"bad action {(kind, s)!r} on device {d}")
                if stage_dev[s] == -1:
                    stage_dev[s] = d
                elif stage_dev[s] != d:
                    raise ValueError(f"stage {s} appears on devices {stage_dev[s]} and {d}")
        if min(stage_dev) < 0:
            raise ValueError(f"stage {stage_dev.index(-1)} has no action in the order")
        self.stage_device = stage_dev

        def cross(s: int, t: int) -> bool:
            return stage_dev[s] != stage_dev[t]

        # action nodes first, in device order
        node_of: dict[tuple[str, int, int], int] = {}
        cost1: list[int] = []
        cost2: list[int] = []
        device: list[int] = []
        for d, acts in enumerate(order):
            for kind, s, j in acts:
                a = (kind, s, j)
                if a in node_of:
                    raise ValueError(f"action {s}{kind}{j} appears twice")
                node_of[a] = len(cost1)
                cost1.append(kind_base[kind] + s)
                extra = zero
                if comm_mode == "blocking":
                    if kind == "F" and s < S - 1 and cross(s, s + 1):
                        extra = 4 * S + s
                    elif kind in ("B", "I") and s > 0 and cross(s, s - 1):
                        extra = 4 * S + s - 1
                cost2.append(extra)
                device.append(d)
        num_actions = len(cost1)
        preds: list[list[int]] = [[] for _ in range(num_actions)]
        for acts in order:
            for prev, cur in itertools.pairwise(acts):
                preds[node_of[tuple(cur)]].append(node_of[tuple(prev)])

        # where each input arrives from: ("act", s, j) for activations into stage s,
        # ("grad", s, j) for gradients into stage s
        arrive: dict[tuple[str, int, int], int] = {}
        link_last: dict[tuple[int, int], int] = {}
        for d, acts in enumerate(order):
            for kind, s, j in acts:
                if kind == "F" and s < S - 1:
                    key, dst, c = ("act", s + 1, j), s + 1, s
                elif kind in ("B", "I") and s > 0:
                    key, dst, c = ("grad", s - 1, j), s - 1, s - 1
                else:
                    continue
                src = node_of[(kind, s, j)]
                if comm_mode == "blocking" or not cross(s, dst):
                    arrive[key] = src
                    continue
                t = len(cost1)
                cost1.append(4 * S + c)
                cost2.append(zero)
                device.append(-1)
                link = (d, stage_dev[dst])
                preds.append([src] + ([link_last[link]] if link in link_last else []))
                link_last[link] = t
                arrive[key] = t

        for (kind, s, j), v in node_of.items():
            if kind == "F":
                need = [("act", s, j)] if s > 0 else []
                own = []
            elif kind in ("B", "I"):
                need = [("grad", s, j)] if s < S - 1 else []
                own = [("F", s, j)]
            else:
                need, own = [], [("I", s, j)]
            for a in own:
                if a not in node_of:
                    raise ValueError(f"{s}{kind}{j} needs {a[1]}{a[0]}{a[2]}, which is not in the order")
                preds[v].append(node_of[a])
            for key in need:
                if key not in arrive:
                    raise ValueError(f"{s}{kind}{j} waits for an input ({key[0]} of microbatch {j}) that is never produced")
                preds[v].append(arrive[key])

        # topological levels (Kahn); a cycle means the order deadlocks
        num_nodes = len(cost1)
        indeg = np.array([len(p) for p in preds])
        succ: list[list[int]] = [[] for _ in range(num_nodes)]
        for v, ps in enumerate(preds):
            for u in ps:
                succ[u].append(v)
        level = [0] * num_nodes
        frontier = [v for v in range(num_nodes) if indeg[v] == 0]
        seen = 0
        while frontier:
            nxt = []
            for u in frontier:
                seen += 1
                for v in succ[u]:
                    level[v] = max(level[v], level[u] + 1)
                    indeg[v] -= 1
                    if indeg[v] == 0:
                        nxt.append(v)
            frontier = nxt
        if seen < num_nodes:
            stuck = [f"{s}{k}{j}" for (k, s, j), v in node_of.items() if indeg[v] > 0][:8]
            raise ValueError(f"deadlock: the order can never finish; stuck actions include {', '.join(stuck)}")

        # renumber nodes by level so each level is one contiguous slice
        perm = sorted(range(num_nodes), key=lambda v: (level[v], v))
        new_id = np.empty(num_nodes, dtype=np.int64)
        new_id[perm] = np.arange(num_nodes)
        max_deg = max((len(p) for p in preds), default=0)
        pred_arr = np.full((num_nodes, max(max_deg, 1)), num_nodes, dtype=np.int64)  # sentinel
        for v, ps in enumerate(preds):
            pred_arr[new_id[v], : len(ps)] = new_id[ps]
        self.cost1 = np.asarray(cost1, dtype=np.int64)[perm]
        self.cost2 = np.asarray(cost2, dtype=np.int64)[perm]
        lv = np.asarray(level)[perm]
        cuts = np.flatnonzero(np.diff(lv)) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [num_nodes]))
        self.levels = [(int(lo), int(hi), pred_arr[lo:hi]) for lo, hi in zip(starts, ends, strict=True)]
        self.num_nodes = num_nodes
        dev_arr = np.asarray(device)[perm]
        self.action_nodes = np.flatnonzero(dev_arr >= 0)

        # lower-bound weights (see makespan_lower_bound): per device, cost-vector
        # weights of head + occupied time + tail, and the one-microbatch path
        K = 5 * S
        D = self.num_devices
        dev_w = np.zeros((K, D))
        for c1, c2, d in zip(cost1[:num_actions], cost2[:num_actions], device[:num_actions], strict=True):
            dev_w[c1, d] += 1.0
            dev_w[c2, d] += 1.0
        for d, acts in enumerate(order):
            if not acts:
                continue
            kind, s0, _ = acts[0]
            if kind == "F":  # forward chain of stages 0..s0-1 precedes the first action
                for t in range(s0):
                    dev_w[t, d] += 1.0
                    if cross(t, t + 1):
                        dev_w[4 * S + t, d] += 1.0
            kind, s1, _ = acts[-1]
            if kind in ("B", "I"):  # gradient chain down to stage 0 follows the last action
                ib = S if kind == "B" else 2 * S
                for t in range(s1):
                    dev_w[ib + t, d] += 1.0
                    if cross(t, t + 1) and (comm_mode == "overlap" or t < s1 - 1):
                        dev_w[4 * S + t, d] += 1.0
        dev_w[zero, :] = 0.0
        path_w = np.zeros(K)
        path_w[0:S] = 1.0
        split = any(k == "I" for k, _, _ in node_of)
        path_w[(2 * S if split else S) : (3 * S if split else 2 * S)] = 1.0
        for t in range(S - 1):
            if cross(t, t + 1):
                path_w[4 * S + t] = 2.0
        self.bound_w = np.concatenate((dev_w, path_w[:, None]), axis=1)

    def lower_bound(self, cv: np.ndarray) -> np.ndarray:
        """Proven lower bound on the makespan for each cost vector row (seconds)."""
        # row chunks keep each product small: a large one goes multi-threaded in BLAS,
        # which is far slower on a busy machine
        out = np.empty((cv.shape[0], self.bound_w.shape[1]))
        rows = max(16, (1 << 18) // max(1, self.bound_w.size))
        for lo in range(0, cv.shape[0], rows):
            np.matmul(cv[lo : lo + rows], self.bound_w, out=out[lo : lo + rows])
        return out.max(axis=1)

    def time(self, cv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Makespan and sum of action end times (both seconds) for each cost vector row."""
        total = cv.shape[0]
        makespan = np.empty(total)
        ends_sum = np.empty(total)
        step = max(1, (1 << 22) // (self.num_nodes + 1))  # ~32 MB of end times at a time
        for r0 in range(0, total, step):
            part = cv[r0 : r0 + step]
            dur = part[:, self.cost1] + part[:, self.cost2]
            end = np.zeros((part.shape[0], self.num_nodes + 1))
            for lo, hi, pr in self.levels:
                end[:, lo:hi] = end[:, pr].max(axis=2) + dur[:, lo:hi]
            acts = end[:, self.action_nodes]
            makespan[r0 : r0 + step] = acts.max(axis=1)
            ends_sum[r0 : r0 + step] = acts.sum(axis=1)
        return makespan, ends_sum


# ------------------------------------------------------------------ block data -> stages


class _Blocks:
    """Per-block costs with prefix sums; turns cut sets into per-candidate cost vectors."""

    def __init__(self, f: np.ndarray, b: np.ndarray, w: np.ndarray | None, comm: np.ndarray, num_stages: int):
        self.n = f.shape[0]
        self.S = num_stages
        self.f, self.b, self.w, self.comm = f, b, w, comm
        zero = np.zeros(1)
        self.pf = np.concatenate((zero, np.cumsum(f)))
        self.pb = np.concatenate((zero, np.cumsum(b)))
        self.pw = None if w is None else np.concatenate((zero, np.cumsum(w)))

    def bounds(self, cuts: np.ndarray) -> np.ndarray:
        rows = cuts.shape[0]
        return np.concatenate((np.zeros((rows, 1), np.int64), cuts, np.full((rows, 1), self.n, np.int64)), axis=1)

    def cost_vectors(self, cuts: np.ndarray) -> np.ndarray:
        bd = self.bounds(cuts)
        st, en = bd[:, :-1], bd[:, 1:]
        F = self.pf[en] - self.pf[st]
        B = self.pb[en] - self.pb[st]
        W = None if self.pw is None else self.pw[en] - self.pw[st]
        return CompiledOrder.cost_vectors(F, B, W, self.comm[en[:, :-1] - 1])

    def stage_arrays(self, cuts: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
        bd = [0, *cuts, self.n]
        f_s = np.array([self.f[a:e].sum() for a, e in itertools.pairwise(bd)])
        b_s = np.array([self.b[a:e].sum() for a, e in itertools.pairwise(bd)])
        w_s = None if self.w is None else np.array([self.w[a:e].sum() for a, e in itertools.pairwise(bd)])
        c_s = np.array([self.comm[e - 1] for e in bd[1:-1]])
        return f_s, b_s, w_s, c_s


def _cuts_of(parts: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    return tuple(int(e) for _, e in parts[:-1])


def _parts_of(cuts: Sequence[int], n: int) -> Partition:
    bd = [0, *[int(c) for c in cuts], n]
    return list(itertools.pairwise(bd))


# ------------------------------------------------------------------------ seeds


def _seed_cuts(blocks: _Blocks, num_stages: int) -> list[tuple[int, ...]]:
    cost = blocks.f + blocks.b
    seeds = [_cuts_of(part.dp_min_max(cost, blocks.comm, num_stages))]
    for slack in (0.01, 0.03, 0.1, 0.3):
        seeds.append(_cuts_of(part.dp_slack(cost, blocks.comm, num_stages, slack=slack)))
    seeds.append(_cuts_of(part.dp_min_max(cost, np.zeros_like(cost), num_stages)))
    seeds.append(_cuts_of(part.dp_min_max(cost + 2 * blocks.comm, blocks.comm, num_stages)))
    out: list[tuple[int, ...]] = []
    for s in seeds:
        if s not in out:
            out.append(s)
    return out


# ------------------------------------------------------------------------- search


class _Search:
    """Evaluation bookkeeping shared by the exhaustive and the local search."""

    def __init__(self, blocks: _Blocks, compiled: CompiledOrder | None, sim_eval: Callable[[tuple[int, ...]], tuple[float, float]]):
        self.blocks = blocks
        self.compiled = compiled
        self.sim_eval = sim_eval
        self.evaluations = 0
        self.pruned = 0

    def prune(self, cuts: np.ndarray, limit_s: float, chunk: int = 8192) -> np.ndarray:
        """Drop candidates whose lower bound exceeds ``limit_s``; return the rest by bound.

        The survivors come back ordered by bound (stable, so ties keep generation
        order). Bounds are computed ``chunk`` rows at a time to bound memory.
        """
        if self.compiled is None:  # fallback: no trusted bound, prune nothing
            return cuts
        lb = np.concatenate(
            [self.compiled.lower_bound(self.blocks.cost_vectors(cuts[lo : lo + chunk])) for lo in range(0, cuts.shape[0], chunk)]
            or [np.zeros(0)]
        )
        keep = np.flatnonzero(lb <= limit_s * (1 + _REL_TOL))
        self.pruned += cuts.shape[0] - keep.size
        return cuts[keep[np.argsort(lb[keep], kind="stable")]]

    def time(self, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Makespan and sum of action end times (seconds) of each candidate row."""
        self.evaluations += cuts.shape[0]
        if self.compiled is not None:
            return self.compiled.time(self.blocks.cost_vectors(cuts))
        out = [self.sim_eval(tuple(int(x) for x in row)) for row in cuts]
        return np.array([o[0] for o in out]), np.array([o[1] for o in out])


def _best_index(mk: np.ndarray, sec: np.ndarray) -> int:
    # lexicographic (makespan, sum of end times), first index on exact ties
    return int(np.lexsort((np.arange(mk.shape[0]), sec, mk))[0])


def _exhaustive(search: _Search, n: int, S: int, start: tuple[int, ...], chunk: int = 4096) -> tuple[int, ...]:
    """The best cut set over all C(n-1, S-1) of them (seeded with ``start`` for pruning)."""
    mk0, sec0 = search.time(np.array([start], dtype=np.int64))
    best = (float(mk0[0]), float(sec0[0]))
    best_cuts = start
    combos = itertools.combinations(range(1, n), S - 1)
    while True:
        batch = np.array(list(itertools.islice(combos, chunk)), dtype=np.int64).reshape(-1, S - 1)
        if batch.shape[0] == 0:
            return best_cuts
        batch = search.prune(batch, best[0])
        if batch.shape[0] == 0:
            continue
        mk, sec = search.time(batch)
        i = _best_index(mk, sec)
        if (mk[i], sec[i]) < best:
            best = (float(mk[i]), float(sec[i]))
            best_cuts = tuple(int(x) for x in batch[i])


def _move_matrix(k: int, phase: int, steps: np.ndarray) -> np.ndarray:
    """Integer offsets (moves, k) added to the k cuts: the local-search neighbourhood.

    Phase 0: one cut moves by ±step, or a run of >= 2 consecutive cuts (the stages
    between them keep their sizes) shifts by ±step. Phase 1: two cuts move
    independently by ±1 or ±2 (escapes plateaus where two separate stages tie).
    Phase 2: every window of up to 4 consecutive cuts, each cut moving by -2..2.
    Phase 3 (cut relocation) is generated by :func:`_relocations`.
    """
    rows = []
    if phase == 2:
        # every window of up to 4 consecutive cuts, each moving by -2..2
        w = min(k, 4)
        box = np.array(list(itertools.product(range(-2, 3), repeat=w)), dtype=np.int64)
        box = box[(box != 0).any(axis=1)]
        for j in range(k - w + 1):
            r = np.zeros((box.shape[0], k), dtype=np.int64)
            r[:, j : j + w] = box
            rows.append(r)
    elif phase == 0:
        deltas = np.concatenate((-steps[::-1], steps))
        for j, i in itertools.combinations(range(k + 1), 2):
            mask = np.zeros(k, dtype=np.int64)
            mask[j:i] = 1
            rows.append(deltas[:, None] * mask[None, :])
    else:
        small = np.array([-2, -1, 1, 2])
        dj, di = np.meshgrid(small, small, indexing="ij")
        for j, i in itertools.combinations(range(k), 2):
            r = np.zeros((small.size**2, k), dtype=np.int64)
            r[:, j] = dj.ravel()
            r[:, i] = di.ravel()
            rows.append(r)
    if not rows:
        return np.zeros((0, k), dtype=np.int64)
    return np.concatenate(rows).astype(np.int64)


def _relocations(cur: np.ndarray, n: int) -> np.ndarray:
    """Every cut set obtained by removing one cut and adding one at a free position.

    This merges two adjacent stages and splits another one elsewhere, a move that
    shifts every cut in between by one position in the cut list (phase 3).
    """
    k = cur.shape[0]
    free = np.setdiff1d(np.arange(1, n), cur)
    if free.size == 0:
        return np.zeros((0, k), dtype=np.int64)
    rest = np.stack([np.delete(cur, j) for j in range(k)])  # (k, k-1)
    grid = np.concatenate(
        (np.repeat(rest, free.size, axis=0), np.tile(free, k)[:, None]), axis=1
    )
    return np.sort(grid, axis=1)


def _local_search(
    search: _Search, start: tuple[int, ...], n: int, max_evaluations: int, chunk: int = 256
) -> tuple[tuple[int, ...], float, float]:
    """Steepest descent within chunks of the neighbourhood, most promising (lowest bound) first.

    The key is (makespan, sum of action end times), compared exactly, so the walk never
    cycles; the second term lets it cross plateaus of the makespan.
    """
    cur = np.array(start, dtype=np.int64)
    k = cur.shape[0]
    mk0, sec0 = search.time(cur[None, :])
    cur_key = (float(mk0[0]), float(sec0[0]))
    geometric = np.array([1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512])
    steps = geometric[geometric <= max(1, n // (k + 1))]
    moves = [_move_matrix(k, phase, steps) for phase in range(3)]
    phases = [ph for ph in range(3) if moves[ph].shape[0]] + [3]
    phase = 0
    while search.evaluations < max_evaluations:
        cands = cur[None, :] + moves[phase] if phase < 3 else _relocations(cur, n)
        bd = np.concatenate((np.zeros((cands.shape[0], 1), np.int64), cands, np.full((cands.shape[0], 1), n)), axis=1)
        cands = cands[(np.diff(bd, axis=1) > 0).all(axis=1)]
        cands = search.prune(cands, cur_key[0])
        improved = False
        for lo in range(0, cands.shape[0], chunk):
            room = max_evaluations - search.evaluations
            if room <= 0:
                break
            hi = lo + min(chunk, room)
            mk, sec = search.time(cands[lo:hi])
            i = _best_index(mk, sec)
            if (mk[i], sec[i]) < cur_key:
                cur = cands[lo + i]
                cur_key = (float(mk[i]), float(sec[i]))
                improved = True
                break
        if improved:
            phase = 0
        elif phase != phases[-1]:
            phase = phases[phases.index(phase) + 1]
        else:
            break
    return tuple(int(x) for x in cur), cur_key[0], cur_key[1]


# --------------------------------------------------------------------- public API


def _prepare(
    f: object, b: object, comm: object, num_stages: object, schedule: str, microbatches: object,
    comm_mode: str, w: object, stages_per_device: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, int, int, int]:
    """Validate the public arguments; returns (f, b, comm, w, stages, microbatches, v)."""
    fa = _as_costs("f", f)
    n = fa.shape[0]
    if n == 0:
        raise ValueError("f is empty; need at least one block")
    ba = _as_costs("b", b, n)
    ca = np.zeros(n) if comm is None else _as_costs("comm", comm, n)
    wa = None if w is None else _as_costs("w", w, n)
    if wa is not None:
        over = wa > ba
        if over.any():
            i = int(np.flatnonzero(over)[0])
            raise ValueError(f"w[{i}] = {float(wa[i])!r} exceeds b[{i}] = {float(ba[i])!r}; need 0 <= w <= b")
    S = _check_int("num_stages", num_stages, 1)
    if S > n:
        raise ValueError(f"num_stages ({S}) must be <= the number of blocks ({n})")
    m = _check_int("microbatches", microbatches, 1)
    if comm_mode not in _COMM_MODES:
        raise ValueError(f"comm_mode must be one of {_COMM_MODES}, got {comm_mode!r}")
    v = stages_per_device_for(schedule, stages_per_device)
    if S % v:
        raise ValueError(f"num_stages ({S}) must be a multiple of stages_per_device ({v}) for {schedule}")
    if schedule in NEEDS_W and wa is None:
        raise ValueError(f"schedule {schedule!r} splits the backward into I and W; pass w (per-block weight-grad seconds)")
    return fa, ba, ca, wa, S, m, v


def schedule_aware_report(
    f: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    comm: Sequence[float] | np.ndarray | None,
    num_stages: int,
    schedule: str = "1f1b",
    microbatches: int = 8,
    comm_mode: str = "overlap",
    w: Sequence[float] | np.ndarray | None = None,
    *,
    stages_per_device: int | None = None,
    exhaustive_limit: int = 100_000,
    max_evaluations: int | None = None,
    kicks: int = 0,
    seed: int = 0,
) -> ScheduleAwareReport:
    """Search the partition with the smallest simulated makespan and report its gain.

    ``f``, ``b`` (and optionally ``w``, the weight-gradient part of ``b``) are per-block
    seconds for one microbatch, ``comm[i]`` the seconds to move block ``i``'s output across
    a cut (length n, last entry unused; None = no communication). The partition has
    ``num_stages`` stages (devices × stages per device; see :func:`stages_per_device_for`)
    and is timed with ``simulate(schedule, ..., microbatches, comm_mode=comm_mode)``. When
    C(n-1, num_stages-1) <= ``exhaustive_limit`` every partition is timed or ruled out by a
    proven lower bound (exact optimum);
    otherwise local search runs from several DP seeds until no move improves or
    ``max_evaluations`` candidates were timed (default: 2e8 / nodes of the schedule's DAG,
    clipped to [2,000, 400,000], so the effort does not depend on the machine's speed).
    ``kicks`` > 0 adds iterated local search: that many times, 1-3 cuts of the best
    partition move to random positions (``numpy`` generator seeded with ``seed``) and the
    descent restarts; better results are kept. Deterministic; the result is never slower
    than ``dp_min_max`` (it is returned unless something is better by more than a relative
    1e-9). All times in the report are seconds from ``simulate``.
    """
    fa, ba, ca, wa, S, m, v = _prepare(f, b, comm, num_stages, schedule, microbatches, comm_mode, w, stages_per_device)
    exhaustive_limit = _check_int("exhaustive_limit", exhaustive_limit, 0)
    if max_evaluations is not None:
        max_evaluations = _check_int("max_evaluations", max_evaluations, 1)
    kicks = _check_int("kicks", kicks, 0)
    seed = _check_int("seed", seed, 0)
    n = fa.shape[0]
    blocks = _Blocks(fa, ba, wa, ca, S)

    def sim(cuts: Sequence[int]) -> SimResult:
        f_s, b_s, w_s, c_s = blocks.stage_arrays(cuts)
        return simulate(schedule, f_s, b_s, m, comm=c_s if S > 1 else None, comm_mode=comm_mode, w=w_s, stages_per_device=v)

    def sim_eval(cuts: Sequence[int]) -> tuple[float, float]:
        r = sim(cuts)
        return float(r.makespan), float(sum(e[5] for e in r.events))

    base_cuts = _cuts_of(part.dp_min_max(fa + ba, ca, S))
    base_mk = float(sim(base_cuts).makespan)

    def report(cuts: tuple[int, ...], method: str, evaluator: str, evaluations: int, pruned: int) -> ScheduleAwareReport:
        mk = float(sim(cuts).makespan) if cuts != base_cuts else base_mk
        if not mk < base_mk * (1 - _REL_TOL):
            cuts, mk = base_cuts, base_mk
        return ScheduleAwareReport(
            partition=tuple(_parts_of(cuts, n)),
            makespan_s=mk,
            baseline_partition=tuple(_parts_of(base_cuts, n)),
            baseline_makespan_s=base_mk,
            gain_fraction=0.0 if base_mk == 0 else 1.0 - mk / base_mk,
            evaluations=evaluations,
            pruned=pruned,
            method=method,
            evaluator=evaluator,
            schedule=schedule,
            microbatches=m,
            comm_mode=comm_mode,
            stages_per_device=v,
        )

    if S == 1:
        return report((), "exhaustive", "simulate", 1, 0)

    seeds = _seed_cuts(blocks, S)
    compiled: CompiledOrder | None
    try:
        # without communication both modes time alike, and "blocking" needs no transfer nodes
        compiled = CompiledOrder(build_order(schedule, S, m, v), S, comm_mode if ca.any() else "blocking")
    except ValueError:  # simulate accepted this order above, so time it with simulate
        compiled = None
    if compiled is not None:
        # trust the compiled evaluator only where it reproduces the simulator on the seeds
        mk_c, _ = compiled.time(blocks.cost_vectors(np.array(seeds, dtype=np.int64)))
        for cuts, mk in zip(seeds, mk_c, strict=True):
            ref = float(sim(cuts).makespan)
            if not abs(mk - ref) <= _REL_TOL * abs(ref):
                compiled = None
                break
    if max_evaluations is None:
        nodes = compiled.num_nodes if compiled is not None else 50 * 2 * S * m
        max_evaluations = int(min(400_000, max(2_000, 200_000_000 // nodes)))
    evaluator = "compiled" if compiled is not None else "simulate"
    search = _Search(blocks, compiled, sim_eval)

    if compiled is None:  # one simulate call per candidate: keep enumeration small
        exhaustive_limit = min(exhaustive_limit, 2_000)
    if math.comb(n - 1, S - 1) <= exhaustive_limit:
        cuts = _exhaustive(search, n, S, base_cuts)
        return report(cuts, "exhaustive", evaluator, search.evaluations, search.pruned)

    mk_s, sec_s = search.time(np.array(seeds, dtype=np.int64))
    ranked = np.lexsort((np.arange(len(seeds)), sec_s, mk_s))
    best: tuple[float, float, tuple[int, ...]] | None = None
    starts = ranked[:_STARTS]
    per_start = max(1, max_evaluations // len(starts))
    for r in starts:
        budget = min(max_evaluations, search.evaluations + per_start)
        cuts, mk, sec = _local_search(search, seeds[int(r)], n, budget)
        if best is None or (mk, sec) < best[:2]:
            best = (mk, sec, cuts)
    assert best is not None
    # iterated local search: relocate 1-3 random cuts of the best, descend again
    rng = np.random.default_rng(seed)
    k = S - 1
    for _ in range(kicks):
        if search.evaluations >= max_evaluations:
            break
        cur = np.array(best[2], dtype=np.int64)
        for _ in range(int(rng.integers(1, 4))):
            j, x = int(rng.integers(0, k)), int(rng.integers(1, n))
            if x not in cur:
                cur[j] = x
                cur.sort()
        cuts, mk, sec = _local_search(search, tuple(int(x) for x in cur), n, max_evaluations)
        if (mk, sec) < best[:2]:
            best = (mk, sec, cuts)
    return report(best[2], "local-search", evaluator, search.evaluations, search.pruned)


def schedule_aware(
    f: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    comm: Sequence[float] | np.ndarray | None,
    num_stages: int,
    schedule: str = "1f1b",
    microbatches: int = 8,
    comm_mode: str = "overlap",
    w: Sequence[float] | np.ndarray | None = None,
    *,
    stages_per_device: int | None = None,
) -> Partition:
    """Partition ``n`` blocks into ``num_stages`` stages minimising the simulated makespan.

    Per-block ``f``, ``b``, ``w`` are seconds per microbatch and ``comm[i]`` seconds per
    cut after block ``i``; the schedule, microbatch count and comm model are those of
    ``bubblereduce.simulate.simulate``. Returns half-open block ranges (semantics.md §2),
    never slower than ``dp_min_max`` under the same schedule. See
    :func:`schedule_aware_report` for the search and for the gain it achieved.
    """
    rep = schedule_aware_report(
        f, b, comm, num_stages, schedule, microbatches, comm_mode, w, stages_per_device=stages_per_device
    )
    return list(rep.partition)


def makespan_lower_bound(
    schedule: str,
    f: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    microbatches: int,
    comm: Sequence[float] | np.ndarray | None = None,
    comm_mode: str = "overlap",
    w: Sequence[float] | np.ndarray | None = None,
    stages_per_device: int = 1,
) -> float:
    """A proven lower bound (seconds) on ``simulate(...)``'s makespan; same arguments.

    The larger of (a) one microbatch's forward and input-gradient round trip,
    ``Σ_s (f_s + i_s) + 2 Σ comm`` over cross-device boundaries, and (b) for every device:
    the forward chain that must finish before its first action ``F(s0, j)``
    (``Σ_{t<s0} f_t`` + cross-device comm), plus the time the device is occupied (its
    actions' compute, plus their transfers in blocking mode), plus, when its last action
    is ``B``/``I`` of stage ``s1``, the gradient chain down to stage 0 that must follow
    (``Σ_{t<s1} i_t`` + comm). Every term is a chain of actions and transfers that run one
    after another under semantics.md §4, so the bound never exceeds the makespan.
    """
    fa = _as_costs("f", f)
    S = fa.shape[0]
    ba = _as_costs("b", b, S)
    wa = np.zeros(S) if w is None else _as_costs("w", w, S)
    ca = np.zeros(max(S - 1, 0)) if comm is None else _as_costs("comm", comm, max(S - 1, 0))
    if comm_mode not in _COMM_MODES:
        raise ValueError(f"comm_mode must be one of {_COMM_MODES}, got {comm_mode!r}")
    m = _check_int("microbatches", microbatches, 1)
    v = _check_int("stages_per_device", stages_per_device, 1)
    compiled = CompiledOrder(build_order(schedule, S, m, v), S, comm_mode)
    return float(compiled.lower_bound(CompiledOrder.cost_vectors(fa, ba, wa, ca))[0])
