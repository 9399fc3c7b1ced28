"""GPU forward throughput of the shipped networks and the D-UNet placements: fp32/fp16/bf16, batch sizes, layouts.

Run on a machine with a CUDA GPU (prints the device; `--device cpu --quick` only checks the script):

    python tests/bench/bench_model_gpu.py [--sizes 512 2048] [--batches 1 4 16] [--max-mpx 17] [--repeats 20]
        [--compile] [--cudnn-benchmark] [--json OUT.json]

For every network (the shipped Sentinel-2 and Landsat weights, rebuilt from their cards as inference
does; random-weight D-UNet placements of the same width: all stages as in the paper, shallow only,
deep only, and the plain U-Net) and every precision (fp32; fp16 and bf16 autocast, deformable
convolutions kept in fp32 as `DeformableBlock` does), tile size (512 px, and 2048 px: the core of
one forward on CUDA, `FORWARD_WINDOW_PX`) and batch size up to `--max-mpx` pixels per forward, and
for the shipped networks both layouts (NCHW, and channels-last as `TorchPredictor` runs them since 596864b):
the median of `repeats` forwards timed with CUDA events
after warm-up, as Mpx/s of output pixels (batch x size^2). Inputs are drawn fresh (normal noise) and
rotated between two buffers so no run times the L2 cache. Each half precision's probabilities are
compared with fp32's on the same input: the largest difference (x255, the store's quantum) and the
share of pixels whose `>= 0.5` mask flips. `--compile` adds `torch.compile` of the shipped Sentinel-2
network at its best eager setting. cuDNN's autotuner stays off unless `--cudnn-benchmark`, as in a run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipeline.model.dunet import ARCHITECTURES  # noqa: E402

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def shipped_networks() -> dict[str, tuple[torch.nn.Module, int]]:
    from pipeline.model.weights import load_model

    nets = {}
    for sensor in ("sentinel-2", "landsat"):
        # pipeline.config's SHIPPED_WEIGHTS, named here so the script needs only torch, pydantic and safetensors
        model, card = load_model(ROOT / "pipeline" / "weights" / f"{sensor}.safetensors")
        nets[f"shipped {sensor} ({card.architecture} base {card.base})"] = (model, card.in_channels)
    return nets


def placement_networks(channels: int, base: int) -> dict[str, tuple[torch.nn.Module, int]]:
    return {f"{name} base {base} (random)": (cls(channels, base), channels) for name, cls in ARCHITECTURES.items()}


def forward(model: torch.nn.Module, x: torch.Tensor, precision: str) -> torch.Tensor:
    dtype = PRECISIONS[precision]
    with torch.inference_mode(), torch.autocast(x.device.type, dtype or torch.float32, enabled=dtype is not None):
        return model(x).float()


def time_forward(model, channels, size, batch, precision, layout, repeats, device) -> float:
    """Median Mpx/s over `repeats` forwards (CUDA events on GPU, perf_counter on CPU)."""
    fmt = torch.channels_last if layout == "channels-last" else torch.contiguous_format
    model.to(device, memory_format=fmt)
    inputs = [torch.randn(batch, channels, size, size, device=device).contiguous(memory_format=fmt) for _ in range(2)]
    for i in range(3):
        forward(model, inputs[i % 2], precision)
    times = []
    for i in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            forward(model, inputs[i % 2], precision)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            started = time.perf_counter()
            forward(model, inputs[i % 2], precision)
            times.append(time.perf_counter() - started)
    return batch * size * size / statistics.median(times) / 1e6


def agreement(model, channels, size, device) -> dict:
    """Half precisions against fp32 on one fresh input: max |dp| x255 and the share of flipped 0.5 masks."""
    model.to(device, memory_format=torch.contiguous_format)
    x = torch.randn(2, channels, size, size, device=device)
    ref = torch.sigmoid(forward(model, x, "fp32"))
    out = {}
    for precision in ("fp16", "bf16"):
        p = torch.sigmoid(forward(model, x, precision))
        if not torch.isfinite(p).all():
            out[precision] = {"error": "non-finite probabilities"}
            continue
        out[precision] = {
            "max_abs_diff_x255": float((p - ref).abs().max()) * 255,
            "mask_flips_share": float(((p >= 0.5) != (ref >= 0.5)).float().mean()),
        }
    return out


def best_row(rows: list[dict], network: str) -> dict | None:
    """The fastest measured row of `network` (failed ones, NaN, left out); None when none ran."""
    measured = [r for r in rows if r["network"] == network and math.isfinite(r["mpx_s"])]
    return max(measured, key=lambda r: r["mpx_s"]) if measured else None


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--max-mpx", type=float, default=17.0, help="skip batch x size^2 above this many Mpx")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN time its algorithms (a run does not)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the shipped Sentinel-2 network")
    ap.add_argument("--quick", action="store_true", help="one size, batch 1, 2 repeats, fp32 only on CPU: checks the script")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible to torch: run this on a GPU machine (or --device cpu --quick to check the script)")
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    precisions = list(PRECISIONS) if device.type == "cuda" else ["fp32"]
    if args.quick:
        args.sizes, args.batches, args.repeats = [args.sizes[0]], [1], 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result = {"device": name, "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
              "cudnn_benchmark": args.cudnn_benchmark, "rows": [], "agreement": {}}
    print(f"{name}, torch {torch.__version__}, cudnn {result['cudnn']}, median of {args.repeats}", flush=True)

    nets = shipped_networks()
    first_model, first_channels = next(iter(nets.values()))
    nets.update(placement_networks(first_channels, first_model.base))
    for label, (model, channels) in nets.items():
        model = model.for_inference()  # as TorchPredictor runs it: batch norms folded into the convolutions
        layouts = ("NCHW", "channels-last") if label.startswith("shipped") else ("NCHW",)
        shapes = [(size, batch) for size in args.sizes for batch in args.batches if batch * size * size <= args.max_mpx * 1e6]
        for (size, batch), precision, layout in itertools.product(shapes, precisions, layouts):
            row = {"network": label, "size": size, "batch": batch, "precision": precision, "layout": layout}
            try:
                row["mpx_s"] = time_forward(model, channels, size, batch, precision, layout, args.repeats, device)
            except (torch.OutOfMemoryError, RuntimeError, NotImplementedError) as err:  # noted, and the grid goes on
                row.update(mpx_s=float("nan"), error=f"{type(err).__name__}: {err}"[:200])
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            result["rows"].append(row)
            print(f"{label:>44}  {size:>5}  b{batch:<3} {precision}  {layout:>13}  {row['mpx_s']:9.2f} Mpx/s  {row.get('error', '')}",
                  flush=True)
        if device.type == "cuda":
            result["agreement"][label] = agreement(model, channels, args.sizes[0], device)
            print(f"{label:>44}  vs fp32: {result['agreement'][label]}", flush=True)
            model.to("cpu")
            torch.cuda.empty_cache()
        if args.json:  # after every network: a run cut short keeps what it measured
            args.json.write_text(json.dumps(result, indent=1))

    if args.compile:
        label, (model, channels) = next(iter(nets.items()))
        best = best_row(result["rows"], label)
        if best is not None:
            started = time.perf_counter()
            try:
                compiled = torch.compile(model)
                rate = time_forward(compiled, channels, best["size"], best["batch"], best["precision"], best["layout"], args.repeats, device)
                note = f"compile + warm-up {time.perf_counter() - started:.0f} s"
            except Exception as err:  # noqa: BLE001 - a benchmark reports a failed compile and goes on
                rate, note = float("nan"), f"torch.compile failed: {type(err).__name__}: {err}"[:300]
            row = {**best, "network": f"{label} torch.compile", "mpx_s": rate, "note": note}
            result["rows"].append(row)
            print(f"{row['network']:>44}  {best['size']:>5}  b{best['batch']:<3} {best['precision']}  {best['layout']:>13}  "
                  f"{rate:9.2f} Mpx/s  ({note})", flush=True)

    print("\nbest per network:")
    for label in dict.fromkeys(r["network"] for r in result["rows"]):
        if (b := best_row(result["rows"], label)) is not None:
            print(f"  {label:>44}: {b['mpx_s']:9.2f} Mpx/s ({b['precision']}, {b['layout']}, batch {b['batch']}, {b['size']} px)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
