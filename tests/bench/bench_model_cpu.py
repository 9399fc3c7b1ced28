"""CPU forward throughput of D-UNet vs U-Net, to choose the shipped width (target >= 0.5 Mpx/s on 2 cores).

Run: .venv/bin/python tests/bench/bench_model_cpu.py [--size 512] [--repeats 3] [--threads 2]
Times eval-mode inference of one 6-channel tile after a warm-up call, best of `repeats`.
"""

from __future__ import annotations

import argparse
import time

import torch

from pipeline.model.dunet import DUNet, UNet


def throughput_mpx_s(model: torch.nn.Module, size: int, repeats: int) -> float:
    tile = torch.randn(1, 6, size, size)
    model.eval()
    with torch.inference_mode():
        model(tile)
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            model(tile)
            best = min(best, time.perf_counter() - started)
    return size * size / best / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.size}x{args.size} x 6 channels, best of {args.repeats}")
    print(f"{'base':>4}  {'DUNet Mpx/s':>11}  {'UNet Mpx/s':>10}  {'DUNet params':>12}")
    for base in (8, 16, 32):
        dunet, unet = DUNet(6, base), UNet(6, base)
        params = sum(p.numel() for p in dunet.parameters())
        row = [throughput_mpx_s(m, args.size, args.repeats) for m in (dunet, unet)]
        print(f"{base:>4}  {row[0]:>11.3f}  {row[1]:>10.3f}  {params:>12,}")


if __name__ == "__main__":
    main()
