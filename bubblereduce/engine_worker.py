"""Process side of the real-engine check: launching ranks and what each rank runs.

``run_ranks`` starts one spawned process per rank on 127.0.0.1 (gloo on CPU,
NCCL on GPU), hands each the same picklable task, and collects one payload
per rank. It never leaves a worker behind: every child is terminated (then
killed) in ``finally``, a rank that raises or dies surfaces as ``EngineError``
carrying that rank's traceback, and both the collectives (process-group
timeout) and the parent's wait (``timeout_s``) are bounded, so nothing hangs.
Workers also exit on their own when their parent disappears.

The tasks here (link ping-pong, concurrent profiling, pipeline steps on
``torch.distributed.pipelining``) are internal; ``bubblereduce.engine`` holds
the public API.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import queue
import socket
import statistics
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "EngineError",
    "TORCH_SCHEDULES",
    "free_port",
    "run_ranks",
    "split_sequential",
    "stage_placement",
    "steady_malloc",
    "LinkTask",
    "ProfileTask",
    "PipelineJob",
    "PipelineTask",
]

# our schedule name -> (torch.distributed.pipelining class, stages per rank, placement)
TORCH_SCHEDULES: dict[str, tuple[str, int, str]] = {
    "gpipe": ("ScheduleGPipe", 1, "loop"),
    "1f1b": ("Schedule1F1B", 1, "loop"),
    "interleaved-1f1b": ("ScheduleInterleaved1F1B", 2, "loop"),
    "zbv": ("ScheduleZBVZeroBubble", 2, "v"),
    "dualpipev": ("ScheduleDualPipeV", 2, "v"),
}


class EngineError(RuntimeError):
    """A rank failed, died, or did not answer in time; the message says which and why."""


def split_sequential(
    model: nn.Sequential, layer_ranges: Sequence[tuple[int, int]]
) -> list[nn.Sequential]:
    """Cut ``model`` into per-stage ``nn.Sequential`` modules by half-open layer ranges.

    ``layer_ranges`` index ``model``'s top-level children and must be
    contiguous, cover all children and be non-empty (semantics.md §2). Each
    stage keeps the children's original names, so a stage's parameter names
    equal the full model's (``"3.0.weight"`` stays ``"3.0.weight"``). The
    stages share the children (and their parameters) with ``model``; nothing is
    copied. Raises ``TypeError`` for a non-Sequential model and ``ValueError``
    for ranges that do not partition its children.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential, got {type(model).__name__}")
    children = list(model.named_children())
    n = len(children)
    ranges = [tuple(r) for r in layer_ranges]
    if not ranges:
        raise ValueError("layer_ranges is empty; need at least one (start, end) range")
    expected_start = 0
    for start, end in ranges:
        if start != expected_start or end <= start:
            raise ValueError(
                f"layer_ranges {ranges} must be contiguous, non-empty half-open ranges "
                f"starting at 0 (range ({start}, {end}) breaks this)"
            )
        expected_start = end
    if expected_start != n:
        raise ValueError(
            f"layer_ranges {ranges} end at {expected_start} but the model has {n} layers"
        )
    return [nn.Sequential(OrderedDict(children[a:b])) for a, b in ranges]


def stage_placement(num_stages: int, world: int, placement: str) -> list[list[int]]:
    """Stage indices held by each rank: ``"loop"`` (stage s on rank s % world) or
    ``"v"`` (rank d holds d and 2*world-1-d)."""
    if placement == "loop":
        return [list(range(r, num_stages, world)) for r in range(world)]
    if placement == "v":
        if num_stages != 2 * world:
            raise ValueError(f"V-shape placement needs 2*world stages, got {num_stages} for world {world}")
        return [[r, 2 * world - 1 - r] for r in range(world)]
    raise ValueError(f"unknown placement {placement!r}; allowed: 'loop', 'v'")


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (bind to port 0 and read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- tasks


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


@dataclass(frozen=True)
class LinkTask:
    """Ping-pong between rank 0 and rank 1: one-way seconds per message size (median)."""

    sizes_bytes: tuple[int, ...]
    warmup: int = 3
    repeats: int = 15

    def run(self, rank: int, world: int, device: torch.device) -> dict[str, Any]:
        """Median one-way seconds per size (rank 0's view; other ranks only join the barriers)."""
        one_way_s: list[float] = []
        for size in self.sizes_bytes:
            buf = torch.zeros(max(1, size // 4), dtype=torch.float32, device=device)
            times: list[float] = []
            for k in range(self.warmup + self.repeats):
                dist.barrier()
                t0 = time.perf_counter()
                if rank == 0:
                    dist.send(buf, dst=1)
                    dist.recv(buf, src=1)
                elif rank == 1:
                    dist.recv(buf, src=0)
                    dist.send(buf, dst=0)
                t1 = time.perf_counter()
                if k >= self.warmup:
                    times.append((t1 - t0) / 2.0)
            one_way_s.append(_median(times))
        return {"sizes_bytes": list(self.sizes_bytes), "one_way_s": one_way_s}


@dataclass(frozen=True)
class ProfileTask:
    """Every rank profiles the whole model at each microbatch size at the same time,
    so the profile sees the same contention (one busy process per core) as the run."""

    input_shape: tuple[int, ...]
    microbatch_sizes: tuple[int, ...]
    warmup: int = 1
    repeats: int = 3
    seed: int = 0

    def run(self, model: nn.Sequential, device: torch.device) -> dict[int, Any]:
        """``{microbatch_size: ModelProfile}`` of ``model`` (threads = 1), inputs drawn with ``seed``."""
        from bubblereduce.profile import profile_sequential

        gen = torch.Generator().manual_seed(self.seed)
        out = {}
        for mb in self.microbatch_sizes:
            sample = torch.randn((mb, *self.input_shape), generator=gen).to(device)
            out[mb] = profile_sequential(
                model, sample, warmup=self.warmup, repeats=self.repeats, threads=1,
                device=device, split_backward=True,
            )
        return out


@dataclass(frozen=True)
class PipelineJob:
    """One configuration: a partition (layer ranges), a schedule and a microbatch count."""

    key: str
    layer_ranges: tuple[tuple[int, int], ...]
    schedule: str
    microbatches: int
    warmup_steps: int = 1
    steps_per_round: int = 3
    return_grads: bool = False


@dataclass(frozen=True)
class PipelineTask:
    """Run ``jobs`` on torch.distributed.pipelining, interleaved in ``rounds``.

    All jobs share one model per rank (stages are views on its layers). After
    ``warmup_steps`` untimed steps per job, each round runs the optional
    ``profile`` once and then ``steps_per_round`` timed steps of every job, so
    slow phases of external load spread over all configurations and the
    profile alike. A timed step is ``barrier → schedule.step → optimizer.step
    → zero_grad → barrier``; rank 0's wall time between the barriers is the
    step time. Each stage's forward/backward calls are also timed inside the
    run (``inrun_*``, a diagnostic). Before each round's steps each rank
    measures, on its own, the post-schedule work of its stages (gradient scaling by 1/m,
    ``SGD.step``, ``zero_grad``), each stage's gradient accumulation (one
    in-place add over its parameters) and the last stage's rank the loss
    forward and backward at the microbatch size: the overheads the prediction
    adds (medians over rounds; measured independently, never fitted). ``fail_rank`` makes that
    rank raise and ``crash_rank`` exit abruptly after setup (tests use them).
    """

    model_fn: Callable[[], nn.Sequential]
    input_shape: tuple[int, ...]
    global_batch: int
    jobs: tuple[PipelineJob, ...]
    rounds: int = 1
    profile: ProfileTask | None = None
    lr: float = 1e-3
    seed: int = 0
    overhead_repeats: int = 5
    fail_rank: int | None = None
    crash_rank: int | None = None

    def run(self, rank: int, world: int, device: torch.device) -> dict[str, Any]:
        """``{"jobs": {key: this rank's measurements}, "profiles": [per-round profiles]}``."""
        gen = torch.Generator().manual_seed(self.seed)
        x = torch.randn((self.global_batch, *self.input_shape), generator=gen)
        model = self.model_fn().to(device)
        with torch.no_grad():
            out_shape = tuple(model(x[:1].to(device)).shape[1:])
        target = torch.randn((self.global_batch, *out_shape), generator=gen)
        x, target = x.to(device), target.to(device)
        if self.crash_rank == rank:
            os._exit(3)
        if self.fail_rank == rank:
            raise RuntimeError(f"injected failure on rank {rank} (fail_rank={self.fail_rank})")
        runners = [_JobRunner(self, job, model, rank, world, device, x, target) for job in self.jobs]
        for r in runners:
            r.warm_up()
        profiles = []
        for _ in range(self.rounds):
            if self.profile is not None:
                profiles.append(self.profile.run(model, device))
            for r in runners:
                r.timed_steps()
        return {"jobs": {r.job.key: r.result() for r in runners}, "profiles": profiles}


def _mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(output, target)


def _time_post_step(params: list[nn.Parameter], opt: torch.optim.Optimizer, m: int, repeats: int) -> float:
    """Median seconds of the work after the last backward: grads /= m, SGD step, zero_grad."""
    times = []
    for _ in range(repeats + 1):
        for p in params:
            p.grad = torch.full_like(p, 1e-6)
        t0 = time.perf_counter()
        with torch.no_grad():
            for p in params:
                p.grad.div_(m)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return _median(times[1:])


def _time_accumulate(params: list[nn.Parameter], repeats: int) -> float:
    """Median seconds to add one microbatch's gradients into existing ``.grad`` tensors.

    Autograd does this in-place add for every microbatch after the first of a
    step (the first one's gradients are stored as they are); the layer profile
    (``torch.autograd.grad``) never does it.
    """
    if not params:
        return 0.0
    grads = [torch.full_like(p, 1e-6) for p in params]
    accs = [torch.zeros_like(p) for p in params]
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        for a, g in zip(accs, grads, strict=True):
            a.add_(g)
        times.append(time.perf_counter() - t0)
    return _median(times[1:])


def _time_loss(out_shape: tuple[int, ...], mb: int, repeats: int, device: torch.device) -> tuple[float, float]:
    """Median (forward_s, backward_s) of the MSE loss on one microbatch of outputs."""
    out = torch.randn((mb, *out_shape), device=device, requires_grad=True)
    tgt = torch.randn((mb, *out_shape), device=device)
    fs, bs = [], []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        loss = _mse(out, tgt)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        fs.append(t1 - t0)
        bs.append(t2 - t1)
        out.grad = None
    return _median(fs[1:]), _median(bs[1:])


def _timed(fn: Callable[..., Any], log: list[float], active: list[bool]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not active[0]:
            return fn(*args, **kwargs)
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        log.append(time.perf_counter() - t0)
        return out

    return wrapper


class _JobRunner:
    """One job's stages, schedule and optimizer on this rank, and its measurements."""

    def __init__(self, task: PipelineTask, job: PipelineJob, model: nn.Sequential, rank: int,
                 world: int, device: torch.device, x: torch.Tensor, target: torch.Tensor) -> None:
        import torch.distributed.pipelining as pp

        cls_name, per_rank, placement = TORCH_SCHEDULES[job.schedule]
        self.job, self.device, self.x, self.target = job, device, x, target
        num_stages = len(job.layer_ranges)
        self.my_stages = stage_placement(num_stages, world, placement)[rank]
        mods = split_sequential(model, job.layer_ranges)
        self.mods = {s: mods[s] for s in self.my_stages}
        stages = [pp.PipelineStage(mods[s], s, num_stages, device) for s in self.my_stages]
        # in-run action timing (a diagnostic): instance attributes shadow the methods
        self.active = [False]
        self.inrun: dict[str, list[float]] = {}
        for s, st in zip(self.my_stages, stages, strict=True):
            for kind, meth in (("F", "forward_one_chunk"), ("B", "backward_one_chunk"),
                               ("W", "backward_weight_one_chunk")):
                log = self.inrun.setdefault(f"{kind}{s}", [])
                setattr(st, meth, _timed(getattr(st, meth), log, self.active))
        cls = getattr(pp, cls_name)
        m = job.microbatches
        self.sched = cls(stages[0] if per_rank == 1 else stages, n_microbatches=m, loss_fn=_mse)
        self.params = [p for mod in self.mods.values() for p in mod.parameters()]
        self.opt = torch.optim.SGD(self.params, lr=task.lr)
        self.holds_first = 0 in self.my_stages
        self.holds_last = num_stages - 1 in self.my_stages
        self.task = task
        self.out: dict[str, Any] = {"stages": self.my_stages}
        self.overheads: dict[str, list[float]] = {}
        self.step_s: list[float] = []
        self.loss = float("nan")

    def measure_overheads(self) -> None:
        """Time this rank's per-step overheads on their own (once per round, like the steps)."""
        m, reps = self.job.microbatches, self.task.overhead_repeats
        found = {"post_step_s": _time_post_step(self.params, self.opt, m, reps)}
        for s, mod in self.mods.items():
            found[f"accumulate_s{s}"] = _time_accumulate(list(mod.parameters()), reps)
        if self.holds_last:
            found["loss_forward_s"], found["loss_backward_s"] = _time_loss(
                tuple(self.target.shape[1:]), self.task.global_batch // m, reps, self.device)
        for key, value in found.items():
            self.overheads.setdefault(key, []).append(value)

    def _step(self) -> list[torch.Tensor]:
        losses: list[torch.Tensor] = []
        args = (self.x,) if self.holds_first else ()
        kwargs: dict[str, Any] = {"target": self.target, "losses": losses} if self.holds_last else {}
        self.sched.step(*args, **kwargs)
        return losses

    def _record_loss(self, losses: list[torch.Tensor]) -> None:
        if self.holds_last and losses:
            self.loss = float(torch.stack([loss.detach() for loss in losses]).mean().cpu())

    def warm_up(self) -> None:
        if self.job.return_grads:
            dist.barrier()
            self._record_loss(self._step())
            dist.barrier()
            self.out["grads"] = {
                name: p.grad.detach().cpu().clone()
                for mod in self.mods.values() for name, p in mod.named_parameters() if p.grad is not None
            }
            self.opt.zero_grad(set_to_none=True)
            return
        for _ in range(self.job.warmup_steps):
            self._one_training_step(timed=False)

    def timed_steps(self) -> None:
        if self.job.return_grads:
            return
        self.measure_overheads()
        for _ in range(self.job.steps_per_round):
            self._one_training_step(timed=True)

    def _one_training_step(self, timed: bool) -> None:
        self.active[0] = timed
        dist.barrier()
        t0 = time.perf_counter()
        losses = self._step()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        dist.barrier()
        t1 = time.perf_counter()
        self.active[0] = False
        if timed:
            self.step_s.append(t1 - t0)
        self._record_loss(losses)

    def result(self) -> dict[str, Any]:
        if not self.overheads:
            self.measure_overheads()
        med = {key: _median(values) for key, values in self.overheads.items()}
        self.out["post_step_s"] = med["post_step_s"]
        self.out["accumulate_s"] = {s: med[f"accumulate_s{s}"] for s in self.my_stages}
        if self.holds_last:
            self.out["loss_forward_s"] = med["loss_forward_s"]
            self.out["loss_backward_s"] = med["loss_backward_s"]
        self.out["step_s"] = self.step_s
        self.out["inrun_s"] = {k: _median(v) for k, v in self.inrun.items() if v}
        if self.holds_last:
            self.out["loss"] = self.loss
        return self.out


# --------------------------------------------------------------------------- launching


def _watch_parent(parent_pid: int) -> None:
    """Exit this worker when the parent process is gone (no orphans after a kill -9)."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(1)


def steady_malloc() -> bool:
    """Keep freed memory in this process's heap (glibc ``mallopt``); True if applied.

    By default glibc serves allocations above a dynamic threshold (at most
    32 MiB) with a fresh ``mmap`` and unmaps them on free, so a weight gradient
    that large is page-faulted in again on every microbatch's backward
    (8192 faults for a 33.5 MB gradient); a per-layer profile does not see
    this. Raising the mmap and trim thresholds serves them from a reused heap.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1
    return libc.mallopt(m_trim_threshold, (1 << 31) - 1) == 1 and ok


def _worker_main(
    rank: int, world: int, port: int, backend: str, device_type: str, collective_timeout_s: float,
    task: Any, results: Any, parent_pid: int, pin_cpus: bool, malloc_steady: bool,
) -> None:
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    if malloc_steady and not steady_malloc():
        print(f"rank {rank}: could not tune glibc malloc (not glibc?); running with the defaults")
    if pin_cpus and hasattr(os, "sched_setaffinity"):
        # one core per rank: left alone, the scheduler sometimes runs both ranks on one core
        # and the pipeline serialises (bimodal step times, ~2x apart, on a busy machine)
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= world:
            os.sched_setaffinity(0, {cpus[rank]})
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    initialized = False
    try:
        if device_type == "cuda":
            torch.cuda.set_device(rank)
            device = torch.device("cuda", rank)
        else:
            device = torch.device("cpu")
        dist.init_process_group(
            backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
            timeout=timedelta(seconds=collective_timeout_s),
        )
        initialized = True
        payload = task.run(rank, world, device)
        dist.barrier()
        # plain pickle copies tensors; torch's queue reducers would share memory that dies with us
        results.put(("ok", rank, pickle.dumps(payload)))
    except BaseException:  # report everything, including KeyboardInterrupt, to the parent
        results.put(("error", rank, traceback.format_exc()))
    finally:
        if initialized:
            try:
                dist.destroy_process_group()
            except Exception:  # a broken group cannot be torn down cleanly; exiting is enough
                pass


def _failure_message(procs: Sequence[Any], results: Any, payloads: Mapping[int, Any], rank: int,
                     trace: str, grace_s: float = 1.0) -> str:
    """Name the root cause first: a rank that died without a report (its peers then fail with
    "connection closed"), else the first rank that reported an error; then the others."""
    errors = [(rank, trace)]
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            status, r, payload = results.get(timeout=0.1)
        except queue.Empty:
            continue
        if status == "error":
            errors.append((r, payload))
    reported = {r for r, _ in errors} | set(payloads)
    dead = [r for r, p in enumerate(procs) if r not in reported and not p.is_alive() and p.exitcode]
    parts = [f"rank {r} exited with code {procs[r].exitcode} without reporting a result" for r in dead]
    parts += [f"rank {r} failed:\n{t}" for r, t in errors]
    if len(parts) > 1:
        parts[1:] = [f"then {part}" for part in parts[1:]]
    return "\n".join(parts)


def _stop_all(procs: Sequence[Any], grace_s: float = 3.0) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(1.0)


def run_ranks(
    task: Any,
    world: int = 2,
    *,
    device_type: str = "cpu",
    timeout_s: float = 300.0,
    collective_timeout_s: float = 60.0,
    pin_cpus: bool = True,
    malloc_steady: bool = False,
) -> list[Any]:
    """Run ``task.run(rank, world, device)`` in ``world`` spawned processes; return payloads by rank.

    Processes rendezvous on a free 127.0.0.1 port with gloo (``device_type="cpu"``)
    or NCCL (``"cuda"``, one GPU per rank), torch threads = 1 each.
    ``collective_timeout_s`` bounds every collective and point-to-point wait
    inside the ranks; ``timeout_s`` (seconds) bounds the whole run from the
    parent's side. With ``pin_cpus`` and at least
    ``world`` usable CPUs, rank r is pinned to the r-th of them; with
    ``malloc_steady`` each worker calls :func:`steady_malloc` first. Raises ``EngineError`` naming the rank and carrying its
    traceback when a rank raises, exits without a result, or the run times out;
    all children are terminated before this function returns or raises
    (including on ``KeyboardInterrupt``).
    """
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        raise ValueError(f"world must be an integer >= 1, got {world!r}")
    if device_type not in ("cpu", "cuda"):
        raise ValueError(f"device_type must be 'cpu' or 'cuda', got {device_type!r}")
    if device_type == "cuda" and torch.cuda.device_count() < world:
        raise ValueError(f"device_type='cuda' needs {world} GPUs, found {torch.cuda.device_count()}")
    if timeout_s <= 0 or collective_timeout_s <= 0:
        raise ValueError(f"timeouts must be > 0 s, got timeout_s={timeout_s}, collective_timeout_s={collective_timeout_s}")
    backend = "nccl" if device_type == "cuda" else "gloo"
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(
            target=_worker_main,
            args=(r, world, port, backend, device_type, collective_timeout_s, task, results, os.getpid(), pin_cpus, malloc_steady),
            daemon=True,
            name=f"bubblereduce-engine-rank{r}",
        )
        for r in range(world)
    ]
    payloads: dict[int, Any] = {}
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout_s
        while len(payloads) < world:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = [r for r in range(world) if r not in payloads]
                raise EngineError(f"timed out after {timeout_s:g} s waiting for ranks {missing}")
            try:
                status, rank, payload = results.get(timeout=min(0.2, remaining))
            except queue.Empty:
                dead = [r for r, p in enumerate(procs) if r not in payloads and not p.is_alive()]
                if not dead:
                    continue
                # a rank that exited after putting its result: the data is already in the pipe
                try:
                    status, rank, payload = results.get(timeout=1.0)
                except queue.Empty:
                    r = dead[0]
                    raise EngineError(
                        f"rank {r} exited with code {procs[r].exitcode} without reporting a result"
                    ) from None
            if status == "error":
                raise EngineError(_failure_message(procs, results, payloads, rank, payload))
            payloads[rank] = pickle.loads(payload)
        for p in procs:
            p.join(10.0)
        return [payloads[r] for r in range(world)]
    finally:
        _stop_all(procs)
        results.close()
        results.cancel_join_thread()
