"""The shipped weights on the default embedded area: the run's numbers against the truth.

One `run_study` of the default configuration (the README's first command, minus the report),
all years, both sensors, the shipped D-UNet weights. Checked: held-out accuracy (the years the
weights never saw), Sentinel-2 better than Landsat, the total-area trend within the truth's
uncertainty and the mean terminus retreat within the paper's ±2.36 m/a of the truth's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from pipeline.analysis import TRUTH
from pipeline.config import SHIPPED_WEIGHTS, load_config
from pipeline.model.weights import check_card, load_model
from pipeline.run import run_study

HELD_OUT = (2021, 2022)


@pytest.fixture(scope="module")
def default_run(study_area, run_client, tmp_path_factory):
    folder = tmp_path_factory.mktemp("default-run")
    cfg = load_config(None, synthetic={"path": str(study_area.root)})
    with open(folder / "log.txt", "w") as log:
        return run_study(cfg, folder / "out", client=run_client, console=Console(file=log, width=120), publish=False)


@pytest.mark.parametrize("sensor", ["sentinel-2", "landsat"])
def test_shipped_weights_load_without_unpickling_and_match_their_card(sensor):
    path = SHIPPED_WEIGHTS / f"{sensor}.safetensors"
    model, card = load_model(path)
    check_card(path, card)
    assert model.architecture == card.architecture
    assert card.weights_dtype == "float16" and path.stat().st_size < 9e6  # "a few MB": base 16 in fp16
    # trained on the world (and the embedded area), scored on held-out world scenes, calibrated
    assert card.domain.kind in ("world", "mixed") and "training world" in card.training_data and card.seed is not None
    assert "relative_elevation" in card.recipe.terrain and "elevation" not in card.recipe.terrain
    assert {"held_out_all_IoU", "held_out_debris_IoU", "calibration_temperature", "calibration_ece_after"} <= set(card.metrics)
    assert card.metrics["calibration_ece_after"] < card.metrics["calibration_ece_before"]
    assert json.loads((SHIPPED_WEIGHTS / f"{sensor}.json").read_text())["weights_sha256"] == card.weights_sha256


@pytest.mark.slow
def test_sentinel2_meets_the_accuracy_targets_on_held_out_years(default_run):
    acc = default_run.tables["accuracy"].query("zone == 'all' and year in @HELD_OUT").groupby("sensor")[["IoU", "OA"]].mean()
    assert acc.loc["sentinel-2", "IoU"] >= 0.90
    assert acc.loc["sentinel-2", "OA"] >= 0.97
    assert acc.loc["landsat", "IoU"] < acc.loc["sentinel-2", "IoU"]


@pytest.mark.slow
def test_area_trend_and_retreat_agree_with_the_truth(default_run):
    change = default_run.tables["area_change"]
    region = change[change.glacier_id.isna()].set_index("sensor")
    s2, truth = region.loc["sentinel-2"], region.loc[TRUTH]
    # the truth's trend lies inside the S2 trend's confidence interval
    assert s2.trend_lo_km2_a <= truth.trend_km2_a <= s2.trend_hi_km2_a
    retreat = default_run.tables["retreat"].query("method == 'main_axis' and year0 == 2016 and year1 == 2022")
    means = retreat.groupby("sensor").rate_m_a.mean()
    assert abs(means["sentinel-2"] - means[TRUTH]) <= 2.36


@pytest.mark.slow
def test_the_halo_on_the_sentinel2_card_makes_chunk_seams_invisible(small_study_area):
    """The card's measured halo_px (smaller than the D-UNet default) holds on another area and year."""
    import numpy as np

    from pipeline import inference
    from pipeline.model.predictor import TorchPredictor
    from pipeline.yearly_cube import yearly_cube

    weights = SHIPPED_WEIGHTS / "sentinel-2.safetensors"
    model, card = load_model(weights)
    assert card.halo_px is not None and card.halo_px <= inference.HALO_BY_ARCHITECTURE.get(card.architecture, inference.DEFAULT_HALO)
    cfg = load_config(None, synthetic={"path": str(small_study_area.root)}, region={"bbox": list(small_study_area.spec.bbox())})
    cube = yearly_cube(cfg, "sentinel-2", years=[2019], chunks=256).compute()
    whole = TorchPredictor(model, card.recipe, "cpu").predict(
        cube.reflectance.values[0], {t: cube[t].values for t in card.recipe.terrain_sources}
    )
    lazy = inference.probability_cube(cube.chunk({"y": 256, "x": 256}), weights, device="cpu")
    assert lazy.attrs["halo"] == card.halo_px
    assert len(lazy.chunks[1]) > 1 and len(lazy.chunks[2]) > 1  # seams are crossed
    mosaic = lazy.compute(scheduler="sync")
    m = card.halo_px
    inner = np.abs(mosaic.values[0] - whole)[m:-m, m:-m]
    assert inner.max() <= 1 / 255
