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
from rich.console import Console
from shapely.geometry import box

from catalog.providers import REFLECTANCE_BANDS
from catalog.synthetic.truth import truth_on_grid
from pipeline.config import Config, Training
from pipeline.glaciers.inventory import read_inventory
from pipeline.inference.yearly_cube import yearly_cube
from pipeline.model.baselines import BandRatioPredictor, NDSIPredictor
from pipeline.model.inputs import InputRecipe, fit_normalisation
from pipeline.model.predictor import TorchPredictor
from pipeline.model.weights import TrainingDomain, save_weights
from pipeline.training.evaluation import accuracy_table
from pipeline.training.fit import TrainingConfig, train
from pipeline.training.labels import program_labels, truth_labels
from pipeline.training.samples import cut_samples


@dataclass
class TrainingRun:
    weights: Path
    accuracy: pd.DataFrame


def train_and_evaluate(cfg: Config, sensor: str, options: Training, out_dir: Path, console: Console | None = None) -> TrainingRun:
    console = console or Console()
    years = list(cfg.years)
    test_years = [y for y in options.test_years if y in years]
    train_years = [y for y in years if y not in test_years]
    if not train_years or not test_years:
        raise ValueError(f"training needs years to train on and held-out test years: years {years}, test_years {list(options.test_years)}")
    bands = REFLECTANCE_BANDS[sensor]
    # what can fail without pixels fails before the composites (on a real region: a season's downloads)
    truth_dir = Path(cfg.path(cfg.synthetic.path)) / "truth"
    if not truth_dir.is_dir():
        raise FileNotFoundError(f"no truth at {truth_dir} to score the held-out years against: `glacierwatch train` "
                                "needs a synthetic area's truth; to train for real scenes use `glacierwatch train-world`")
    inventory = None
    if options.labels != "truth":  # read as a run reads it (the analysis date picks a GLIMS analysis)
        inventory = read_inventory(cfg.inventory_path(), cfg.inventory.id_field, cfg.inventory.analysis_date(cfg.years),
                                   cfg.inventory.date_field)
        if not inventory.to_crs(4326).intersects(box(*cfg.region.bbox)).any():  # else it trains on empty labels, IoU 0
            raise ValueError(f"inventory {cfg.inventory_path()} has no outline in the region {list(cfg.region.bbox)}: "
                             "training.labels: inventory takes its labels from it; set inventory.path to the region's outlines")
    console.print(f"composites of {years[0]}-{years[-1]} ({sensor}) ...")
    cube = yearly_cube(cfg, sensor).compute()
    truth = truth_on_grid(truth_dir, cfg.grid(sensor), years)
    if options.labels == "truth":
        labels = truth_labels(truth)
    else:
        labels = program_labels(inventory, cube, cfg.grid(sensor), bands)
    if not labels.sel(year=train_years).any():
        raise ValueError(f"the {options.labels} labels of {train_years[0]}-{train_years[-1]} hold no glacier pixel on the "
                         f"{sensor} grid: a network trained on them maps no ice; check inventory.path and the region")
    samples = cut_samples(cube, labels, train_years, options.sample_size, options.crop_size)
    recipe = fit_normalisation(
        InputRecipe(bands=bands, indices=options.indices, terrain=options.terrain), zip(samples.reflectance, samples.terrain)
    )
    inputs = [recipe.build_inputs(r, t) for r, t in zip(samples.reflectance, samples.terrain)]
    described = (
        f"glacierwatch {sensor} composites {train_years[0]}-{train_years[-1]} over {cfg.region.name} "
        f"{list(cfg.region.bbox)}, {options.labels} labels, {len(samples)} samples of {samples.labels[0].shape[0]} px"
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
    )
    config = TrainingConfig.from_options(options)
    result = train(
        [i for i, _ in inputs], samples.labels, recipe, config, out_dir, valid=[v for _, v in inputs], training_data=described,
        domain=domain,
    )
    predictors = {options.architecture: TorchPredictor(result.model, recipe), "band_ratio": BandRatioPredictor(bands), "ndsi": NDSIPredictor(bands)}
    accuracy = accuracy_table(predictors, cube, truth, test_years, sensor)
    accuracy.to_csv(out_dir / "accuracy.csv", index=False)
    ours = accuracy[(accuracy.model == options.architecture)]
    metrics = {
        f"held_out_{zone}_{m}": float(ours[ours.zone == zone][m].mean()) for zone in ("all", "debris") for m in ("OA", "IoU", "F1")
    }
    metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}  # no debris in the test years: no debris score
    weights = out_dir / f"{sensor}-{options.architecture}.safetensors"
    save_weights(result.model, recipe, weights, training_data=described, seed=options.seed, metrics=metrics, domain=domain)
    shutil.copy(out_dir / "training_log.csv", out_dir / f"{sensor}-{options.architecture}.training_log.csv")
    return TrainingRun(weights, accuracy)
