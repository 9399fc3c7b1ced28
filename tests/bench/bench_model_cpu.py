"""CPU forward throughput of the shipped network (channels-last, as inference runs it, vs NCHW; and in bf16
where the CPU has bf16 instructions, as `inference.half: true` runs it), and of D-UNet vs U-Net widths (target >= 0.5 Mpx/s on 2 cores).

Run: .venv/bin/python tests/bench/bench_model_cpu.py [--weights W.safetensors] [--size 512] [--repeats 3]
     [--threads 2] [--widths 8 16 32] [--json OUT.json]

1. The weights' network (default: the shipped Sentinel-2 D-UNet, pipeline/weights/), rebuilt from
   its card and loaded in fp32 as inference does, against a plain U-Net of the same width and
   input channels (random weights: the forward's cost does not depend on their values).
2. Random-weight D-UNet vs U-Net at each of --widths (default 8 16 32), to choose the shipped width.
3. Every deformable placement (pipeline.model.dunet.ARCHITECTURES: all stages as in the paper,
   deep only, shallow only, none) at the weights' width, as a ratio to the all-stage D-UNet
   measured in the same run.

Times inference of one tile of `size`^2 pixels after a warm-up call, best of `repeats`, every network
as `TorchPredictor` runs it on a CPU (batch norms folded, channels-last; the shipped network also as
trained, NCHW with its norms apart); Mpx/s counts the tile's pixels (input = output pixels for a bare forward).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipeline.model.dunet import ARCHITECTURES, DUNet, SegmentationUNet, UNet  # noqa: E402


def default_weights() -> Path:
    from pipeline.config import SHIPPED_WEIGHTS

    return SHIPPED_WEIGHTS / "sentinel-2.safetensors"


def throughput_mpx_s(model: SegmentationUNet, size: int, repeats: int, channels: int = 6, as_inference: bool = True,
                     autocast: torch.dtype | None = None) -> float:
    """Mpx/s of `model`'s forward: as inference runs it on a CPU (`TorchPredictor`: batch norms folded,
    `SegmentationUNet.for_inference`, channels-last) or, with `as_inference=False`, as trained (NCHW, norms apart)."""
    layout = torch.channels_last if as_inference else torch.contiguous_format
    model = model.for_inference() if as_inference else model.eval()
    model.to(memory_format=layout)
    tile = torch.randn(1, channels, size, size).contiguous(memory_format=layout)
    with torch.inference_mode(), torch.autocast("cpu", autocast, enabled=autocast is not None):
        model(tile)
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            model(tile)
            best = min(best, time.perf_counter() - started)
    return size * size / best / 1e6


def measure_weights(weights: Path, size: int, repeats: int) -> dict:
    """Mpx/s of the network in `weights` and of a plain U-Net with the same width and inputs."""
    from pipeline.model.predictor import half_dtype
    from pipeline.model.weights import load_model

    model, card = load_model(weights)
    nchw = throughput_mpx_s(model, size, repeats, card.in_channels, as_inference=False)
    ours = throughput_mpx_s(model, size, repeats, card.in_channels)  # as TorchPredictor runs it on CPU
    half = half_dtype("cpu")  # bf16 where this CPU has bf16 instructions: what `inference.half: true` runs
    half_rate = throughput_mpx_s(model, size, repeats, card.in_channels, autocast=half) if half else None
    baseline = throughput_mpx_s(UNet(card.in_channels, card.base), size, repeats, card.in_channels)
    return {
        "weights": str(weights),
        "architecture": card.architecture,
        "base": card.base,
        "in_channels": card.in_channels,
        "params": sum(p.numel() for p in model.parameters()),
        "mpx_s": ours,
        "nchw_mpx_s": nchw,
        "half_mpx_s": half_rate,
        "unet_same_width_mpx_s": baseline,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=default_weights(), help="default: the shipped Sentinel-2 D-UNet")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--widths", type=int, nargs="*", default=[8, 16, 32],
                        help="also compare random D-UNet/U-Net at these widths (`--widths` alone: none)")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.size}x{args.size} tile, best of {args.repeats}")
    result: dict = {"threads": torch.get_num_threads(), "size": args.size, "repeats": args.repeats, "torch": torch.__version__}
    if not args.weights.is_file():
        raise SystemExit(f"no weights at {args.weights}: pass --weights (a .safetensors file with its .json card beside it)")
    w = measure_weights(args.weights, args.size, args.repeats)
    result["weights"] = w
    print(f"{w['architecture']} base {w['base']} ({args.weights.name}, {w['in_channels']} channels, {w['params']:,} params): "
          f"{w['mpx_s']:.3f} Mpx/s as inference runs it, norms folded, channels-last (x{w['mpx_s'] / w['nchw_mpx_s']:.2f} "
          f"the trained NCHW network's {w['nchw_mpx_s']:.3f}); plain U-Net same width {w['unet_same_width_mpx_s']:.3f} Mpx/s "
          "(target >= 1.0 Mpx/s)")
    print(f"  bf16 autocast, channels-last (inference.half: true): {w['half_mpx_s']:.3f} Mpx/s (x{w['half_mpx_s'] / w['mpx_s']:.2f} fp32)"
          if w["half_mpx_s"] else "  bf16: this CPU has no bf16 instructions (inference.half: true runs fp32 here)")
    placements = {name: throughput_mpx_s(cls(w["in_channels"], w["base"]), args.size, args.repeats, w["in_channels"])
                  for name, cls in ARCHITECTURES.items()}
    result["placements"] = placements
    print(f"placements at base {w['base']} (x the all-stage D-UNet):")
    for name, rate in placements.items():
        print(f"  {name:>13}  {rate:7.3f} Mpx/s  x{rate / placements['dunet']:.1f}")
    if args.widths:
        print(f"{'base':>4}  {'DUNet Mpx/s':>11}  {'UNet Mpx/s':>10}  {'DUNet params':>12}")
        result["widths"] = []
        for base in args.widths:
            dunet, unet = DUNet(6, base), UNet(6, base)
            params = sum(p.numel() for p in dunet.parameters())
            row = [throughput_mpx_s(m, args.size, args.repeats) for m in (dunet, unet)]
            result["widths"].append({"base": base, "dunet_mpx_s": row[0], "unet_mpx_s": row[1], "dunet_params": params})
            print(f"{base:>4}  {row[0]:>11.3f}  {row[1]:>10.3f}  {params:>12,}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
