"""The shipped weights on the default embedded area: the run's numbers against the truth.

One `run_study` of the default configuration (the README's first command, minus the report),
all years, both sensors, the shipped weights. Checked against the generator's own numbers:
yearly region totals, glacier-year intervals, retreat; Sentinel-2 better than Landsat; the
total-area trend within the truth's uncertainty and the mean terminus retreat within the
paper's ±2.36 m/a of the truth's.
"""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from pipeline.config import SHIPPED_WEIGHTS, load_config
from pipeline.glaciers.analysis import TRUTH
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
def test_sentinel2_areas_and_retreat_match_the_generators_numbers(default_run, study_area):
    """Against what the generator set (truth/outlines.parquet, truth/glaciers.parquet), not the
    pipeline's own truth rows: the region total (as published, gap-filled) within +-2 % in every year (+0.01 to +0.21 % measured;
    2018 was -2.9 % (-4.5 % with the first fine-tuned network) before snow-covered accumulation areas kept the inventory's extent,
    pipeline.glaciers.accumulation: the network left 0.3 km2 of snowy upper glacier unmapped in the
    year of an early autumn snowfall; docs/composite.md), >= 90 % of
    glacier-years within 1.96 x their stated error (the paper's bound), the mean retreat error within +-0.5 m/a and
    >= 90 % of glaciers within +-2.36 m/a (Landsat: see below); Landsat's totals within +-2 % every year (-6.5 to -10 %
    before the Landsat network was retrained on twice the world, 2018 -2.55 % before the composite
    lit its looks alike)."""
    import geopandas as gpd
    import numpy as np
    from shapely.geometry import box

    cfg = load_config(None, synthetic={"path": str(study_area.root)})
    grid = cfg.grid("sentinel-2")
    known = gpd.read_parquet(study_area.root / "truth" / "outlines.parquet").to_crs(grid.epsg)
    known["true_km2"] = known.geometry.intersection(box(*grid.bounds)).area / 1e6
    true = known.groupby(["glacier_id", "year"]).true_km2.sum()
    areas = default_run.tables["areas"].set_index(["sensor", "glacier_id", "year"])
    published = default_run.tables["total_area"].set_index(["sensor", "year"]).area_km2
    bias = {}
    for sensor in ("sentinel-2", "landsat"):
        # the region total as published: a glacier-year under cloud counts with its own series' area, not its
        # mapped lower bound (Landsat 2021's three cloudy glaciers, one 98 % unseen at 0 km², read -2.3 % summed raw)
        t = true.reindex(areas.loc[sensor].index)
        totals = published.loc[sensor] / t.groupby("year").sum() - 1
        bias[sensor] = totals.abs()
    assert (bias["sentinel-2"] <= 0.02).all(), bias["sentinel-2"]
    assert (bias["landsat"] <= 0.02).all(), bias["landsat"]
    s2 = areas.loc["sentinel-2"]
    inside = (s2.area_km2 - true.reindex(s2.index)).abs() <= 1.96 * s2.area_err_km2
    assert inside.mean() >= 0.90, inside.mean()
    rates = gpd.read_parquet(study_area.root / "truth" / "glaciers.parquet").set_index("glacier_id").retreat_m_a
    check = default_run.tables["generator_check"].set_index(["sensor", "check"]).value  # what the run prints
    assert check[("sentinel-2", "region total bias, worst year (%)")] == pytest.approx(
        100 * bias["sentinel-2"].max() * np.sign(check[("sentinel-2", "region total bias, worst year (%)")]))
    # Both methods, both sensors: every glacier measured, mean error within +-0.5 m/a, >= 90 % within
    # +-2.36 m/a, and the run's printed check is this mean. Landsat's 30 m fronts at sub-pixel positions
    # (terminus.subpixel_positions), measured on the centre lines (terminus.front_lines), the box's area
    # from the same crossings (terminus.subpixel_area): main axis -0.13 m/a, box -0.20, both 97 % within
    # (the box's pixel-edge area read 87 %). Glacier 17 (520 m long, a pointed 30 m front) reads +9.5 /
    # +7.7; glacier 6 -2.1 / -2.2: a perennial snow patch on the rock its tongue uncovers is mapped as
    # ice joined to one side of the front.
    retreat = default_run.tables["retreat"].query("period == 'overall' and sensor != 'truth'")
    assert set(retreat.groupby(["sensor", "method"]).groups) == {(s, m) for s in ("sentinel-2", "landsat") for m in ("main_axis", "box")}
    for (sensor, method), table in retreat.groupby(["sensor", "method"]):
        error = (table.set_index("glacier_id").rate_m_a - rates).dropna()
        assert len(error) == len(rates), (sensor, method)
        assert abs(error.mean()) <= 0.5 and (error.abs() <= 2.36).mean() >= 0.90, (sensor, method, error.sort_values())
        assert check[(sensor, f"retreat {method}: mean error (m/a)")] == pytest.approx(error.mean())
    # and the pixels: held-out years, the whole grid (snow patches off the glaciers count against it)
    from pipeline.glaciers.summary import BASELINE_MODELS

    table = default_run.tables["accuracy"].query("year in @HELD_OUT")
    table = table.assign(model=table.model.where(table.model.isin(BASELINE_MODELS), "network"))
    iou = table.groupby(["sensor", "zone", "model"]).IoU.mean()
    acc = table[table.model == "network"].query("zone == 'all'").groupby("sensor")[["IoU", "OA"]].mean()
    assert acc.loc["sentinel-2", "IoU"] >= 0.80 and acc.loc["sentinel-2", "OA"] >= 0.97
    assert np.isfinite(acc.loc["landsat", "IoU"])
    # beside the baselines of the same composites: on debris-covered termini the network is >= 10 IoU
    # points above red/SWIR > 2 and NDSI > 0.4 (measured: S2 0.91 vs 0.24, Landsat 0.86 vs 0.46).
    # Persistence (last year's true outline) scores 0.98-0.99 here: the embedded area changes little
    # from one year to the next, which is why models are judged on held-out world scenes (#15).
    for sensor in ("sentinel-2", "landsat"):
        for baseline in ("band_ratio", "ndsi"):
            assert iou[(sensor, "debris", "network")] >= iou[(sensor, "debris", baseline)] + 0.10, iou
        assert iou[(sensor, "all", "persistence")] > 0.95
        # true ice in terrain shadow of its look has its own rows; the embedded area has little of it
        # (with the halo ~8,000 pixels a year at 10 m, ~3,900 at 30 m) and every map finds it
        # (measured: S2 network 0.995, NDSI 0.992, red/SWIR 0.988; Landsat 0.988, 0.980, 0.972)
        shadowed = table[(table.sensor == sensor) & (table.zone == "shadowed_ice")]
        assert set(shadowed.model) == set(table[table.sensor == sensor].model) and (shadowed.n_pixels > 0).all()
        assert iou[(sensor, "shadowed_ice", "network")] >= 0.90


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

    from pipeline.inference import region as inference
    from pipeline.inference.yearly_cube import yearly_cube
    from pipeline.model.predictor import TorchPredictor

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
