"""Calibrate the analytic cost model on this CPU: analytic vs measured seconds per layer.

Measures a CPU device model (peak float32 FLOP/s of a 1024^3 matmul, memory
bandwidth of a 64 MiB copy, per-op overhead of a 1-element add), then profiles
the tiny GPT (``gpt_config("tiny")``, split into attention / MLP sub-blocks too)
and the default MLP with the real profiler and analytically with that device
model (efficiencies 1.0: the peaks are measured, achievable values). The machine
is shared, so other processes slow runs down, at times by several x: the device
model (median of its microbenchmarks) and every profile are measured ``passes``
times, interleaved, and per layer the median over passes is kept on both sides,
so both see the same load. Prints one markdown table per model: forward and
backward milliseconds per layer, measured and analytic, the relative error
``analytic / measured - 1``, and the "share" error: the error of each layer's
share of the model's F+B time (what decides a partition; one scale factor for the
whole machine cancels). The last row is the whole model. Measured profiles use
one thread. Run from the repository root:

    python bench/calibrate_analytic.py
    python bench/calibrate_analytic.py --repeats=11 --gpt_microbatch=16
"""

from __future__ import annotations

import os
import statistics
import sys
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bubblereduce.analytic import (  # noqa: E402
    calibration_rows,
    count_layers,
    measure_cpu_device,
    profile_from_counts,
)
from bubblereduce.config import format_config, resolve_config, run_main  # noqa: E402
from bubblereduce.gpt import build_gpt, gpt_config, gpt_input  # noqa: E402
from bubblereduce.models import DEFAULT_MLP_WIDTHS, build_mlp, mlp_input  # noqa: E402
from bubblereduce.profile import LayerProfile, ModelProfile, profile_sequential  # noqa: E402

DEFAULTS = {
    "threads": 1,  # torch threads for the device model and the measured profiles
    "warmup": 2,
    "repeats": 7,  # timed runs per layer (median)
    "gpt_preset": "tiny",
    "gpt_microbatch": 8,  # sequences per microbatch (64 tokens each for "tiny")
    "mlp_microbatch": 32,  # samples per microbatch (the main demo's m = 8 size)
    "passes": 3,  # interleaved passes of device model + profiles; medians over passes
    "seed": 0,
}


def _pct(x: float) -> str:
    return f"{x * 100:+.0f} %"


def _table(title: str, rows: list) -> str:
    tot = rows[-1]
    m_tot = tot.measured_f_s + tot.measured_b_s
    a_tot = tot.analytic_f_s + tot.analytic_b_s
    lines = [f"**{title}**", "",
             "| layer | F meas. ms | F model ms | F err | B meas. ms | B model ms | B err | F+B err "
             "| share err |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    shares = []
    for r in rows:
        share = ((r.analytic_f_s + r.analytic_b_s) / a_tot) / ((r.measured_f_s + r.measured_b_s) / m_tot) - 1
        if r.name != "total":
            shares.append(abs(share))
        name = f"**{r.name}**" if r.name == "total" else r.name
        lines.append(f"| {name} | {r.measured_f_s * 1e3:.3f} | {r.analytic_f_s * 1e3:.3f} | "
                     f"{_pct(r.error_f)} | {r.measured_b_s * 1e3:.3f} | {r.analytic_b_s * 1e3:.3f} | "
                     f"{_pct(r.error_b)} | {_pct(r.error_fb)} | {_pct(share) if r.name != 'total' else ''} |")
    per_layer = sorted(abs(r.error_fb) for r in rows[:-1])
    shares.sort()
    lines += ["", f"|F+B error| per layer: median {per_layer[len(per_layer) // 2] * 100:.0f} %, max "
                  f"{per_layer[-1] * 100:.0f} %; whole model {_pct(tot.error_fb)}. |share error|: median "
                  f"{shares[len(shares) // 2] * 100:.0f} %, max {shares[-1] * 100:.0f} %."]
    return "\n".join(lines)


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _median_profile(profiles: list[ModelProfile]) -> ModelProfile:
    """Per layer, the median over passes of forward and backward seconds."""
    layers = tuple(
        LayerProfile(g[0].name, _median([x.forward_s for x in g]), _median([x.backward_s for x in g]),
                     g[0].act_bytes, g[0].param_bytes)
        for g in zip(*(p.layers for p in profiles), strict=True))
    return ModelProfile(layers=layers, meta=profiles[0].meta)


def main() -> int:
    """Print the device model and the calibration tables; return 0."""
    cfg = resolve_config(DEFAULTS, sys.argv[1:])
    print(format_config(cfg))
    devs, measured = [], {}
    kw = {"warmup": cfg["warmup"], "repeats": cfg["repeats"], "threads": cfg["threads"],
          "seed": cfg["seed"]}
    cases = []
    for split in (False, True):
        gcfg = gpt_config(cfg["gpt_preset"], split_sublayers=split)
        b = cfg["gpt_microbatch"]
        cases.append((f"{gcfg.name}{' (split sublayers)' if split else ''}, microbatch {b} x "
                      f"{gcfg.seq_len} tokens", build_gpt(gcfg, seed=cfg["seed"]),
                      gpt_input(gcfg, b, seed=cfg["seed"]), gcfg, None))
    b = cfg["mlp_microbatch"]
    x = mlp_input(b, seed=cfg["seed"])
    cases.append((f"default MLP, microbatch {b}", build_mlp(DEFAULT_MLP_WIDTHS, seed=cfg["seed"]),
                  x, None, x))
    for _ in range(cfg["passes"]):
        devs.append(measure_cpu_device(cfg["threads"], seed=cfg["seed"], statistic="median"))
        for title, model, inp, _, _ in cases:
            measured.setdefault(title, []).append(
                profile_sequential(model, inp, model_name=title, **kw))
    dev = replace(devs[0], peak_flops={"float32": _median([d.peak("float32") for d in devs])},
                  mem_bandwidth_GBps=_median([d.mem_bandwidth_GBps for d in devs]),
                  op_overhead_s=_median([d.op_overhead_s for d in devs]),
                  source=devs[0].source + f"; median of {cfg['passes']} interleaved passes")
    print(f"\nCPU device model: peak {dev.peak('float32') / 1e9:.1f} GFLOP/s float32, "
          f"memory {dev.mem_bandwidth_GBps:.1f} GB/s, op overhead {dev.op_overhead_s * 1e6:.2f} µs "
          f"({dev.source}; per pass: "
          + ", ".join(f"{d.peak('float32') / 1e9:.0f}" for d in devs) + " GFLOP/s)\n")
    for title, model, inp, gcfg, sample in cases:
        counts = count_layers(gcfg if gcfg is not None else model, inp.shape[0], sample_input=sample)
        analytic = profile_from_counts(counts, dev, "float32", inp.shape[0], model_name=title,
                                       efficiency=1.0, memory_efficiency=1.0)
        print(_table(title, calibration_rows(_median_profile(measured[title]), analytic)))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
