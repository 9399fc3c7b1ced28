"""A tile end to end through `TorchPredictor` (host arrays in, probabilities out) against its bare forward.

On a GPU the network is not what bounds a tile: on an H200 (2026-12-04) the shipped U-Net's bare
forward ran at 530 Mpx/s (tests/bench/bench_model_gpu.py) and the predictor end to end at 4.5, the
rest being the host-side input preparation (`InputRecipe.build_inputs`) and the copies. This prints,
per tile size, batch and precision, the predictor's Mpx/s in the layout it runs (`forward_memory_format`)
and in the other one, with the largest difference between them (x255), and the time `build_inputs`
alone takes per tile on this host:

    python tests/bench/bench_predictor_gpu.py [--device cuda] [--sizes 2048] [--batches 1 4] [--json OUT.json]

`--device cpu --sizes 256` only checks the script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipeline.model.predictor import TorchPredictor  # noqa: E402
from pipeline.model.weights import load_model  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(f, args: tuple, device: torch.device, repeats: int) -> tuple[float, object]:
    """Median seconds of `repeats` calls of `f(*args)` after one warm-up, and the last result."""
    result = f(*args)
    _sync(device)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = f(*args)
        _sync(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def _build_all(recipe, tiles, terrain):
    return [recipe.build_inputs(t, terrain) for t in tiles]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    model, card = load_model(ROOT / "pipeline" / "weights" / "sentinel-2.safetensors")
    rng = np.random.default_rng(0)
    result = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu", "torch": torch.__version__, "rows": []}
    print(result["device"], "torch", torch.__version__)
    for size in args.sizes:
        terrain = {"slope": rng.uniform(0, 40, (size, size)).astype(np.float32),
                   "elevation": rng.uniform(3000, 5000, (size, size)).astype(np.float32)}
        for batch in args.batches:
            tiles = [rng.uniform(0, 0.9, (6, size, size)).astype(np.float32) for _ in range(batch)]
            prep_s, _ = timed(_build_all, (card.recipe, tiles, terrain), torch.device("cpu"), args.repeats)
            for half in ((False, True) if device.type == "cuda" else (False,)):
                predictor = TorchPredictor(model, card.recipe, device=device, half=half)
                chosen = predictor.memory_format
                s_chosen, p_chosen = timed(predictor.predict_batch, (tiles, terrain), device, args.repeats)
                other = torch.contiguous_format if chosen == torch.channels_last else torch.channels_last
                predictor.memory_format = other
                predictor.model.to(memory_format=other)
                s_other, p_other = timed(predictor.predict_batch, (tiles, terrain), device, args.repeats)
                mpx = batch * size * size / 1e6
                row = {"size": size, "batch": batch, "precision": "fp16" if predictor.half else "fp32",
                       "layout": str(chosen).split(".")[-1], "mpx_s": mpx / s_chosen, "other_layout_mpx_s": mpx / s_other,
                       "max_diff_x255": float(np.abs(p_chosen - p_other).max() * 255), "build_inputs_s": prep_s}
                result["rows"].append(row)
                print(f"{size:>5} px  b{batch:<2} {row['precision']}  {row['layout']:>14} {row['mpx_s']:8.2f} Mpx/s "
                      f"(other layout {row['other_layout_mpx_s']:.2f}; max diff {row['max_diff_x255']:.2f}/255); "
                      f"build_inputs {prep_s:.3f} s per batch", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
