"""Held-out accuracy of trained weights on more world scenes than their card's 16.

    .venv/bin/python tests/bench/eval_world_held_out.py --sensor landsat [--weights W] [--first 200016] [--scenes 48]

The card scores 16 test scenes (seeds 200000-200015); one draw of the world that small moves
IoU by several points. This scores the weights, band ratio and NDSI on further test-range
seeds (never in training or validation) with `pipeline.training.world.score`, as the card
does, and prints the accuracy table and the per-glacier area bias, overall and by glacier size. The "48 further held-out
scenes" of pipeline/weights/README.md are `--first 200016 --scenes 48`. Run it beside ../shared, as
the cards were made: its real outlines enter the draws, and without them the same seeds draw other
scenes (it warns).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from catalog.providers import REFLECTANCE_BANDS
from catalog.synthetic.world.draw import DEFAULT_REAL_ROOT, real_data_present
from pipeline.config import SHIPPED_WEIGHTS
from pipeline.model.baselines import BandRatioPredictor, NDSIPredictor
from pipeline.model.predictor import TorchPredictor
from pipeline.model.weights import load_model
from pipeline.training.world import TEST_SEEDS, area_bias_by_size, draw_split, score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sensor", choices=("sentinel-2", "landsat"), required=True)
    ap.add_argument("--weights", type=Path, help="default: the shipped weights of --sensor")
    ap.add_argument("--first", type=int, default=TEST_SEEDS + 16, help="first test seed (default: after the card's 16)")
    ap.add_argument("--scenes", type=int, default=48)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    if not TEST_SEEDS <= args.first < TEST_SEEDS + 100_000:
        ap.error(f"--first {args.first}: test seeds are {TEST_SEEDS}-{TEST_SEEDS + 99_999} (others are training or validation)")
    weights = args.weights or SHIPPED_WEIGHTS / f"{args.sensor}.safetensors"
    model, card = load_model(weights)
    bands = REFLECTANCE_BANDS[args.sensor]
    predictors = {card.architecture: TorchPredictor(model, card.recipe), "band_ratio": BandRatioPredictor(bands),
                  "ndsi": NDSIPredictor(bands)}
    if not real_data_present():
        print(f"warning: {DEFAULT_REAL_ROOT} is missing, so these seeds draw other scenes than the card's (procedural "
              "glaciers instead of real outlines): the numbers are not comparable with the card or pipeline/weights/README.md",
              file=sys.stderr)
    scenes = draw_split(args.sensor, args.first, args.scenes, args.size, "procedural")
    accuracy, bias = score(predictors, scenes, args.sensor)
    print(f"{weights} on {args.scenes} held-out scenes (seeds {args.first}-{args.first + args.scenes - 1}, {args.size} px)")
    print(accuracy[["model", "zone", "PA", "UA", "F1", "IoU"]].round(3).to_string(index=False))
    ours = bias[bias.model == card.architecture].area_bias
    print(f"area bias per glacier ({len(ours)}): median {ours.median():+.1%}, within +-3 %: {(ours.abs() <= 0.03).mean():.0%}")
    print("by glacier size (km2):")
    print(area_bias_by_size(bias).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
