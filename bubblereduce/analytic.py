"""Analytic profiles: per-layer FLOPs and bytes from shapes, turned into seconds by a device model.

Counting. Every profiled layer runs once on the ``meta`` device (shapes only: a
70B-parameter model needs no memory) under a dispatch mode that records every
aten op of its forward, its full backward, its input-gradient part (I) and its
weight-gradient part (W). Per op it records FLOPs with the formulas of
``torch.utils.flop_counter`` (so the totals equal ``FlopCounterMode``'s: a Linear
forward is ``2 * rows * in * out``, its I and W the same again each) and bytes
moved as the bytes of every tensor argument read plus every output written
(views move nothing). Stored activations are the distinct tensor storages saved
for backward, without parameters (``saved_tensors_hooks``).

Timing (a per-op roofline, summed): an op lasts
``overhead_s + max(flops / (peak_FLOPs(dtype) * efficiency), bytes / (bandwidth * memory_efficiency))``
and a layer phase is the sum of its ops (ops run one after another on a device).
Matmul-like ops (those with counted FLOPs) are usually compute-bound; the rest
(LayerNorm, GELU, softmax, adds, embedding lookups) have no counted FLOPs and
are pure memory time. ``efficiency`` and ``memory_efficiency`` are assumptions
the user can change: the defaults (:data:`DEFAULT_EFFICIENCY`,
:data:`DEFAULT_MEMORY_EFFICIENCY`) are typical large-GEMM and streaming shares of
spec-sheet peaks, not measurements.

Calibration: :func:`measure_cpu_device` measures this machine's peak (a large
float32 matmul), memory bandwidth (a large copy) and per-op overhead (a tiny
add); :func:`calibration_rows` compares the analytic profile under that device
model with a measured profile of the same layers.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry, sdpa_backward_flop_count, sdpa_flop_count

from .gpt import GPTConfig, build_gpt, gpt_input
from .profile import LayerProfile, ModelProfile, ProfileMeta

__all__ = [
    "DEFAULT_EFFICIENCY",
    "DEFAULT_MEMORY_EFFICIENCY",
    "DevicePreset",
    "LinkPreset",
    "DEVICE_PRESETS",
    "LINK_PRESETS",
    "device_preset",
    "link_preset",
    "OpCount",
    "PhaseCounts",
    "LayerCounts",
    "count_layers",
    "phase_seconds",
    "profile_from_counts",
    "analytic_profile",
    "measure_cpu_device",
    "CalibrationRow",
    "calibration_rows",
]

DEFAULT_EFFICIENCY = 0.6
"""Assumed share of the spec-sheet dense peak that matmuls reach (large-GEMM typical)."""
DEFAULT_MEMORY_EFFICIENCY = 0.8
"""Assumed share of the spec-sheet memory bandwidth that streaming ops reach."""


@dataclass(frozen=True)
class DevicePreset:
    """An accelerator's spec-sheet numbers.

    ``peak_flops``: dense peak FLOP/s per dtype name (``"float32"``, ``"bfloat16"``,
    ``"float16"``); ``mem_bandwidth_GBps``: memory bandwidth (GB/s, 1e9 bytes);
    ``memory_GB``: device memory (1e9 bytes); ``op_overhead_s``: fixed seconds per
    op (0 for GPUs: launches assumed hidden by asynchronous queues or CUDA graphs);
    ``source``: where the numbers come from.
    """

    name: str
    peak_flops: Mapping[str, float]
    mem_bandwidth_GBps: float
    memory_GB: float
    source: str
    op_overhead_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.peak_flops:
            raise ValueError(f"{self.name}: peak_flops needs at least one dtype")
        for k, v in self.peak_flops.items():
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"{self.name}: peak_flops[{k!r}] must be a number > 0, got {v!r}")
        for f in ("mem_bandwidth_GBps", "memory_GB"):
            v = getattr(self, f)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"{self.name}: {f} must be a number > 0, got {v!r}")
        if not (math.isfinite(self.op_overhead_s) and self.op_overhead_s >= 0):
            raise ValueError(f"{self.name}: op_overhead_s must be >= 0, got {self.op_overhead_s!r}")
        object.__setattr__(self, "peak_flops", dict(self.peak_flops))

    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s for ``dtype``; ``ValueError`` listing the dtypes this device has."""
        if dtype not in self.peak_flops:
            raise ValueError(f"device {self.name!r} has no peak for dtype {dtype!r}; "
                             f"available: {', '.join(self.peak_flops)}")
        return float(self.peak_flops[dtype])


@dataclass(frozen=True)
class LinkPreset:
    """A link between pipeline stages: ``bandwidth_GBps`` per direction (GB/s), ``latency_s``
    per transfer (seconds, an assumption: spec sheets give bandwidth, not end-to-end latency)."""

    name: str
    bandwidth_GBps: float
    latency_s: float
    source: str


_TERA = 1e12
# Spec-sheet dense (no sparsity) peaks. "float32" is the plain FP32 (non-tensor-core) peak;
# with TF32 matmuls enabled a float32 model runs closer to the TF32 tensor-core number.
DEVICE_PRESETS: dict[str, DevicePreset] = {
    "a100-80gb": DevicePreset(
        "a100-80gb", {"float32": 19.5 * _TERA, "bfloat16": 312 * _TERA, "float16": 312 * _TERA}, 2039, 80,
        "NVIDIA A100 Tensor Core GPU datasheet (SXM 80GB): FP32 19.5 TFLOPS, BF16/FP16 312 TFLOPS "
        "dense, HBM2e 2,039 GB/s"),
    "h100-sxm": DevicePreset(
        "h100-sxm", {"float32": 67 * _TERA, "bfloat16": 989 * _TERA, "float16": 989 * _TERA}, 3350, 80,
        "NVIDIA H100 Tensor Core GPU datasheet (SXM5): FP32 67 TFLOPS, BF16/FP16 989 TFLOPS dense "
        "(1,979 with sparsity), HBM3 3.35 TB/s"),
    "h200": DevicePreset(
        "h200", {"float32": 67 * _TERA, "bfloat16": 989 * _TERA, "float16": 989 * _TERA}, 4800, 141,
        "NVIDIA H200 Tensor Core GPU datasheet (SXM): FP32 67 TFLOPS, BF16/FP16 989 TFLOPS dense, "
        "141 GB HBM3e at 4.8 TB/s"),
    "mi300x": DevicePreset(
        "mi300x", {"float32": 163.4 * _TERA, "bfloat16": 1307.4 * _TERA, "float16": 1307.4 * _TERA}, 5300, 192,
        "AMD Instinct MI300X data sheet: FP32 163.4 TFLOPS, BF16/FP16 1,307.4 TFLOPS dense, "
        "192 GB HBM3 at 5.3 TB/s"),
    "l4": DevicePreset(
        "l4", {"float32": 30.3 * _TERA, "bfloat16": 121 * _TERA, "float16": 121 * _TERA}, 300, 24,
        "NVIDIA L4 Tensor Core GPU datasheet: FP32 30.3 TFLOPS, BF16/FP16 121 TFLOPS dense "
        "(242 with sparsity), 24 GB GDDR6 at 300 GB/s"),
}

# Per-direction bandwidths; latencies are assumed typical end-to-end values.
LINK_PRESETS: dict[str, LinkPreset] = {
    "nvlink4": LinkPreset("nvlink4", 450.0, 3e-6,
                          "NVIDIA H100 datasheet: NVLink 900 GB/s total per GPU (450 GB/s each way)"),
    "nvlink3": LinkPreset("nvlink3", 300.0, 3e-6,
                          "NVIDIA A100 datasheet: NVLink 600 GB/s total per GPU (300 GB/s each way)"),
    "pcie5-x16": LinkPreset("pcie5-x16", 64.0, 5e-6,
                            "PCI-SIG PCIe 5.0: 32 GT/s x 16 lanes = 64 GB/s each way (128b/130b)"),
    "ib-ndr": LinkPreset("ib-ndr", 50.0, 5e-6,
                         "NVIDIA ConnectX-7 / Quantum-2 InfiniBand NDR: 400 Gb/s = 50 GB/s each way"),
    "100gbe": LinkPreset("100gbe", 12.5, 20e-6,
                         "IEEE 802.3 100 Gigabit Ethernet: 100 Gb/s = 12.5 GB/s each way"),
}


def device_preset(device: str | DevicePreset) -> DevicePreset:
    """``device`` itself, or the preset of that name; ``ValueError`` listing the known names."""
    if isinstance(device, DevicePreset):
        return device
    if device not in DEVICE_PRESETS:
        raise ValueError(f"unknown device preset {device!r}; known: {', '.join(DEVICE_PRESETS)}")
    return DEVICE_PRESETS[device]


def link_preset(link: str | LinkPreset) -> LinkPreset:
    """``link`` itself, or the preset of that name; ``ValueError`` listing the known names."""
    if isinstance(link, LinkPreset):
        return link
    if link not in LINK_PRESETS:
        raise ValueError(f"unknown link preset {link!r}; known: {', '.join(LINK_PRESETS)}")
    return LINK_PRESETS[link]


# ----------------------------------------------------------------------------- counting


@dataclass(frozen=True)
class OpCount:
    """One aten op: its name, counted FLOPs and bytes read + written."""

    op: str
    flops: int
    bytes: int


@dataclass(frozen=True)
class PhaseCounts:
    """The ops of one phase of one layer (forward, backward, I or W), in execution order."""

    ops: tuple[OpCount, ...] = ()

    @property
    def flops(self) -> int:
        """Total counted FLOPs."""
        return sum(o.flops for o in self.ops)

    @property
    def bytes(self) -> int:
        """Total bytes read + written."""
        return sum(o.bytes for o in self.ops)


@dataclass(frozen=True)
class LayerCounts:
    """Shape-derived counts of one layer for one microbatch.

    ``act_bytes``: output bytes (what crosses a cut after the layer);
    ``saved_bytes``: activation bytes stored for its backward (distinct storages,
    parameters excluded); ``param_bytes`` / ``param_count``: its parameters.
    """

    name: str
    forward: PhaseCounts
    backward: PhaseCounts
    input_grad: PhaseCounts
    weight_grad: PhaseCounts
    act_bytes: int
    saved_bytes: int
    param_bytes: int
    param_count: int


# ops whose output aliases an input (no data moved) beyond those flagged `is_view`
_ALIAS_OPS = frozenset({"_unsafe_view", "_reshape_alias", "lift_fresh", "alias"})
_FLASH_CPU = "_scaled_dot_product_flash_attention_for_cpu"


def _tensor_bytes(t: torch.Tensor) -> int:
    return int(t.numel()) * t.element_size()


def _op_flops(func: Any, args: tuple, kwargs: dict, out: Any) -> int:
    packet = func._overloadpacket
    name = packet.__name__
    if name == _FLASH_CPU:
        q, k, v = args[:3]
        return int(sdpa_flop_count(q.shape, k.shape, v.shape))
    if name == _FLASH_CPU + "_backward":
        grad_out, q, k, v = args[:4]
        return int(sdpa_backward_flop_count(grad_out.shape, q.shape, k.shape, v.shape))
    if packet in flop_registry:
        return int(flop_registry[packet](*args, **kwargs, out_val=out))
    return 0


class _OpRecorder(TorchDispatchMode):
    """Records every aten op: FLOPs (flop_counter formulas) and bytes read + written."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[OpCount] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func._overloadpacket.__name__
        if func.is_view or name in _ALIAS_OPS:
            return out
        nbytes = 0
        seen: set[int] = set()
        for t in torch.utils._pytree.tree_leaves((args, kwargs, out)):
            if isinstance(t, torch.Tensor) and id(t) not in seen:
                seen.add(id(t))
                nbytes += _tensor_bytes(t)
        self.ops.append(OpCount(name, _op_flops(func, args, kwargs, out), nbytes))
        return out


def _storage_key(t: torch.Tensor) -> int:
    return int(t.untyped_storage()._cdata)


def _count_one(name: str, layer: nn.Module, x_in: torch.Tensor) -> tuple[LayerCounts, torch.Tensor]:
    params = [p for p in layer.parameters() if p.requires_grad]
    param_keys = {_storage_key(p) for p in params}
    x = x_in.detach()
    if x.is_floating_point():
        x.requires_grad_(True)
    saved: dict[int, torch.Tensor] = {}  # holding them keeps storage addresses unique

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in param_keys:
            saved.setdefault(key, t)
        return t

    with _OpRecorder() as fwd, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = layer(x)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"layer {name!r} returned {type(y).__name__}, expected a Tensor")
    saved_bytes = sum(int(t.untyped_storage().nbytes()) for t in saved.values())
    grad_out = torch.empty_like(y)
    wrt_x = [x] if x.requires_grad else []
    phases: dict[str, PhaseCounts] = {}
    for phase, wrt, retain in (("backward", wrt_x + params, True), ("input_grad", wrt_x, False)):
        if not wrt or not y.requires_grad:
            phases[phase] = PhaseCounts()
            continue
        with _OpRecorder() as rec:
            torch.autograd.grad(y, wrt, grad_out, retain_graph=retain)
        phases[phase] = PhaseCounts(tuple(rec.ops))
    # W = the full backward's ops that the input-gradient backward does not run (a multiset
    # difference by op and FLOPs: an op such as LayerNorm's backward that serves both is I's);
    # a separate grad-for-parameters-only call would
    # repeat the in-layer input gradients that earlier parameters' gradients flow through
    rest = Counter((o.op, o.flops) for o in phases["input_grad"].ops)
    w_ops = []
    for op in phases["backward"].ops:
        if rest[(op.op, op.flops)] > 0:
            rest[(op.op, op.flops)] -= 1
        else:
            w_ops.append(op)
    phases["weight_grad"] = PhaseCounts(tuple(w_ops))
    counts = LayerCounts(
        name=name,
        forward=PhaseCounts(tuple(fwd.ops)),
        backward=phases["backward"],
        input_grad=phases["input_grad"],
        weight_grad=phases["weight_grad"],
        act_bytes=_tensor_bytes(y),
        saved_bytes=saved_bytes,
        param_bytes=sum(_tensor_bytes(p) for p in layer.parameters()),
        param_count=sum(int(p.numel()) for p in layer.parameters()),
    )
    return counts, y.detach()


def _meta_model_and_input(model_or_cfg: nn.Sequential | GPTConfig, microbatch_size: int,
                          dtype: str | None, sample_input: torch.Tensor | None,
                          ) -> tuple[nn.Sequential, torch.Tensor, str, str]:
    """(meta-device model, meta input of ``microbatch_size`` samples, dtype name, model name)."""
    if isinstance(microbatch_size, bool) or not isinstance(microbatch_size, int) or microbatch_size < 1:
        raise ValueError(f"microbatch_size must be an integer >= 1, got {microbatch_size!r}")
    if isinstance(model_or_cfg, GPTConfig):
        cfg = model_or_cfg if dtype is None else replace(model_or_cfg, dtype=dtype)
        model = build_gpt(cfg, device="meta")
        return model, gpt_input(cfg, microbatch_size, device="meta"), cfg.dtype, cfg.name
    if not isinstance(model_or_cfg, nn.Sequential):
        raise TypeError(f"model_or_cfg must be a GPTConfig or nn.Sequential, "
                        f"got {type(model_or_cfg).__name__}")
    if not isinstance(sample_input, torch.Tensor) or sample_input.dim() < 1:
        raise ValueError("an nn.Sequential needs sample_input: a tensor whose dims after the "
                         "batch dimension give the input shape")
    model = copy.deepcopy(model_or_cfg).to("meta")
    if dtype is not None:
        from .gpt import GPT_DTYPES

        if dtype not in GPT_DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(GPT_DTYPES)}, got {dtype!r}")
        model = model.to(GPT_DTYPES[dtype])
    x_dtype = sample_input.dtype
    if x_dtype.is_floating_point and dtype is not None:
        x_dtype = GPT_DTYPES[dtype]
    x = torch.empty((microbatch_size, *sample_input.shape[1:]), dtype=x_dtype, device="meta")
    params = [p for p in model.parameters() if p.is_floating_point()]
    dt = str(params[0].dtype if params else x.dtype).removeprefix("torch.")
    return model, x, dt, type(model_or_cfg).__name__


def count_layers(model_or_cfg: nn.Sequential | GPTConfig, microbatch_size: int, *,
                 dtype: str | None = None,
                 sample_input: torch.Tensor | None = None) -> list[LayerCounts]:
    """Count FLOPs, bytes and stored activations of every child layer for one microbatch.

    ``model_or_cfg``: a :class:`~bubblereduce.gpt.GPTConfig` (built on the meta
    device, token-id input of ``microbatch_size`` sequences) or an
    ``nn.Sequential`` with ``sample_input`` (only its shape after the batch
    dimension and its dtype are used; the model is copied to meta, not moved).
    ``dtype`` overrides the parameter/activation dtype. Layers with identical
    structure and input shape are counted once (a 70B model's 80 blocks cost one).
    """
    model, x, _, _ = _meta_model_and_input(model_or_cfg, microbatch_size, dtype, sample_input)
    return _count_model(model, x)


def _count_model(model: nn.Sequential, x: torch.Tensor) -> list[LayerCounts]:
    names = [n for n, _ in model.named_children()]
    cache: dict[tuple, LayerCounts] = {}
    out: list[LayerCounts] = []
    for name, layer in zip(names, model, strict=True):
        key = (repr(layer), tuple(x.shape), x.dtype,
               tuple((tuple(p.shape), p.dtype) for p in layer.parameters()))
        hit = cache.get(key)
        if hit is None:
            counts, y = _count_one(name, layer, x)
            cache[key] = counts
        else:
            counts = LayerCounts(**{**hit.__dict__, "name": name})
            with torch.no_grad():
                y = layer(x)
        out.append(counts)
        x = y
    return out


def phase_seconds(phase: PhaseCounts, device: str | DevicePreset, dtype: str, *,
                  efficiency: float = DEFAULT_EFFICIENCY,
                  memory_efficiency: float = DEFAULT_MEMORY_EFFICIENCY) -> float:
    """Seconds of one phase on ``device``: per op ``overhead + max(compute, memory)``, summed.

    compute = ``flops / (peak(dtype) * efficiency)``, memory =
    ``bytes / (mem_bandwidth_GBps * 1e9 * memory_efficiency)``; both
    efficiencies are fractions in (0, 1] (assumptions, see module doc).
    """
    dev = device_preset(device)
    for label, v in (("efficiency", efficiency), ("memory_efficiency", memory_efficiency)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 1:
            raise ValueError(f"{label} must be a number in (0, 1], got {v!r}")
    flops_rate = dev.peak(dtype) * efficiency
    byte_rate = dev.mem_bandwidth_GBps * 1e9 * memory_efficiency
    return float(sum(dev.op_overhead_s + max(o.flops / flops_rate, o.bytes / byte_rate)
                     for o in phase.ops))


def profile_from_counts(counts: Sequence[LayerCounts], device: str | DevicePreset, dtype: str,
                        microbatch_size: int, *, model_name: str = "model",
                        efficiency: float = DEFAULT_EFFICIENCY,
                        memory_efficiency: float = DEFAULT_MEMORY_EFFICIENCY) -> ModelProfile:
    """Turn layer counts into a :class:`~bubblereduce.profile.ModelProfile` (seconds per microbatch).

    ``backward_s`` is the full backward's ops, ``input_grad_s`` the ops of a
    backward for the layer input only, ``weight_grad_s = max(B - I, 0)`` (so
    ``B = I + W``; the W ops are listed in ``LayerCounts.weight_grad``).
    ``meta.device`` reads ``"<preset> (analytic)"``; threads 1, warmup 0, repeats 1.
    """
    dev = device_preset(device)

    def sec(p: PhaseCounts) -> float:
        return phase_seconds(p, dev, dtype, efficiency=efficiency, memory_efficiency=memory_efficiency)

    layers = []
    for c in counts:
        b_s, i_s = sec(c.backward), sec(c.input_grad)
        layers.append(LayerProfile(c.name, sec(c.forward), b_s, c.act_bytes, c.param_bytes,
                                   i_s, max(b_s - i_s, 0.0)))
    meta = ProfileMeta(model=model_name, device=f"{dev.name} (analytic)", dtype=dtype,
                       microbatch_size=microbatch_size, threads=1,
                       torch_version=torch.__version__, warmup=0, repeats=1)
    return ModelProfile(layers=tuple(layers), meta=meta)


def analytic_profile(model_or_cfg: nn.Sequential | GPTConfig, microbatch_size: int,
                     device: str | DevicePreset, dtype: str | None = None,
                     efficiency: float = DEFAULT_EFFICIENCY, *,
                     memory_efficiency: float = DEFAULT_MEMORY_EFFICIENCY,
                     sample_input: torch.Tensor | None = None) -> ModelProfile:
    """Analytic :class:`~bubblereduce.profile.ModelProfile` of a model on a device it may not have.

    Counts every layer on the meta device (:func:`count_layers`) for one
    microbatch of ``microbatch_size`` samples and times the counts on
    ``device`` (a key of :data:`DEVICE_PRESETS` or a
    :class:`DevicePreset`) at ``dtype`` (default: the config's / model's) with the
    matmul ``efficiency`` and ``memory_efficiency`` assumptions. The result has
    the same type as a measured profile, so the partitioners and the demo take it
    unchanged. Seconds per microbatch; bytes from shapes.
    """
    model, x, dt, name = _meta_model_and_input(model_or_cfg, microbatch_size, dtype, sample_input)
    counts = _count_model(model, x)
    return profile_from_counts(counts, device, dt, microbatch_size, model_name=name,
                               efficiency=efficiency, memory_efficiency=memory_efficiency)


# ----------------------------------------------------------------------------- calibration


def _time_s(fn: Callable[[], Any], repeats: int, statistic: str) -> float:
    """``min`` or ``median`` seconds of ``repeats`` timed runs after one warm-up run."""
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(min(times[1:]) if statistic == "min" else statistics.median(times[1:]))


def measure_cpu_device(threads: int = 1, *, matmul_size: int = 1024, copy_bytes: int = 64 << 20,
                       repeats: int = 7, seed: int = 0, statistic: str = "min") -> DevicePreset:
    """A :class:`DevicePreset` for this CPU from three microbenchmarks.

    Peak float32 FLOP/s: ``2 * n^3 / t`` of an ``n x n`` matmul (``n = matmul_size``);
    memory bandwidth: ``2 * copy_bytes / t`` of copying a ``copy_bytes`` float32
    tensor (read + write), in GB/s; per-op overhead: seconds of a 1-element add.
    Each is the ``statistic`` (``"min"``: the peak the machine reaches;
    ``"median"``: what it typically gives, the profiler's statistic, fairer for
    comparing with measured profiles on a shared machine) of ``repeats`` runs.
    Runs with ``threads`` torch threads and restores the previous setting. Use
    it with ``efficiency=1.0`` and ``memory_efficiency=1.0``: the peaks are
    already achieved values.
    """
    if statistic not in ("min", "median"):
        raise ValueError(f"statistic must be 'min' or 'median', got {statistic!r}")
    for label, v, lo in (("threads", threads, 1), ("matmul_size", matmul_size, 16),
                         ("copy_bytes", copy_bytes, 1 << 20), ("repeats", repeats, 1),
                         ("seed", seed, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{label} must be an integer >= {lo}, got {v!r}")
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        gen = torch.Generator().manual_seed(seed)
        a = torch.randn(matmul_size, matmul_size, generator=gen)
        b = torch.randn(matmul_size, matmul_size, generator=gen)
        mm_s = _time_s(lambda: torch.mm(a, b), repeats, statistic)
        src = torch.randn(copy_bytes // 4, generator=gen)
        dst = torch.empty_like(src)
        copy_s = _time_s(lambda: dst.copy_(src), repeats, statistic)
        one = torch.ones(1)
        calls = 2000
        add_s = _time_s(lambda: [torch.add(one, one) for _ in range(calls)], repeats, statistic) / calls
    finally:
        torch.set_num_threads(prev)
    return DevicePreset(
        name=f"cpu-{threads}t (measured)",
        peak_flops={"float32": 2.0 * matmul_size**3 / mm_s},
        mem_bandwidth_GBps=2.0 * src.numel() * 4 / copy_s / 1e9,
        memory_GB=1.0,
        source=f"measured here: {matmul_size}^3 matmul, {copy_bytes >> 20} MiB copy, 1-element add; "
               f"{threads} thread(s), {statistic} of {repeats}",
        op_overhead_s=add_s,
    )


@dataclass(frozen=True)
class CalibrationRow:
    """Measured vs analytic seconds of one layer (or ``"total"``); errors are ``analytic / measured - 1``."""

    name: str
    measured_f_s: float
    measured_b_s: float
    analytic_f_s: float
    analytic_b_s: float
    error_f: float = field(init=False)
    error_b: float = field(init=False)
    error_fb: float = field(init=False)

    def __post_init__(self) -> None:
        def err(a: float, m: float) -> float:
            return a / m - 1.0 if m > 0 else math.nan

        object.__setattr__(self, "error_f", err(self.analytic_f_s, self.measured_f_s))
        object.__setattr__(self, "error_b", err(self.analytic_b_s, self.measured_b_s))
        object.__setattr__(self, "error_fb", err(self.analytic_f_s + self.analytic_b_s,
                                                 self.measured_f_s + self.measured_b_s))


def calibration_rows(measured: ModelProfile, analytic: ModelProfile) -> list[CalibrationRow]:
    """Per-layer rows plus a final ``"total"`` row comparing two profiles of the same layers.

    Both must have the same layer names and microbatch size; ``ValueError`` otherwise.
    """
    if measured.names != analytic.names:
        raise ValueError(f"profiles differ in layers: {list(measured.names)} vs {list(analytic.names)}")
    if measured.meta.microbatch_size != analytic.meta.microbatch_size:
        raise ValueError(f"microbatch sizes differ: {measured.meta.microbatch_size} vs "
                         f"{analytic.meta.microbatch_size}")
    rows = [CalibrationRow(m.name, m.forward_s, m.backward_s, a.forward_s, a.backward_s)
            for m, a in zip(measured.layers, analytic.layers, strict=True)]
    rows.append(CalibrationRow("total", float(measured.forward_s.sum()), float(measured.backward_s.sum()),
                               float(analytic.forward_s.sum()), float(analytic.backward_s.sum())))
    return rows
