"""Held-out accuracy of trained weights on more world scenes than their card's 16.

    .venv/bin/python tests/bench/eval_world_held_out.py --sensor landsat [--weights W [W2 ...]] [--first 200016] [--scenes 48]
        [--dark-ice-share 0]

The card scores 16 test scenes (seeds 200000-200015); one draw of the world that small moves
IoU by several points. This scores the weights, band ratio and NDSI on further test-range
seeds (never in training or validation) with `pipeline.training.world.score`, as the card
does, and prints the accuracy table and the per-glacier area bias, overall and by glacier size. The "48 further held-out
scenes" of pipeline/weights/README.md are `--first 200016 --scenes 48`. Run it beside ../shared, as
the cards were made: its real outlines enter the draws, and without them the same seeds draw other
scenes (it warns). Several weights are scored on the same scenes (named by file); `--dark-ice-share 1`
draws every scene with dark bare ice (`catalog.synthetic.world.draw.DARK_ICE`). A table gives
each network's and NDSI's recall of sunlit bare ice (not debris, not in shadow: shadowed ice has its
own row above) by its green reflectance, where dark ice is missed first; then what each maps of small glaciers
under snow, on bare ice, and of off-ice snow patches of the same size, which at 30 m look alike.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from catalog.providers import REFLECTANCE_BANDS
from catalog.synthetic.world.draw import DEFAULT_REAL_ROOT, real_data_present
from pipeline.config import SHIPPED_WEIGHTS
from pipeline.model.baselines import BandRatioPredictor, NDSIPredictor
from pipeline.model.predictor import TorchPredictor
from pipeline.model.weights import load_model
from pipeline.training.world import TEST_SEEDS, WorldSample, area_bias_by_size, draw_split, score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sensor", choices=("sentinel-2", "landsat"), required=True)
    ap.add_argument("--weights", type=Path, nargs="+", help="default: the shipped weights of --sensor")
    ap.add_argument("--first", type=int, default=TEST_SEEDS + 16, help="first test seed (default: after the card's 16)")
    ap.add_argument("--scenes", type=int, default=48)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--dark-ice-share", type=float, default=0.0, help="share of scenes with dark bare ice (0: the cards' world)")
    ap.add_argument("--southern", action="store_true", help="mirror every scene north-south (a southern-hemisphere world: "
                    "the sun from the north) and score each network also fed mirrored, as a run there feeds it")
    args = ap.parse_args()
    if not TEST_SEEDS <= args.first < TEST_SEEDS + 100_000:
        ap.error(f"--first {args.first}: test seeds are {TEST_SEEDS}-{TEST_SEEDS + 99_999} (others are training or validation)")
    paths = args.weights or [SHIPPED_WEIGHTS / f"{args.sensor}.safetensors"]
    if len(paths) > 1 and len({p.stem for p in paths}) < len(paths):
        ap.error("--weights: several files share a name, so their rows could not be told apart: copy one under another name")
    bands = REFLECTANCE_BANDS[args.sensor]
    predictors = {}
    for path in paths:
        model, card = load_model(path)
        name = path.stem if len(paths) > 1 else card.architecture
        predictors[name] = Remembered(TorchPredictor(model, card.recipe))
        if args.southern:
            predictors[f"{name}, fed mirrored"] = Remembered(TorchPredictor(model, card.recipe, mirror=True))
    ours_names = list(predictors)
    predictors |= {"band_ratio": BandRatioPredictor(bands), "ndsi": Remembered(NDSIPredictor(bands))}
    if not real_data_present():
        print(f"warning: {DEFAULT_REAL_ROOT} is missing, so these seeds draw other scenes than the card's (procedural "
              "glaciers instead of real outlines): the numbers are not comparable with the card or pipeline/weights/README.md",
              file=sys.stderr)
    scenes = draw_split(args.sensor, args.first, args.scenes, args.size, "procedural", args.dark_ice_share)
    if args.southern:
        scenes = [mirrored_north_south(scene) for scene in scenes]
    accuracy, bias = score(predictors, scenes, args.sensor)
    dark = (f", dark-ice share {args.dark_ice_share:g}" if args.dark_ice_share else "") + (", mirrored north-south" if args.southern else "")
    print(f"{', '.join(map(str, paths))} on {args.scenes} held-out scenes (seeds {args.first}-{args.first + args.scenes - 1}, "
          f"{args.size} px{dark})")
    print(accuracy[["model", "zone", "PA", "UA", "F1", "IoU"]].round(3).to_string(index=False))
    for name in ours_names:
        ours = bias[bias.model == name].area_bias
        print(f"{name}: area bias per glacier ({len(ours)}): median {ours.median():+.1%}, within +-3 %: {(ours.abs() <= 0.03).mean():.0%}")
    print("by glacier size (km2):")
    print(area_bias_by_size(bias).round(3).to_string(index=False))
    print("recall of sunlit bare ice (clean or dirty, not debris, not shadowed) by its green reflectance:")
    print(bare_ice_recall({k: predictors[k] for k in (*ours_names, "ndsi")}, scenes).round(3).to_string(index=False))
    print(f"small glaciers ({SMALL_KM2[0]:g}-{SMALL_KM2[1]:g} km2) and off-ice snow patches of their size (NDSI > 0.4, "
          "not glacier): share of their pixels mapped")
    print(small_glacier_recall({k: predictors[k] for k in (*ours_names, "ndsi")}, scenes, bands).round(3).to_string(index=False))


class Remembered:
    """A predictor that keeps each scene's probability, so the recall table reuses `score`'s forward passes."""

    def __init__(self, predictor) -> None:
        self.predictor, self.name, self._kept = predictor, predictor.name, {}

    def predict(self, reflectance, terrain=None):
        key = id(reflectance)  # the scenes stay in memory for the whole run
        if key not in self._kept:
            self._kept[key] = self.predictor.predict(reflectance, terrain)
        return self._kept[key]


GREEN_BINS = (0.0, 0.15, 0.25, 0.35, np.inf)


def mirrored_north_south(sample: WorldSample) -> WorldSample:
    """`sample` mirrored north-south: a scene of the southern summer (the sun's azimuth az -> 180 - az, its morning
    still in the east; the shade-side slopes facing north), which the world does not draw."""
    def flip(a):
        return None if a is None else np.ascontiguousarray(a[..., ::-1, :])

    return replace(sample, reflectance=flip(sample.reflectance), terrain={k: flip(v) for k, v in sample.terrain.items()},
                   label=flip(sample.label), debris=flip(sample.debris), shadowed_ice=flip(sample.shadowed_ice),
                   bare_ice=flip(sample.bare_ice))


def bare_ice_recall(predictors, scenes) -> pd.DataFrame:
    """Share of sunlit bare-ice pixels each predictor maps (p >= 0.5), per bin of green reflectance."""
    hits = {name: np.zeros(len(GREEN_BINS) - 1) for name in predictors}
    total = np.zeros(len(GREEN_BINS) - 1)
    for sample in scenes:
        bare = sample.bare_ice & ~sample.shadowed_ice
        which = np.digitize(sample.reflectance[1][bare], GREEN_BINS) - 1
        total += np.bincount(which, minlength=len(total))[:len(total)]
        for name, predictor in predictors.items():
            mapped = predictor.predict(sample.reflectance, sample.terrain)[bare] >= 0.5
            hits[name] += np.bincount(which[mapped], minlength=len(total))[:len(total)]
    rows = {"green": [f"{lo:g}-{hi:g}" for lo, hi in pairwise(GREEN_BINS)], "pixels": total.astype(int)}
    return pd.DataFrame(rows | {name: h / np.maximum(total, 1) for name, h in hits.items()})


SMALL_KM2 = (0.01, 0.1)


def small_bodies(mask: np.ndarray, px_km2: float) -> list[tuple[tuple[slice, slice], np.ndarray]]:
    """(window, its pixels) of each connected part of `mask` whose area is within ``SMALL_KM2``."""
    parts, _ = ndimage.label(mask)
    bodies = ((where, parts[where] == i) for i, where in enumerate(ndimage.find_objects(parts), start=1))
    return [(where, body) for where, body in bodies if SMALL_KM2[0] <= body.sum() * px_km2 <= SMALL_KM2[1]]


def small_glacier_recall(predictors, scenes, bands) -> pd.DataFrame:
    """Share of pixels each predictor maps (p >= 0.5) of small glaciers, under snow (less than half their pixels
    bare ice or debris: the rest old snow or firn, and edge pixels mostly rock) or bare, and of off-ice snow
    patches of the same size: what a network can and cannot tell apart.

    At 30 m a snow-covered glacier of 0.05 km² and a late-lying snow patch in a hollow have the same spectrum, and
    the world draws many more such patches than such glaciers (Landsat ~27 to 1, Sentinel-2 ~5 to 1); NDSI maps both.
    """
    kinds = ("small glaciers under snow", "small glaciers, bare ice", "off-ice snow patches")
    hits = {name: dict.fromkeys(kinds, 0) for name in predictors}
    count, pixels = dict.fromkeys(kinds, 0), dict.fromkeys(kinds, 0)
    index = NDSIPredictor(bands)
    for sample in scenes:
        px_km2 = sample.params["resolution_m"] ** 2 / 1e6
        found = {kind: [] for kind in kinds}
        for where, body in small_bodies(sample.label, px_km2):
            snowy = np.count_nonzero(body & ~sample.bare_ice[where] & ~sample.debris[where]) >= 0.5 * body.sum()
            found[kinds[0] if snowy else kinds[1]].append((where, body))
        found[kinds[2]] = small_bodies((index.predict(sample.reflectance) >= 0.5) & ~sample.label, px_km2)
        maps = {name: predictor.predict(sample.reflectance, sample.terrain) >= 0.5 for name, predictor in predictors.items()}
        for kind, items in found.items():
            for where, body in items:
                count[kind] += 1
                pixels[kind] += int(body.sum())
                for name, mapped in maps.items():
                    hits[name][kind] += int(np.count_nonzero(mapped[where] & body))
    rows = {"what": list(kinds), "count": [count[k] for k in kinds], "pixels": [pixels[k] for k in kinds]}
    return pd.DataFrame(rows | {name: [h[k] / max(pixels[k], 1) for k in kinds] for name, h in hits.items()})


if __name__ == "__main__":
    main()
