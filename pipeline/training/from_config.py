"""`glacierwatch train`: from a config to shipped-style weights and an accuracy table.

Composites of every configured year (pipeline.inference.yearly_cube), labels (truth or program),
samples of the training years, a recipe fitted on them, the paper's training loop, and an
accuracy table on the held-out years with the baselines beside the network.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from rich.console import Console
from shapely.geometry import box

from catalog.providers import REFLECTANCE_BANDS
from catalog.synthetic.truth import truth_on_grid
from pipeline.config import Config, Training
from pipeline.glaciers.inventory import read_inventory
from pipeline.glaciers.rasterise import rasterize_inventory
from pipeline.inference.yearly_cube import yearly_cube
from pipeline.model.baselines import BandRatioPredictor, NDSIPredictor
from pipeline.model.inputs import InputRecipe, fit_normalisation
from pipeline.model.predictor import TorchPredictor
from pipeline.model.weights import TrainingDomain, load_model, save_weights
from pipeline.training.evaluation import accuracy_table
from pipeline.training.fit import TrainingConfig, train
from pipeline.training.labels import program_labels, truth_labels
from pipeline.training.samples import cut_samples
from pipeline.training.world import starting_network


@dataclass
class TrainingRun:
    weights: Path
    accuracy: pd.DataFrame


HELD_OUT_SHARE = 0.2
"""Share of a real region's glaciers held out of training, to score on (`held_out_zone`)."""


def held_out_zone(inventory, grid, buffer_m: float) -> tuple[np.ndarray, list]:
    """(y, x bool, ids) of the glaciers held out of a real region's training: the eastern `HELD_OUT_SHARE`
    of them by outline centre, one block of terrain the network never learns, with their zones (outline
    grown by `buffer_m`). Judged on other years of the glaciers it trained on, a network scores what it
    memorised (the embedded area: persistence scored as high as the network)."""
    on_grid = inventory.to_crs(grid.crs)
    on_grid = on_grid[on_grid.intersects(box(*grid.bounds))]  # the region's glaciers, of an inventory of a whole range
    if on_grid.empty:
        raise ValueError(f"no inventory outline lies on the {grid.shape} px grid of the region: no glacier to hold out "
                         "of training and score on; check inventory.path and the region")
    n = max(1, round(len(on_grid) * HELD_OUT_SHARE))
    chosen = on_grid.loc[on_grid.geometry.centroid.x.sort_values(kind="stable").index[-n:]]
    zone = rasterize_inventory(chosen, grid.transform, grid.shape, grid.crs, buffer_m=buffer_m).values > 0
    return zone, chosen["glacier_id"].tolist()


def train_and_evaluate(cfg: Config, sensor: str, options: Training, out_dir: Path, console: Console | None = None,
                       init_weights: Path | None = None) -> TrainingRun:
    """Train `sensor`'s network on `cfg`'s region and score it.

    On the synthetic area (its truth beside it): trained on `options`' training years, scored on the
    held-out years against the truth. On a real region (``training.labels: inventory``, no truth):
    trained on program labels, scored on the test years over the glaciers held out of training
    (`held_out_zone`) against the same labels. `init_weights`: weights to fine-tune (their
    architecture, width and input recipe; `world.starting_network`), whose domain the card keeps."""
    console = console or Console()
    years = list(cfg.years)
    test_years = [y for y in options.test_years if y in years]
    train_years = [y for y in years if y not in test_years]
    if not train_years or not test_years:
        raise ValueError(f"training needs years to train on and held-out test years: years {years}, test_years {list(options.test_years)}")
    bands = REFLECTANCE_BANDS[sensor]
    # what can fail without pixels fails before the composites (on a real region: a season's downloads)
    truth_dir = Path(cfg.path(cfg.synthetic.path)) / "truth"
    has_truth = truth_dir.is_dir() and cfg.sensors[sensor].provider == "local"  # a synthetic area scores on its own truth
    if not has_truth and options.labels == "truth":
        raise FileNotFoundError(f"no truth at {truth_dir}: training.labels: truth needs a synthetic area's; on real scenes "
                                "set training.labels: inventory (outlines x band ratio, scored on held-out glaciers), "
                                "or use `glacierwatch train-world`")
    config = TrainingConfig.from_options(options)
    init, origin, parent = None, "", None
    if init_weights is not None:  # before any composite: weights that cannot start this training fail at once
        init, recipe, origin = starting_network(init_weights, config, InputRecipe(bands=bands, indices=options.indices,
                                                                                  terrain=options.terrain))
        parent = load_model(init_weights)[1].domain
    inventory = None
    if options.labels != "truth":  # read as a run reads it (the analysis date picks a GLIMS analysis)
        inventory = read_inventory(cfg.inventory_path(), cfg.inventory.id_field, cfg.inventory.analysis_date(cfg.years, cfg.season),
                                   cfg.inventory.date_field)
        if not inventory.to_crs(4326).intersects(box(*cfg.region.bbox)).any():  # else it trains on empty labels, IoU 0
            raise ValueError(f"inventory {cfg.inventory_path()} has no outline in the region {list(cfg.region.bbox)}: "
                             "training.labels: inventory takes its labels from it; set inventory.path to the region's outlines")
    grid = cfg.grid(sensor)
    held_out, ids = held_out_zone(inventory, grid, cfg.analysis.glacier_buffer_m) if not has_truth else (None, [])
    console.print(f"composites of {years[0]}-{years[-1]} ({sensor}) ...")
    cube = yearly_cube(cfg, sensor).compute()
    truth = truth_on_grid(truth_dir, grid, years) if has_truth else None
    if options.labels == "truth":
        labels = truth_labels(truth)
    else:
        labels = program_labels(inventory, cube, grid, bands)
    scored_on = f"the held-out years {test_years}"
    if truth is None:  # a real region: judged on glaciers it never trained on, against the same kind of labels
        truth = xr.Dataset({"glacier_fraction": labels.astype(np.float32), "debris_fraction": xr.zeros_like(labels, np.float32)})
        scored_on = (f"{len(ids)} glaciers held out of training (the eastern {HELD_OUT_SHARE * 100:.0f} % of the inventory's, their "
                     f"zones never in the loss) in {test_years}, against the same program labels (inventory outline x "
                     "band-ratio/NDSI ice: indices score high on them by construction)")
    if not labels.sel(year=train_years).any():
        raise ValueError(f"the {options.labels} labels of {train_years[0]}-{train_years[-1]} hold no glacier pixel on the "
                         f"{sensor} grid: a network trained on them maps no ice; check inventory.path and the region")
    samples = cut_samples(cube, labels, train_years, options.sample_size, options.crop_size)
    if init is None:
        recipe = fit_normalisation(
            InputRecipe(bands=bands, indices=options.indices, terrain=options.terrain), zip(samples.reflectance, samples.terrain)
        )
    inputs = [recipe.build_inputs(r, t) for r, t in zip(samples.reflectance, samples.terrain)]
    if held_out is not None:  # the held-out glaciers' pixels never enter the loss
        size = samples.labels[0].shape[0]
        inputs = [(x, np.where(held_out[r : r + size, c : c + size], 0, v).astype(v.dtype))
                  for (x, v), (_, r, c) in zip(inputs, samples.origins, strict=True)]
    described = (
        f"glacierwatch {sensor} composites {train_years[0]}-{train_years[-1]} over {cfg.region.name} "
        f"{list(cfg.region.bbox)}, {options.labels} labels, {len(samples)} samples of {samples.labels[0].shape[0]} px; "
        f"scored on {scored_on}" + (f"; {origin}" if origin else "")
    )
    synthetic = cfg.sensors[sensor].provider == "local"  # the embedded area, scored on its own truth
    elevation = cube.elevation.values
    domain = TrainingDomain(
        kind="synthetic" if synthetic else "real",
        sensors=(sensor,),
        resolution_m=cfg.sensors[sensor].resolution,
        elevation_m=(float(np.nanmin(elevation)), float(np.nanmax(elevation))) if np.isfinite(elevation).any() else None,
        latitude_deg=(cfg.region.bbox[1], cfg.region.bbox[3]),
        regions=(cfg.region.name,),
    ).merged(parent)
    result = train(
        [i for i, _ in inputs], samples.labels, recipe, config, out_dir, valid=[v for _, v in inputs], training_data=described,
        domain=domain, init=init,
    )
    predictors = {options.architecture: TorchPredictor(result.model, recipe), "band_ratio": BandRatioPredictor(bands), "ndsi": NDSIPredictor(bands)}
    accuracy = accuracy_table(predictors, cube, truth, test_years, sensor, within=held_out)
    accuracy.to_csv(out_dir / "accuracy.csv", index=False)
    ours = accuracy[(accuracy.model == options.architecture)]
    metrics = {
        f"held_out_{zone}_{m}": float(ours[ours.zone == zone][m].mean()) for zone in ("all", "debris") for m in ("OA", "IoU", "F1")
    }
    for name in sorted(set(accuracy.model) - {options.architecture}):  # the baselines on the card, beside the network
        rows = accuracy[(accuracy.model == name) & (accuracy.zone == "all")]
        metrics[f"baseline_{name}_all_IoU"] = float(rows.IoU.mean())
    metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}  # no debris in the test years: no debris score
    weights = out_dir / f"{sensor}-{options.architecture}.safetensors"
    save_weights(result.model, recipe, weights, training_data=described, seed=options.seed, metrics=metrics, domain=domain)
    shutil.copy(out_dir / "training_log.csv", out_dir / f"{sensor}-{options.architecture}.training_log.csv")
    return TrainingRun(weights, accuracy)
