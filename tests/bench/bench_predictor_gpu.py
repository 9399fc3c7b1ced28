"""A tile end to end through `TorchPredictor` (host arrays in, probabilities out), inputs built on the device or on the host.

On a GPU the network is not what bounds a tile: on an H200 (2026-12-04) the shipped U-Net's bare
forward ran at 530 Mpx/s (tests/bench/bench_model_gpu.py) and the predictor end to end at 4.5, the
rest being numpy's host-side input preparation (`InputRecipe.build_inputs`) and the copies. Since
then a GPU predictor builds its inputs with torch on the device (`pipeline.model.device_inputs`).
This prints, per tile size, batch and precision, the predictor's Mpx/s with the inputs built on the
device and on the host, the largest difference between the two (x255), and what numpy's
`build_inputs` alone takes per batch on this host:

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
                mpx = batch * size * size / 1e6
                row = {"size": size, "batch": batch, "precision": "fp16" if predictor.half else "fp32",
                       "layout": str(predictor.memory_format).split(".")[-1], "build_inputs_s": prep_s}
                # as it runs (inputs built on the device off the CPU), then with numpy's host-side inputs
                for inputs_on in (predictor.device_inputs, not predictor.device_inputs):
                    predictor.device_inputs = inputs_on
                    seconds, p = timed(predictor.predict_batch, (tiles, terrain), device, args.repeats)
                    row["device_inputs_mpx_s" if inputs_on else "host_inputs_mpx_s"] = mpx / seconds
                    row.setdefault("probabilities", []).append(p)
                first, second = row.pop("probabilities")
                row["max_diff_x255"] = float(np.abs(first - second).max() * 255)
                result["rows"].append(row)
                print(f"{size:>5} px  b{batch:<2} {row['precision']}  {row['layout']:>14}  inputs on the device "
                      f"{row['device_inputs_mpx_s']:8.2f} Mpx/s, on the host {row['host_inputs_mpx_s']:8.2f} Mpx/s "
                      f"(max diff {row['max_diff_x255']:.3f}/255); numpy build_inputs {prep_s:.3f} s per batch", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
