"""Static-order pipeline schedule simulator (semantics.md §4-§5).

Every device runs its action list strictly in order; an action starts at
``max(device free, all its inputs arrived)``. Inputs: ``F(s, j)`` needs
``F(s-1, j)``; ``B/I(s, j)`` needs ``F(s, j)`` and the gradient of ``B/I(s+1, j)``;
``W(s, j)`` needs ``I(s, j)``. Communication between stages on different devices
costs ``comm[s]`` seconds across boundary ``s -> s+1`` (both directions):

- ``comm_mode="overlap"``: transfers occupy no device; each directed device link
  carries one transfer at a time in the order its producer issues them
  (``start = max(producer end, link free)``, ``arrival = start + comm``).
- ``comm_mode="blocking"``: the producer's action lasts ``compute + transfer`` and the
  consumer may start at its end (so in this mode an event's end includes its transfer).

Named schedules come straight from their generators as flat arrays (``*_arrays`` in
``bubblereduce.schedules``, equal to the ``build_order`` lists, tested), so no Python
tuples are built or parsed for them. The engine compiles the order into flat integer
arrays once, then runs a wavefront: each iteration, every device whose next action has
its inputs finished executes it, vectorised across devices with numpy (about
``2m + 2p`` iterations for 1F1B, one per action of the longest device list otherwise).
"""

from __future__ import annotations

import math
import numbers
import operator
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any, overload

import numpy as np

from bubblereduce.schedules import NEEDS_W, SCHEDULES, build_order
from bubblereduce.schedules.basic import gpipe_arrays, one_f_one_b_arrays
from bubblereduce.schedules.interleaved import interleaved_1f1b_arrays
from bubblereduce.schedules.runs import OrderArrays
from bubblereduce.schedules.vshape import dualpipev_arrays, zbv_arrays
from bubblereduce.schedules.zero_bubble import zb_h1_arrays, zb_h2_arrays

__all__ = [
    "Event",
    "Transfer",
    "SimResult",
    "simulate",
    "comm_seconds",
    "stage_comm_seconds",
    "COMM_MODES",
]

Event = tuple[int, str, int, int, float, float]
"""``(device, kind, stage, microbatch, start_s, end_s)``."""
Transfer = tuple[int, int, str, int, int, float, float]
"""``(src_device, dst_device, kind, stage, microbatch, start_s, end_s)``."""

COMM_MODES: tuple[str, ...] = ("overlap", "blocking")

# named schedules whose order also comes as flat arrays (skips building and parsing tuples);
# tests check each equals its list generator
_ARRAY_FORMS: dict[str, Callable[[int, int, int], OrderArrays]] = {
    "gpipe": gpipe_arrays,
    "1f1b": one_f_one_b_arrays,
    "interleaved-1f1b": interleaved_1f1b_arrays,
    "zb-h1": zb_h1_arrays,
    "zb-h2": zb_h2_arrays,
    "zbv": zbv_arrays,
    "dualpipev": dualpipev_arrays,
}

_KINDS = "FBIW"
_F, _B, _I, _W = 0, 1, 2, 3
# byte value of a kind letter -> kind code (255 = not a kind)
_KIND_CODE = np.full(256, 255, dtype=np.int64)
for _code, _letter in enumerate(_KINDS):
    _KIND_CODE[ord(_letter)] = _code
del _code, _letter
_KIND_NAMES = np.array(list(_KINDS))


class _Rows(Sequence):
    """A read-only sequence of row tuples built lazily from column arrays.

    Building 10^5 Python tuples costs more than the simulation itself, so the
    columns are only computed (by ``make_columns``) and zipped into rows on first
    access, then cached.
    """

    __slots__ = ("_make_columns", "_rows", "_length")

    def __init__(self, length: int, make_columns: Callable[[], Sequence[np.ndarray]]) -> None:
        self._length = length
        self._make_columns: Callable[[], Sequence[np.ndarray]] | None = make_columns
        self._rows: list[tuple[Any, ...]] | None = None

    def _materialise(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            assert self._make_columns is not None
            columns = self._make_columns()
            self._rows = list(zip(*(col.tolist() for col in columns), strict=True))
            assert len(self._rows) == self._length
            self._make_columns = None  # drop the closure and its arrays
        return self._rows

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> tuple[Any, ...]: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple[Any, ...]]: ...

    def __getitem__(self, index: int | slice) -> tuple[Any, ...] | list[tuple[Any, ...]]:
        return self._materialise()[index]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._materialise())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == tuple(b) for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle / deepcopy as a plain tuple of rows (the column closure cannot be pickled)
        return (tuple, (self._materialise(),))

    def __repr__(self) -> str:
        return f"<{len(self)} rows>"


@dataclass(frozen=True)
class SimResult:
    """Timing of one static-order schedule (semantics.md §5); all times in seconds.

    ``makespan``: end of the last action (the first starts at 0).
    ``bubble_fraction``: ``1 - sum(busy) / (num_devices * makespan)`` (0 when makespan is 0).
    ``busy[d]``: compute seconds of device d (transfers never count).
    ``span[d]``: first action's start to last action's end on device d.
    ``peak_inflight[d]``: most microbatches whose F has run on d and whose B/I has not
    finished, one stage's microbatch counting ``1 / (stages on d)``.
    ``events``: ``(device, kind, stage, microbatch, start_s, end_s)`` per action, grouped by
    device (device 0 first), each device in execution order.
    ``transfers``: ``(src_device, dst_device, kind, stage, microbatch, start_s, end_s)`` per
    activation (kind F) or gradient (kind B/I) crossing devices, grouped by source device
    in issue order.
    """

    makespan: float
    bubble_fraction: float
    busy: tuple[float, ...]
    span: tuple[float, ...]
    peak_inflight: tuple[float, ...]
    num_devices: int
    events: Sequence[Event]
    transfers: Sequence[Transfer]


# --------------------------------------------------------------------------- inputs


def _fmt(kind: int | str, stage: int, mb: int) -> str:
    letter = kind if isinstance(kind, str) else _KINDS[int(kind)]
    return f"{int(stage)}{letter}{int(mb)}"


def _is_scalar(x: object) -> bool:
    return np.ndim(x) == 0


def _seconds_array(name: str, value: Any, length: int) -> np.ndarray:
    """Per-stage (or per-boundary) seconds as a float64 array of ``length``, validated."""
    if isinstance(value, (str, bytes)) or isinstance(value, bool):
        raise TypeError(f"{name} must be seconds (a number or an array of numbers), got {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be seconds (a number or an array of numbers), got {value!r}") from exc
    if arr.ndim == 0:
        arr = np.full(length, float(arr))
    elif arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    elif arr.shape[0] != length:
        raise ValueError(f"{name} has length {arr.shape[0]}, expected {length}")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
    if bad.size:
        k = int(bad[0])
        raise ValueError(
            f"{name}[{k}] = {float(arr[k])!r}: times must be finite and >= 0 seconds"
        )
    return arr


def _is_int_type(t: type) -> bool:
    return issubclass(t, numbers.Integral) and not issubclass(t, bool)


def _is_int64(x: object) -> bool:
    return _is_int_type(type(x)) and -(2**63) <= x < 2**63  # type: ignore[operator]


def _check_microbatches(microbatches: Any) -> int:
    if isinstance(microbatches, bool) or not isinstance(microbatches, numbers.Integral):
        raise ValueError(f"microbatches must be an integer >= 1, got {microbatches!r}")
    m = operator.index(microbatches)
    if m < 1:
        raise ValueError(f"microbatches must be an integer >= 1, got {m}")
    return m


# --------------------------------------------------------------------------- compile


@dataclass(frozen=True)
class _Compiled:
    """An explicit order flattened to arrays (device order concatenated, device 0 first)."""

    num_devices: int
    base: np.ndarray  # (D+1,) offset of each device's first action
    dev: np.ndarray  # (N,) device of each action
    kind: np.ndarray  # (N,) kind code 0..3
    stage: np.ndarray  # (N,)
    mb: np.ndarray  # (N,)
    dep: np.ndarray  # (N,) index of the neighbour-stage input action, N if none
    out_dst: np.ndarray  # (N,) device receiving this action's output, -1 if none/same device
    stages_on_device: np.ndarray  # (D,)


def _parse_order(order: Any, num_stages: int, m: int) -> _Compiled:
    """Flatten, validate and link an explicit order (see ``simulate`` for the rules)."""
    if isinstance(order, (str, bytes)) or not isinstance(order, Sequence):
        raise TypeError(f"an explicit order must be a list of per-device action lists, got {type(order).__name__}")
    D = len(order)
    if D == 0:
        raise ValueError("the order has no devices")
    lens = []
    for d, actions in enumerate(order):
        if isinstance(actions, (str, bytes)) or not isinstance(actions, Sequence):
            raise TypeError(f"device {d}'s actions must be a list of (kind, stage, microbatch), got {actions!r}")
        if len(actions) == 0:
            raise ValueError(f"device {d} has no actions; every device must run at least one stage")
        lens.append(len(actions))
    flat = list(chain.from_iterable(order))
    N = len(flat)
    # a few C-speed passes over the flat list: this is the cost floor of taking Python lists
    try:
        if set(map(len, flat)) != {3}:
            raise TypeError
        kinds_text = "".join(map(itemgetter(0), flat))
    except TypeError:
        bad = next(a for a in flat if not (isinstance(a, Sequence) and len(a) == 3 and isinstance(a[0], str)))
        raise TypeError(f"every action must be a (kind, stage, microbatch) tuple with kind a str, got {bad!r}") from None
    try:
        # array('q') rejects floats, strings and huge ints, unlike np.fromiter
        stage = np.frombuffer(array("q", list(map(itemgetter(1), flat))), dtype=np.int64)
        mb = np.frombuffer(array("q", list(map(itemgetter(2), flat))), dtype=np.int64)
    except (TypeError, OverflowError):
        bad = next(a for a in flat if not (_is_int64(a[1]) and _is_int64(a[2])))
        raise TypeError(f"stage and microbatch must be integers, got action {bad!r}") from None
    kind_bytes = kinds_text.encode("utf-8")
    if len(kind_bytes) != N:
        bad = next(a for a in flat if len(a[0].encode("utf-8")) != 1)
        raise ValueError(f"unknown action kind in {bad!r}; allowed kinds: F, B, I, W")
    kind = _KIND_CODE[np.frombuffer(kind_bytes, dtype=np.uint8)]
    return _compile(kind, stage, mb, np.array(lens, dtype=np.int64), num_stages, m, flat.__getitem__)


def _compile_arrays(order: OrderArrays, num_stages: int, m: int) -> _Compiled:
    """Validate and link an order given as ``OrderArrays`` (the named schedules' fast path)."""
    kind = _KIND_CODE[np.minimum(order.kinds.view(np.uint32), 255)]

    def describe(k: int) -> tuple[str, int, int]:
        return (str(order.kinds[k]), int(order.stages[k]), int(order.microbatches[k]))

    return _compile(kind, order.stages, order.microbatches, order.lengths, num_stages, m, describe)


def _compile(
    kind: np.ndarray,
    stage: np.ndarray,
    mb: np.ndarray,
    lens: np.ndarray,
    num_stages: int,
    m: int,
    describe: Callable[[int], Any],
) -> _Compiled:
    """Validate and link a flat order: per action kind code, stage and microbatch, device by device.

    ``lens[d]`` counts device d's actions; ``describe(k)`` gives action k as the user wrote
    it, for error messages.
    """
    D = lens.size
    N = kind.size
    dev = np.repeat(np.arange(D, dtype=np.int64), lens)

    if kind.max() > _W:
        bad = np.flatnonzero(kind > _W)
        raise ValueError(f"unknown action kind in {describe(int(bad[0]))!r}; allowed kinds: F, B, I, W")
    # one unsigned comparison catches both negative and too-large values
    for label, values, limit in (("stage", stage, num_stages), ("microbatch", mb, m)):
        plural = "stages" if label == "stage" else "microbatches"
        if values.view(np.uint64).max() >= limit:
            k = int(np.flatnonzero(values.view(np.uint64) >= limit)[0])
            raise ValueError(
                f"action {describe(k)!r} on device {int(dev[k])} references {label} "
                f"{int(values[k])}; {plural} are 0..{limit - 1}"
            )

    # each stage lives on exactly one device
    dev_of_stage = np.full(num_stages, -1, dtype=np.int64)
    dev_of_stage[stage] = dev
    clash = np.flatnonzero(dev_of_stage[stage] != dev)
    if clash.size:
        k = int(clash[0])
        raise ValueError(
            f"stage {int(stage[k])} appears on devices {int(dev[k])} and "
            f"{int(dev_of_stage[stage[k]])}; each stage must live on exactly one device"
        )

    # every (stage, mb): F once, and B once or I and W once each
    SM = num_stages * m
    key = kind * SM + stage * m + mb
    counts = np.bincount(key, minlength=4 * SM).reshape(4, SM)
    if counts.max() > 1:
        kk, sj = (int(x[0]) for x in np.nonzero(counts > 1))
        s, j = divmod(sj, m)
        where = sorted({int(d) for d in dev[key == kk * SM + sj]})
        raise ValueError(
            f"action {_fmt(kk, s, j)} appears {int(counts[kk, sj])} times (devices {where}); "
            "each action must appear once"
        )
    cF, cB, cI, cW = counts
    if not ((cF == 1) & (cB + cI == 1) & (cI == cW)).all():
        problems = [
            (cF == 0, "missing forward {F}"),
            ((cB == 0) & (cI == 0) & (cW == 0), "missing backward {B} (or {I} and {W})"),
            ((cB == 1) & ((cI == 1) | (cW == 1)), "{B} and a split backward ({I}/{W}) both appear; use B or I+W"),
            ((cB == 0) & (cI == 1) & (cW == 0), "{I} appears without {W}"),
            ((cB == 0) & (cI == 0) & (cW == 1), "{W} appears without {I}"),
        ]
        for mask, text in problems:
            bad = np.flatnonzero(mask)
            if bad.size:
                s, j = divmod(int(bad[0]), m)
                names = {k: _fmt(k, s, j) for k in _KINDS}
                raise ValueError(f"{text.format(**names)} ({bad.size} (stage, microbatch) pairs affected)")
        raise AssertionError("unreachable: some count combination was not classified")

    # position of every (kind, stage, mb) in the flat order; (S, m) tables
    table = np.full(4 * SM, N, dtype=np.int64)
    table[key] = np.arange(N, dtype=np.int64)
    pos_f, pos_b, pos_i, pos_w = table.reshape(4, num_stages, m)
    pos_grad = np.where(pos_b != N, pos_b, pos_i)  # the B or the I of (s, j)

    # same-stage inputs live on the same device: they must come earlier in its list
    late_grad = pos_f > pos_grad  # B/I(s, j) before F(s, j)
    late_w = (pos_w != N) & (pos_i > pos_w)  # W(s, j) before I(s, j)
    if late_grad.any() or late_w.any():
        waits = np.concatenate([pos_grad[late_grad], pos_w[late_w]])
        needs = np.concatenate([pos_f[late_grad], pos_i[late_w]])
        k = int(np.argmin(waits))
        a, o = int(waits[k]), int(needs[k])
        raise ValueError(
            f"deadlock: device {int(dev[a])} waits at {_fmt(kind[a], stage[a], mb[a])} for "
            f"{_fmt(kind[o], stage[o], mb[o])}, which comes later on device {int(dev[a])}"
        )

    # the neighbour-stage input of every action: F(s-1, j) for F, the B/I of (s+1, j) for B/I
    dep = np.full(N, N, dtype=np.int64)
    dep[pos_f[1:]] = pos_f[:-1]
    dep[pos_grad[:-1]] = pos_grad[1:]
    # the device receiving each action's output: F -> stage s+1, B/I -> stage s-1
    out_dst = np.full(N, -1, dtype=np.int64)
    out_dst[pos_f[:-1]] = dev_of_stage[1:, None]
    out_dst[pos_grad[1:]] = dev_of_stage[:-1, None]
    out_dst[out_dst == dev] = -1
    stages_on_device = np.bincount(dev_of_stage, minlength=D)

    base = np.zeros(D + 1, dtype=np.int64)
    np.cumsum(lens, out=base[1:])
    return _Compiled(D, base, dev, kind, stage, mb, dep, out_dst, stages_on_device)


# --------------------------------------------------------------------------- engine


def _deadlock_message(c: _Compiled, ptr: np.ndarray, stop: np.ndarray, arrival: np.ndarray) -> str:
    N = c.dev.size
    parts = []
    stuck = [d for d in range(c.num_devices) if ptr[d] < stop[d]]
    for d in stuck:
        g = int(ptr[d])
        x = int(c.dep[g])
        here = _fmt(c.kind[g], c.stage[g], c.mb[g])
        if x == N or arrival[x] >= 0:  # pragma: no cover - a stuck device always lacks an input
            parts.append(f"device {d} waits at {here}")
            continue
        need = _fmt(c.kind[x], c.stage[x], c.mb[x])
        dx = int(c.dev[x])
        if dx == d:
            why = f"which comes later on device {d}"
        else:
            blocker = int(ptr[dx])
            why = f"device {dx} is stuck at {_fmt(c.kind[blocker], c.stage[blocker], c.mb[blocker])}"
        parts.append(f"device {d} waits at {here} for {need} ({why})")
    shown = parts[:8]
    more = f"; and {len(parts) - 8} more stuck devices" if len(parts) > 8 else ""
    return "deadlock: " + "; ".join(shown) + more


def _run(
    c: _Compiled, dur: np.ndarray, link: np.ndarray | None, delay: np.ndarray | None, num_links: int
) -> tuple[np.ndarray, np.ndarray]:
    """Wavefront engine. Returns ``(start, arrival)`` per action, in seconds.

    ``dur``: seconds each action occupies its device. ``link``: slot of the link that
    carries the action's output to another device (a private dummy slot per device when
    there is none); ``delay``: that transfer's seconds; both None when no transfer takes
    time (then ``arrival = end``). ``arrival[a]`` is when a's output is usable by the
    neighbour-stage consumer. Each iteration runs the next action of every device whose
    input has arrived; as every action has at most one cross-device output and each
    device sends on its own links, the vectorised link updates never collide.
    """
    N = c.dev.size
    D = c.num_devices
    # engine layout: device d's actions shifted by d, then one sentinel that never gets
    # ready, so a finished device needs no bookkeeping
    shift = c.dev + np.arange(N)
    NE = N + D
    never, none = NE, NE + 1
    dep_e = np.full(NE, never, dtype=np.int64)
    dep_e[shift] = np.where(c.dep == N, none, shift[np.minimum(c.dep, N - 1)])
    dur_e = np.zeros(NE)
    dur_e[shift] = dur
    start_e = np.zeros(NE)
    arrival = np.full(NE + 2, -1.0)
    arrival[none] = 0.0
    ptr = c.base[:-1] + np.arange(D)
    free = np.zeros(D)
    if link is not None:
        assert delay is not None
        link_e = np.zeros(NE, dtype=np.int64)
        link_e[shift] = link
        delay_e = np.zeros(NE)
        delay_e[shift] = delay
        link_free = np.zeros(num_links)
    # numpy ufuncs with a Python scalar operand and reductions like min() cost several
    # times a small fancy index; argmin and array-array ufuncs do not
    maximum = np.maximum
    add = np.add
    one = np.ones(D, dtype=np.int64)
    zero = np.zeros(D)
    done = 0
    while done < N:
        cur = ptr
        av = arrival[dep_e[cur]]
        if av[av.argmin()] >= 0.0:
            sel = None
            ts = maximum(free, av)
        else:
            sel = (av >= zero).nonzero()[0]
            if sel.size == 0:
                raise ValueError(_deadlock_message(c, ptr - np.arange(D), c.base[1:], arrival[shift]))
            cur = cur[sel]
            ts = maximum(free[sel], av[sel])
        te = add(ts, dur_e[cur])
        if link is None:
            arrival[cur] = te
        else:
            lk = link_e[cur]
            arr = maximum(te, link_free[lk])
            add(arr, delay_e[cur], out=arr)
            link_free[lk] = arr
            arrival[cur] = arr
        start_e[cur] = ts
        if sel is None:
            free = te
            add(ptr, one, out=ptr)
            done += D
        else:
            free[sel] = te
            ptr[sel] = add(cur, one[: sel.size])
            done += sel.size
    return start_e[shift], arrival[shift]


# --------------------------------------------------------------------------- public


def simulate(
    schedule: str | Sequence[Sequence[tuple[str, int, int]]],
    f: Any,
    b: Any,
    microbatches: int,
    comm: Any = None,
    comm_mode: str = "overlap",
    w: Any = None,
    stages_per_device: int = 1,
) -> SimResult:
    """Time a static-order pipeline schedule exactly (semantics.md §4-§5); seconds in, seconds out.

    ``schedule`` is a name in ``bubblereduce.schedules.SCHEDULES`` (built with
    ``build_order(name, len(f), microbatches, stages_per_device)``) or an explicit order:
    one list per device of ``(kind, stage, microbatch)``, kinds F/B/I/W, where each stage
    lives on exactly one device (placement follows from the order; ``stages_per_device``
    is then ignored) and every (stage, microbatch) has one F and either one B or one I
    and one W. ``f``, ``b``, ``w``: per-stage seconds (arrays of length = number of
    stages); ``b`` is the full backward, with ``w`` an I lasts ``b - w`` and a W lasts
    ``w`` (``0 <= w <= b``). A scalar is broadcast when the number of stages is known
    from another array argument or from an explicit order. ``comm``: seconds per stage
    boundary (length stages - 1, or a scalar, or None for zero); transfers between stages
    on the same device are free. ``comm_mode``: ``"overlap"`` or ``"blocking"``. Raises
    ``ValueError``/``TypeError`` for bad input and ``ValueError("deadlock: ...")``
    naming the stuck actions when the order can never finish.
    """
    m = _check_microbatches(microbatches)
    if comm_mode not in COMM_MODES:
        raise ValueError(f"comm_mode must be one of {COMM_MODES}, got {comm_mode!r}")
    named = isinstance(schedule, str)
    if named and schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; known schedules: {', '.join(SCHEDULES)}")

    lengths = {}
    for name, value in (("f", f), ("b", b), ("w", w)):
        if value is not None and not _is_scalar(value):
            if np.ndim(value) != 1:
                raise ValueError(f"{name} must be one-dimensional (per-stage seconds), got shape {np.shape(value)}")
            lengths[name] = len(value)
    if len(set(lengths.values())) > 1:
        raise ValueError(f"per-stage arrays differ in length: {lengths}")
    if lengths:
        num_stages = next(iter(lengths.values()))
    elif named:
        raise ValueError(
            f"f, b (and w) are all scalars: pass per-stage arrays so that schedule {schedule!r} "
            "knows the number of stages"
        )
    else:
        try:
            num_stages = 1 + max(int(a[1]) for dev in schedule for a in dev)
        except (TypeError, ValueError, IndexError) as exc:
            raise TypeError(f"cannot read stages from the explicit order: {exc}") from None
    if num_stages < 1:
        raise ValueError(f"need at least one stage, got {num_stages}")

    f_s = _seconds_array("f", f, num_stages)
    b_s = _seconds_array("b", b, num_stages)
    w_s = None if w is None else _seconds_array("w", w, num_stages)
    comm_s = np.zeros(max(num_stages - 1, 0)) if comm is None else _seconds_array("comm", comm, num_stages - 1)
    if w_s is not None:
        bad = np.flatnonzero(w_s > b_s)
        if bad.size:
            k = int(bad[0])
            raise ValueError(f"w[{k}] = {float(w_s[k])!r} exceeds b[{k}] = {float(b_s[k])!r}; need 0 <= w <= b")

    if named:
        if schedule in NEEDS_W and w_s is None:
            raise ValueError(f"schedule {schedule!r} splits the backward into I and W: pass w (per-stage seconds)")
        v = stages_per_device
        if schedule in _ARRAY_FORMS and type(v) is int and v >= 1 and num_stages % v == 0:
            c = _compile_arrays(_ARRAY_FORMS[schedule](num_stages // v, m, v), num_stages, m)
        else:  # build_order raises the errors for bad stages_per_device
            c = _parse_order(build_order(schedule, num_stages, m, stages_per_device), num_stages, m)
    else:
        c = _parse_order(schedule, num_stages, m)
    if w_s is None and bool(np.any((c.kind == _I) | (c.kind == _W))):
        raise ValueError("the order uses I/W actions: pass w (per-stage seconds of the weight-gradient part)")
    return _simulate_compiled(c, f_s, b_s, w_s, comm_s, comm_mode)


def _simulate_compiled(
    c: _Compiled, f_s: np.ndarray, b_s: np.ndarray, w_s: np.ndarray | None, comm_s: np.ndarray, comm_mode: str
) -> SimResult:
    D = c.num_devices
    N = c.dev.size
    w_full = np.zeros_like(b_s) if w_s is None else w_s
    per_kind = np.stack([f_s, b_s, b_s - w_full, w_full])  # (4, S)
    compute = per_kind[c.kind, c.stage]

    cross = c.out_dst >= 0
    # boundary crossed by the output: F(s) -> s+1 uses comm[s]; B/I(s) -> s-1 uses comm[s-1]
    boundary = np.where(c.kind == _F, c.stage, c.stage - 1)
    tr_s = np.zeros(N, dtype=np.float64)
    tr_s[cross] = comm_s[boundary[cross]]

    if comm_mode == "blocking":
        dur = compute + tr_s  # the producer stays busy while it sends
        link = delay = None
        num_links = 0
    elif not tr_s.any():
        dur = compute  # free transfers: arrival = end, links never queue
        link = delay = None
        num_links = 0
    else:
        dur = compute
        # link slot D + src * D + dst; slot d is device d's dummy for outputs it keeps
        if D <= 1024:
            link = np.where(cross, D + c.dev * D + c.out_dst, c.dev)
            num_links = D + D * D
        else:
            uniq, link_id = np.unique(np.where(cross, c.dev * D + c.out_dst, -1), return_inverse=True)
            link = np.where(cross, D + link_id, c.dev)
            num_links = D + uniq.size
        delay = tr_s

    start, arrival = _run(c, dur, link, delay, num_links)
    end = start + dur

    first = c.base[:-1]
    last = c.base[1:] - 1
    makespan = float(end.max())
    busy = np.bincount(c.dev, weights=compute, minlength=D)
    span = end[last] - start[first]
    total = float(busy.sum())
    bubble = 1.0 - total / (D * makespan) if makespan > 0 else 0.0

    # in flight: +1 at F, -1 at B/I, scanned along each device's order
    step = np.where(c.kind == _F, 1, np.where((c.kind == _B) | (c.kind == _I), -1, 0))
    level = np.cumsum(step)
    level -= np.repeat(level[first] - step[first], np.diff(c.base))
    peak = np.maximum.reduceat(level, first) / c.stages_on_device

    def event_columns() -> list[np.ndarray]:
        return [c.dev, _KIND_NAMES[c.kind], c.stage, c.mb, start, end]

    idx = np.flatnonzero(cross)

    def transfer_columns() -> list[np.ndarray]:
        if comm_mode == "blocking":
            tr_start = start[idx] + compute[idx]
            tr_end = end[idx]
        elif link is None:
            tr_start = tr_end = end[idx]
        else:
            tr_end = arrival[idx]
            # a transfer starts when its producer has finished and its link is free
            lid = link[idx]
            on_link = np.lexsort((idx, lid))  # each link's transfers in issue order
            lid_sorted = lid[on_link]
            prev_sorted = np.full(idx.size, -np.inf)
            same_link = lid_sorted[1:] == lid_sorted[:-1]
            prev_sorted[1:] = np.where(same_link, tr_end[on_link][:-1], -np.inf)
            prev = np.empty_like(prev_sorted)
            prev[on_link] = prev_sorted
            tr_start = np.maximum(end[idx], prev)
        kinds = _KIND_NAMES[c.kind[idx]]
        return [c.dev[idx], c.out_dst[idx], kinds, c.stage[idx], c.mb[idx], tr_start, tr_end]

    events = _Rows(N, event_columns)
    transfers = _Rows(idx.size, transfer_columns)
    return SimResult(
        makespan=makespan,
        bubble_fraction=bubble,
        busy=tuple(busy.tolist()),
        span=tuple(span.tolist()),
        peak_inflight=tuple(peak.tolist()),
        num_devices=D,
        events=events,
        transfers=transfers,
    )


def comm_seconds(act_bytes: Any, bandwidth_GBps: float, latency_s: float = 0.0) -> np.ndarray:
    """Seconds to move activations of ``act_bytes`` over a link: ``latency_s + bytes / (bandwidth_GBps * 1e9)``.

    ``act_bytes``: a byte count or an array of them (>= 0); ``bandwidth_GBps`` > 0 in
    gigabytes (1e9 bytes) per second; ``latency_s`` >= 0 seconds per transfer. Returns a
    float64 array of the same shape.
    """
    bw = float(bandwidth_GBps)
    lat = float(latency_s)
    if not (math.isfinite(bw) and bw > 0):
        raise ValueError(f"bandwidth_GBps must be finite and > 0, got {bandwidth_GBps!r}")
    if not (math.isfinite(lat) and lat >= 0):
        raise ValueError(f"latency_s must be finite and >= 0, got {latency_s!r}")
    arr = np.asarray(act_bytes, dtype=np.float64)
    if not np.all(np.isfinite(arr) & (arr >= 0)):
        raise ValueError(f"act_bytes must be finite and >= 0, got {act_bytes!r}")
    return lat + arr / (bw * 1e9)


def stage_comm_seconds(
    block_act_bytes: Any, parts: Sequence[tuple[int, int]], bandwidth_GBps: float, latency_s: float = 0.0
) -> np.ndarray:
    """Per-boundary transfer seconds of a partition: the last block of every stage but the last.

    ``block_act_bytes[i]``: output bytes of block i; ``parts``: half-open block ranges
    ``[(0, e1), ..., (e_{p-1}, n)]`` (contiguous, covering, non-empty). Returns a float64
    array of length ``len(parts) - 1`` with ``latency_s + bytes / (bandwidth_GBps * 1e9)``.
    """
    acts = np.asarray(block_act_bytes, dtype=np.float64)
    n = acts.shape[0] if acts.ndim == 1 else -1
    if n < 1:
        raise ValueError(f"block_act_bytes must be a non-empty 1-D array, got shape {acts.shape}")
    parts = [tuple(p) for p in parts]
    expect = 0
    for k, (lo, hi) in enumerate(parts):
        if lo != expect or hi <= lo:
            raise ValueError(f"parts[{k}] = {(lo, hi)} breaks a contiguous, non-empty cover of 0..{n}: {parts}")
        expect = hi
    if not parts or expect != n:
        raise ValueError(f"parts must cover blocks 0..{n} exactly, got {parts}")
    ends = np.array([hi - 1 for _, hi in parts[:-1]], dtype=np.int64)
    return comm_seconds(acts[ends], bandwidth_GBps, latency_s)
