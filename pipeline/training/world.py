"""Train on the world (catalog.synthetic.world) and score on glaciers no training scene holds.

Why: a network scored on other years or crops of its training scenes is scored on glaciers it
has memorised (persistence scores as well). Here the splits are by seed range and terrain:
training scenes take their relief from anywhere (real Ötztal relief and procedural), validation
and test scenes are procedural only and drawn from disjoint seed ranges, so every test glacier,
its terrain, elevation range, latitude, date and atmosphere are new to the network. Validation
scenes fit the temperature that calibrates the probabilities; test scenes give the accuracy
table, with band ratio and NDSI (and any other trained network) beside the model, and with
debris-covered termini and shadowed ice as their own zones. Persistence needs a previous year:
world scenes are single dates, so it is scored on the embedded area's years instead
(pipeline.training.from_config).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from affine import Affine
from rich.console import Console
from scipy import ndimage, optimize

from catalog.providers import REFLECTANCE_BANDS
from catalog.terrain import horn_slope_deg
from pipeline.glaciers.accuracy import AccuracyMetrics, confusion_counts
from pipeline.glaciers.rasterise import grow_labels
from pipeline.model.baselines import BandRatioPredictor, NDSIPredictor
from pipeline.model.dunet import SegmentationUNet
from pipeline.model.inputs import InputRecipe, fit_normalisation
from pipeline.model.predictor import Predictor, TorchPredictor
from pipeline.model.weights import TrainingDomain, WeightsError, load_model, save_weights
from pipeline.training.fit import TrainingConfig, train

TRAIN_SEEDS, VALID_SEEDS, TEST_SEEDS = 0, 100_000, 200_000
"""First seed of each split: the ranges never meet, so no scene is in two splits."""
WORLD_INDICES = ("ndsi", "ndwi")
WORLD_TERRAIN = ("slope", "relative_elevation")
"""No absolute elevation: both terrain channels are unchanged by a regional shift of the DEM."""
ZONE_HALO_PX = 5
"""Debris and shadow zones: the truth's debris-covered (shadowed) ice grown by this many pixels,
so debris-coloured rock (or shadowed rock) called glacier beside it counts against the model."""
ECE_BINS = 15
MIN_GLACIER_KM2 = 0.01
"""Glaciers smaller than this (the minimum mapping unit, as analysis.min_mapping_unit_km2) are not scored for area bias."""


@dataclass
class WorldSample:
    """One drawn scene in the form training and scoring need."""

    seed: int
    reflectance: np.ndarray  # (band, y, x) float32
    terrain: dict[str, np.ndarray]  # elevation (m), slope (deg; NaN rim)
    label: np.ndarray  # (y, x) bool glacier
    debris: np.ndarray
    shadowed_ice: np.ndarray
    params: dict = field(default_factory=dict)
    bare_ice: np.ndarray | None = None  # (y, x) bool: glacier pixels of bare ice (clean or dirty, not debris), where drawn


def world_sample(seed: int, sensor: str, size: int, terrain: str = "any", dark_ice_share: float = 0.0) -> WorldSample:
    from catalog.synthetic.world import draw_scene  # the generator is needed for training only
    from catalog.synthetic.world.spectra import Surface

    scene = draw_scene(seed, sensor, size=size, terrain=terrain, dark_ice_share=dark_ice_share)
    resolution = scene.params["resolution_m"]
    return WorldSample(
        seed=seed,
        reflectance=scene.reflectance,
        terrain={"elevation": scene.dem, "slope": horn_slope_deg(scene.dem, Affine(resolution, 0, 0, 0, -resolution, 0))},
        label=scene.glacier,
        debris=scene.debris,
        shadowed_ice=scene.shadowed_ice,
        params=scene.params,
        bare_ice=scene.glacier & ~scene.debris & np.isin(scene.surface, (Surface.ICE_CLEAN, Surface.ICE_DIRTY)),
    )


def draw_split(sensor: str, first_seed: int, n: int, size: int, terrain: str, dark_ice_share: float = 0.0) -> list[WorldSample]:
    return [world_sample(first_seed + i, sensor, size, terrain, dark_ice_share) for i in range(n)]


def area_samples(cfg, sensor: str, years: Sequence[int], size: int, limit: int) -> list[WorldSample]:
    """Up to `limit` `size`-px samples of a study area's composites in `years`, with its truth as labels.

    For mixing the embedded synthetic area into world training: its conical massif carries
    glaciers on slopes the world's smoothed ice rarely has, so a network trained on the world
    alone under-maps it. Samples are taken evenly over the years and the tiling (a fixed stride).
    """
    from catalog.synthetic.truth import truth_on_grid
    from pipeline.inference.yearly_cube import yearly_cube
    from pipeline.training.labels import truth_labels
    from pipeline.training.samples import cut_samples

    cube = yearly_cube(cfg, sensor, years=list(years)).compute()
    truth = truth_on_grid(Path(cfg.path(cfg.synthetic.path)) / "truth", cfg.grid(sensor), list(years))
    labels = truth_labels(truth)
    cut = cut_samples(cube, labels.assign_coords(y=cube.y, x=cube.x), list(years), size, size)
    debris = (truth.debris_fraction >= 0.5).values
    picks = np.unique(np.linspace(0, len(cut) - 1, min(limit, len(cut))).round().astype(int))
    out = []
    for k in picks:
        year, r, c = cut.origins[k]
        window = (slice(r, r + size), slice(c, c + size))
        t = list(years).index(year)
        out.append(WorldSample(seed=-1, reflectance=cut.reflectance[k].astype(np.float32), terrain=cut.terrain[k],
                               label=cut.labels[k].astype(bool), debris=debris[t][window],
                               shadowed_ice=np.zeros((size, size), bool), params={"area": cfg.region.name, "year": year}))
    return out


def model_logits(model: SegmentationUNet, recipe: InputRecipe, sample: WorldSample) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) logits of a whole sample and its valid mask (the inference path's padding and layout)."""
    predictor = TorchPredictor(model, recipe, device=next(model.parameters()).device)
    logits, valid = predictor.logits_batch([sample.reflectance], sample.terrain)
    return logits[0], valid[0]


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T minimising the negative log-likelihood of sigmoid(logits / T) (Guo et al. 2017)."""
    z = logits.astype(np.float64)
    y = labels.astype(np.float64)

    def nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    best = optimize.minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    return float(math.exp(best.x))


def area_matching_shift(logits: np.ndarray, labels: np.ndarray) -> float:
    """The logit shift b after which z + b >= 0 maps as many pixels as are glacier (validation area unbiased).

    A network trained on a world where snow on rock and snow on a glacier look alike calls the
    ambiguous pixels "not glacier" (the likelier class): right pixel by pixel, but every glacier
    comes out too small. Shifting the decision to the quantile that maps the true area removes
    that bias; the temperature is fitted after the shift, so the probabilities stay calibrated.
    """
    z = np.sort(logits.ravel())
    n_true = int(np.count_nonzero(labels))
    if n_true == 0:
        return 0.0
    if n_true >= z.size:
        return float(-z[0])
    return float(-(z[z.size - n_true - 1] + z[z.size - n_true]) / 2.0)  # between the last excluded and first included


def median_scene_area_bias(scenes: list[tuple[np.ndarray, np.ndarray]], shift: float) -> float:
    """Median over (logits, labels) scenes of (pixels with logit + `shift` >= 0) / glacier pixels - 1: what
    `area_matching_shift`'s median over scenes brings to ~0 (NaN without scenes)."""
    if not scenes:
        return float("nan")
    return float(np.median([np.count_nonzero(z + shift >= 0) / np.count_nonzero(y) - 1 for z, y in scenes]))


def expected_calibration_error(probability: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Share-weighted mean |observed frequency - mean probability| over equal-width probability bins."""
    p = probability.ravel().astype(np.float64)
    y = labels.ravel().astype(np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    p_sum = np.bincount(which, p, minlength=bins)
    y_sum = np.bincount(which, y, minlength=bins)
    used = count > 0
    return float(np.sum(np.abs(y_sum[used] - p_sum[used])) / max(p.size, 1))


def fold_temperature(model: SegmentationUNet, temperature: float, shift: float = 0.0) -> None:
    """Make the head output (z + shift) / T: the network then gives calibrated logits itself, so
    every path that runs it (run, predict, train) is calibrated without knowing about T."""
    with torch.no_grad():
        model.head.bias.add_(shift)
        model.head.weight.div_(temperature)
        model.head.bias.div_(temperature)


def unfold_temperature(model: SegmentationUNet, temperature: float, shift: float = 0.0) -> None:
    """Undo `fold_temperature`: back to the raw logits the network was trained to give, so
    fine-tuning starts from what the loss saw, not from sharpened, shifted ones."""
    with torch.no_grad():
        model.head.weight.mul_(temperature)
        model.head.bias.mul_(temperature).sub_(shift)


def starting_network(path: str | Path, config: TrainingConfig, recipe: InputRecipe) -> tuple[SegmentationUNet, InputRecipe, str]:
    """(network with its calibration undone, its input recipe, a line for the card) of shipped or
    trained weights to fine-tune; `WeightsError` when they are not of `config`'s network or recipe.

    The recipe (channels and their normalisation) must stay the weights' own: statistics refitted
    on the new scenes would feed the first layer inputs it was not trained on.
    """
    model, card = load_model(path)
    if (card.architecture, card.base) != (config.architecture, config.base):
        raise WeightsError(f"{path} holds {card.architecture} base {card.base}; this training is "
                         f"{config.architecture} base {config.base}: pass --architecture {card.architecture} --base {card.base}")
    if card.recipe.bands != recipe.bands:
        raise WeightsError(f"{path} was trained on bands {list(card.recipe.bands)}, this training's sensor has "
                           f"{list(recipe.bands)}: give weights of this --sensor")
    if card.recipe.channel_names != recipe.channel_names:
        terrain = ",".join(card.recipe.terrain) or "none"
        raise WeightsError(f"{path} takes channels {list(card.recipe.channel_names)}, this training "
                           f"{list(recipe.channel_names)}: pass --terrain {terrain} (train-world) or set training.terrain: [{terrain}] (train)")
    unfold_temperature(model, card.metrics.get("calibration_temperature", 1.0), card.metrics.get("calibration_shift", 0.0))
    spent = card.metrics.get("calibration_train_seconds")
    line = (f"fine-tuned from {Path(path).name} (sha256 {card.weights_sha256[:12]}"
            + (f", {spent / 60:.0f} min of training" if spent else "") + f"; {card.training_data})")
    return model.train(), card.recipe, line


def _zones(sample: WorldSample, valid: np.ndarray) -> dict[str, np.ndarray]:
    grow = np.ones((3, 3), bool)
    return {
        "all": valid,
        "debris": valid & ndimage.binary_dilation(sample.debris, grow, iterations=ZONE_HALO_PX),
        "shadowed_ice": valid & ndimage.binary_dilation(sample.shadowed_ice, grow, iterations=ZONE_HALO_PX),
    }


def glacier_area_bias(mapped: np.ndarray, label: np.ndarray, valid: np.ndarray, halo_px: int = 3,
                      min_px: int = 1) -> list[float]:
    """Per glacier (connected truth body of >= `min_px` pixels): (mapped - true) / true pixels within `halo_px` of it
    (`glacier_area_errors`' ``area_bias``)."""
    return [float(b) for b in glacier_area_errors(mapped, label, valid, halo_px, min_px)["area_bias"]]


def glacier_area_errors(mapped: np.ndarray, label: np.ndarray, valid: np.ndarray, halo_px: int = 3,
                        min_px: int = 1) -> pd.DataFrame:
    """Per glacier (connected truth body of >= `min_px` pixels): ``true_px`` (its valid pixels) and
    ``area_bias`` = (mapped - true) / true pixels within `halo_px` of it; the size is there because
    a map's bias depends on it (a network may miss the smallest glaciers whole).

    A glacier's zone is its body grown by `halo_px`, cut where another glacier's grown body is
    nearer (watershed by distance), so neighbours do not share mapped pixels. Bodies below
    `min_px` (the minimum mapping unit; slivers where an outline grazes the scene) are not glaciers
    a map is judged on.
    """
    bodies, n = ndimage.label(label)
    if not n:
        return pd.DataFrame({"true_px": pd.Series(dtype=float), "area_bias": pd.Series(dtype=float)})
    owner = grow_labels(bodies, halo_px)
    true = ndimage.sum(label & valid, bodies, range(1, n + 1))
    found = ndimage.sum(mapped & valid, owner, range(1, n + 1))
    size = ndimage.sum(label, bodies, range(1, n + 1))
    keep = (true > 0) & (size >= min_px)
    return pd.DataFrame({"true_px": true[keep], "area_bias": (found[keep] - true[keep]) / true[keep]})


def small_glacier_weights(label: np.ndarray, resolution_m: float, below_km2: float, max_weight: float = 4.0,
                          halo_px: int = 2) -> np.ndarray:
    """(y, x) float32 loss weights: sqrt(`below_km2` / area) (at most `max_weight`) over each glacier
    smaller than `below_km2` and the `halo_px` around it (its edge is what decides its area), 1 elsewhere.

    Why: a glacier of 0.05 km² is 56 Landsat pixels, against the thousands of a valley glacier or of
    the world's late-lying snow patches; with every pixel alike the network learned to call small
    bright patches snow and missed small glaciers whole (weights README, "by glacier size").
    """
    weights = np.ones(label.shape, np.float32)
    bodies, n = ndimage.label(label)
    if not n or below_km2 <= 0:
        return weights
    area_km2 = ndimage.sum(np.ones_like(bodies), bodies, range(1, n + 1)) * resolution_m ** 2 / 1e6
    per_body = np.concatenate([[1.0], np.clip(np.sqrt(below_km2 / area_km2), 1.0, max_weight)]).astype(np.float32)
    return np.maximum(weights, per_body[grow_labels(bodies, halo_px)])


SIZE_CLASSES_KM2 = (0.0, 0.1, 0.5, 1.0, 5.0, np.inf)
"""Glacier size classes of `area_bias_by_size`: a map's area bias depends on the glacier's size."""


def area_bias_by_size(bias: pd.DataFrame, within: float = 0.03) -> pd.DataFrame:
    """Per model and size class of `score`'s area bias rows: glaciers, median bias and the share within +-`within`."""
    classes = pd.cut(bias["glacier_km2"], SIZE_CLASSES_KM2)
    grouped = bias.assign(near=bias["area_bias"].abs() <= within).groupby(["model", classes.rename("class")], observed=True)
    return pd.DataFrame({"glaciers": grouped.size(), "median_bias": grouped["area_bias"].median(),
                         f"within_{within:.0%}": grouped["near"].mean()}).reset_index()


def score(predictors: Mapping[str, Predictor], samples: Sequence[WorldSample], sensor: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(accuracy rows per model and zone, confusion summed over samples; area bias per glacier)."""
    counts: dict[tuple[str, str], np.ndarray] = {}
    bias_rows = []
    for sample in samples:
        for name, predictor in predictors.items():
            probability = predictor.predict(sample.reflectance, sample.terrain)
            mapped = probability >= 0.5
            valid = np.isfinite(sample.reflectance).all(axis=0) & np.isfinite(sample.terrain["slope"])
            for zone, mask in _zones(sample, valid).items():
                key = (name, zone)
                counts[key] = counts.get(key, np.zeros((2, 2), np.int64)) + confusion_counts(mapped, sample.label, mask)
            min_px = max(1, round(MIN_GLACIER_KM2 * 1e6 / sample.params["resolution_m"] ** 2))
            errors = glacier_area_errors(mapped, sample.label, valid, min_px=min_px)
            for i, (px, b) in enumerate(zip(errors["true_px"], errors["area_bias"], strict=True)):
                bias_rows.append({"model": name, "seed": sample.seed, "glacier": i,
                                  "glacier_km2": float(px) * sample.params["resolution_m"] ** 2 / 1e6, "area_bias": float(b)})
    rows = []
    for (name, zone), c in counts.items():
        m = AccuracyMetrics.from_confusion(c).as_dict()
        rows.append({"model": name, "zone": zone, "sensor": sensor, **m})
    return pd.DataFrame(rows), pd.DataFrame(bias_rows, columns=["model", "seed", "glacier", "glacier_km2", "area_bias"])


@dataclass
class WorldTrainingRun:
    weights: Path
    accuracy: pd.DataFrame
    area_bias: pd.DataFrame
    calibration: dict[str, float]
    seconds: float


def world_recipe(sensor: str, terrain: Sequence[str] = WORLD_TERRAIN) -> InputRecipe:
    return InputRecipe(bands=REFLECTANCE_BANDS[sensor], indices=WORLD_INDICES, terrain=tuple(terrain))


def train_on_world(
    sensor: str,
    out_dir: str | Path,
    *,
    n_train: int = 48,
    n_valid: int = 24,
    n_test: int = 16,
    size: int = 256,
    config: TrainingConfig | None = None,
    compare: Sequence[TrainingConfig] = (),
    terrain: Sequence[str] = WORLD_TERRAIN,
    resume: bool = False,
    area=None,
    area_repeat: int = 1,
    init_weights: str | Path | None = None,
    dark_ice_share: float = 0.0,
    console: Console | None = None,
) -> WorldTrainingRun:
    """Draw the splits, train `config`'s network (and each of `compare`), calibrate on validation,
    score everything on the test scenes, and write weights + card + accuracy.csv + area_bias.csv.

    `resume`: a network whose last epoch's checkpoint is already in `out_dir` is loaded, not trained.
    `area`: a config of the embedded synthetic area, whose years except `training.test_years` are
    mixed into training (at most half as many samples as world scenes); the card's domain is then
    "mixed". Validation, calibration and the test table stay on the world.
    `area_repeat`: each area sample enters training this many times. At 30 m the area gives few
    256-px samples (Landsat 20 against Sentinel-2's 150), so among 768 world scenes it would
    weigh 9x less than it does for Sentinel-2.
    `init_weights`: weights of `config`'s architecture to fine-tune (their recipe and calibration
    are taken and undone, see `starting_network`) instead of training from scratch.
    `dark_ice_share`: the share of the training scenes drawn with dark bare ice (`draw_scene`); validation
    and test scenes stay the cards' world, so the calibration and the card's table compare with every
    other card's (score dark ice with `tests/bench/eval_world_held_out.py --dark-ice-share`).
    """
    console = console or Console()
    config = config or TrainingConfig(architecture="dunet-deep", base=16, crop_size=128, variants=2, focal_alpha=0.5,
                                      max_epochs=12, lr_decay=0.9, test_fraction=0.0, loss_threshold=0.0)
    started = time.perf_counter()
    init, origin, parent = None, "", None
    if init_weights is not None:  # before anything is drawn or written: wrong weights fail at once
        init, recipe, origin = starting_network(init_weights, config, world_recipe(sensor, terrain))
        parent = load_model(init_weights)[1].domain  # what the network has seen before: merged into the card's
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"world scenes ({sensor}, {size} px): {n_train} training, {n_valid} validation, {n_test} test ...")
    from catalog.synthetic.world.draw import DEFAULT_REAL_ROOT, real_data_present

    with_real = real_data_present()
    if not with_real:
        console.print(f"[yellow]{DEFAULT_REAL_ROOT} is missing: the world draws procedural relief and glaciers only, "
                      "so its scenes differ from those of the shipped cards (drawn beside ../shared)[/yellow]")
    train_set = draw_split(sensor, TRAIN_SEEDS, n_train, size, "any", dark_ice_share)
    valid_set = draw_split(sensor, VALID_SEEDS, n_valid, size, "procedural")
    test_set = draw_split(sensor, TEST_SEEDS, n_test, size, "procedural")
    if area is not None:
        area_years = [y for y in area.years if y not in area.training.test_years]
        mixed = area_samples(area, sensor, area_years, size, max(1, n_train // 2))
        repeated = f", each {area_repeat} times" if area_repeat > 1 else ""
        console.print(f"  + {len(mixed)} samples of {area.region.name} ({area_years[0]}-{area_years[-1]}){repeated}")
        train_set = train_set + mixed
    if init is None:
        recipe = fit_normalisation(world_recipe(sensor, terrain), ((s.reflectance, s.terrain) for s in train_set))
    built = [recipe.build_inputs(s.reflectance, s.terrain) for s in train_set]
    labels = [s.label.astype(np.float32) for s in train_set]
    if area is not None and area_repeat > 1:  # the same arrays again, not built or held again
        built, labels, train_set = (items + items[n_train:] * (area_repeat - 1) for items in (built, labels, train_set))
    resolution = train_set[0].params["resolution_m"]
    described = (
        f"glacierwatch training world (catalog.synthetic.world), {sensor} at {resolution:g} m: "
        f"{n_train} scenes of {size} px (seeds {TRAIN_SEEDS}-{TRAIN_SEEDS + n_train - 1}, "
        + ("real and procedural relief)" if with_real else "procedural relief and glaciers only: no real DEMs or outlines)")
        + (f" + {len(mixed)} samples of the embedded area {area.region.name} ({area_years[0]}-{area_years[-1]}, truth labels)"
           f"{repeated}" if area is not None else "")
        + f"; calibrated on {n_valid} (seeds {VALID_SEEDS}+), scored on {n_test} held-out procedural scenes (seeds {TEST_SEEDS}+)"
        + (f"; {dark_ice_share:.0%} of the training scenes with dark bare ice" if dark_ice_share else "")
        + (f"; {origin}" if origin else "")
    )
    elevations = np.concatenate([s.terrain["elevation"].ravel() for s in train_set])
    latitudes = [s.params["latitude_deg"] for s in train_set if "latitude_deg" in s.params]
    if area is not None:
        latitudes += [area.region.bbox[1], area.region.bbox[3]]
    domain = TrainingDomain(  # before training: every checkpoint's card says it too
        kind="mixed" if area is not None else "world",
        sensors=(sensor,),
        resolution_m=resolution,
        elevation_m=(float(np.nanmin(elevations)), float(np.nanmax(elevations))),
        latitude_deg=(float(min(latitudes)), float(max(latitudes))),
        regions=("glacierwatch training world", *((f"{area.region.name} (synthetic)",) if area is not None else ())),
    ).merged(parent)
    predictors: dict[str, Predictor] = {}
    calibration: dict[str, float] = {}
    main_model = None
    for cfg in (config, *compare):
        console.print(f"training {cfg.architecture} (base {cfg.base}, {cfg.max_epochs} epochs) ...")
        t0 = time.perf_counter()
        last = out_dir / cfg.architecture / f"epoch_{cfg.max_epochs:03d}.safetensors"
        if resume and last.is_file():
            model, card = load_model(last)
            if card.recipe != recipe:
                raise ValueError(f"{last} was trained on another input recipe than this run's: remove it or drop --resume")
            console.print(f"  resumed from {last}")
        else:
            weights = [v * small_glacier_weights(s.label, resolution, cfg.small_glacier_km2) if cfg.small_glacier_km2 else v
                       for (_, v), s in zip(built, train_set, strict=True)]
            model = train([i for i, _ in built], labels, recipe, cfg, out_dir / cfg.architecture,
                          valid=weights, training_data=described,
                          init=init if cfg is config else None, domain=domain).model
        pairs = [model_logits(model, recipe, s) for s in valid_set]
        z = np.concatenate([lz[v] for (lz, v) in pairs])
        y = np.concatenate([s.label[v] for (_, v), s in zip(pairs, valid_set)])
        # the median of each scene's own shift: a few validation scenes under fresh snow (all of it
        # "not glacier") would otherwise pull every map down (pooled, Landsat's shift was -0.6)
        glacier_scenes = [(lz[v], s.label[v]) for (lz, v), s in zip(pairs, valid_set) if s.label[v].any()]
        per_scene = [area_matching_shift(lz, lab) for lz, lab in glacier_scenes]
        shift = float(np.median(per_scene)) if per_scene else 0.0
        temperature = fit_temperature(z + shift, y)

        cal = {
            "shift": shift,
            "temperature": temperature,
            "ece_before": expected_calibration_error(1 / (1 + np.exp(-z)), y),
            "ece_after": expected_calibration_error(1 / (1 + np.exp(-(z + shift) / temperature)), y),
            # pooled over the validation pixels: a few scenes with much ice or snow weigh most; the shift
            # is the median scene's, so it brings the median scene's bias (below) to ~0, not this one
            "valid_area_bias_before": float(np.count_nonzero(z >= 0) / max(np.count_nonzero(y), 1) - 1),
            "valid_area_bias_after": float(np.count_nonzero(z + shift >= 0) / max(np.count_nonzero(y), 1) - 1),
            "valid_scene_area_bias_median_before": median_scene_area_bias(glacier_scenes, 0.0),
            "valid_scene_area_bias_median_after": median_scene_area_bias(glacier_scenes, shift),
            "train_seconds": time.perf_counter() - t0,
        }
        fold_temperature(model, temperature, shift)
        predictors[cfg.architecture] = TorchPredictor(model, recipe)
        calibration[cfg.architecture] = cal
        if main_model is None:
            main_model = model
        console.print(f"  {cfg.architecture}: shift {shift:+.2f} (validation area bias, median scene "
                      f"{cal['valid_scene_area_bias_median_before']:+.1%} -> {cal['valid_scene_area_bias_median_after']:+.1%}; "
                      f"pooled {cal['valid_area_bias_before']:+.1%} -> {cal['valid_area_bias_after']:+.1%}), "
                      f"T = {temperature:.2f}, ECE {cal['ece_before']:.3f} -> {cal['ece_after']:.3f}")
    bands = REFLECTANCE_BANDS[sensor]
    predictors |= {"band_ratio": BandRatioPredictor(bands), "ndsi": NDSIPredictor(bands)}
    accuracy, bias = score(predictors, test_set, sensor)
    accuracy.to_csv(out_dir / "accuracy.csv", index=False)
    bias.to_csv(out_dir / "area_bias.csv", index=False)
    ours = accuracy[accuracy.model == config.architecture].set_index("zone")
    our_bias = bias[bias.model == config.architecture].area_bias
    metrics = {f"held_out_{zone}_{m}": float(ours.loc[zone, m]) for zone in ours.index for m in ("PA", "UA", "IoU", "F1")}
    metrics |= {f"calibration_{k}": v for k, v in calibration[config.architecture].items()}
    metrics |= {"held_out_area_bias_median": float(our_bias.median()) if len(our_bias) else float("nan"),
                "held_out_area_bias_within_3pct": float((our_bias.abs() <= 0.03).mean()) if len(our_bias) else float("nan")}
    metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
    weights = out_dir / f"{sensor}-{config.architecture}.safetensors"
    save_weights(main_model, recipe, weights, dtype=torch.float16, training_data=described, seed=config.seed,
                 metrics=metrics, domain=domain)
    return WorldTrainingRun(weights, accuracy, bias, calibration, time.perf_counter() - started)
