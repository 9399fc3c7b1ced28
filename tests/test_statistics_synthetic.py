"""Raster statistics and terminus retreat against the synthetic study area's truth."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr

from catalog.terrain import horn_aspect_deg
from pipeline.config import Analysis
from pipeline.glaciers.analysis import fixed_aspect
from pipeline.glaciers.change import terminus_change_uncertainty_m_a
from pipeline.glaciers.glacier_change import glacier_terminus
from pipeline.glaciers.rasterise import dem_on_grid, rasterize_inventory
from pipeline.glaciers.region_tables import change_table
from pipeline.glaciers.statistics import glacier_statistics
from pipeline.glaciers.terminus import Dem

YEARS = list(range(2016, 2023))


@pytest.fixture(scope="module")
def truth_grid(study_area):
    """Truth glacier ids per year, the DEM and aspect on their grid, the buffered inventory ids."""
    with rasterio.open(study_area.truth / "truth_2016.tif") as src:
        transform, shape, crs = src.transform, src.shape, src.crs
    ids = np.stack([rasterio.open(study_area.truth / f"truth_{y}.tif").read(1) for y in YEARS])
    dem = dem_on_grid(sorted((study_area.root / "cop-dem-glo-30").glob("*/data.tif")), transform, shape, crs)
    aspect = xr.DataArray(horn_aspect_deg(dem.values, 10.0, 10.0), dims=("y", "x"))
    inventory = gpd.read_parquet(study_area.inventory)
    gid = rasterize_inventory(inventory, transform, shape, crs, buffer_m=100.0)
    mask = xr.DataArray(ids > 0, dims=("year", "y", "x"), coords={"year": YEARS, "y": dem.y, "x": dem.x})
    return {"ids": ids, "mask": mask, "glacier_id": gid, "dem": dem, "aspect": aspect,
            "transform": transform, "crs": crs}


def test_every_truth_glacier_pixel_falls_in_its_own_buffered_inventory_id(truth_grid):
    ids, gid = truth_grid["ids"], truth_grid["glacier_id"].values
    assert ((ids > 0) & (ids != gid[None])).sum() == 0


def test_lazy_windowed_inventory_raster_equals_the_whole_grid_one(study_area, truth_grid):
    gid = truth_grid["glacier_id"]
    lazy = rasterize_inventory(gpd.read_parquet(study_area.inventory), truth_grid["transform"],
                               gid.shape, truth_grid["crs"], buffer_m=100.0, chunks=300)
    np.testing.assert_array_equal(lazy.values, gid.values)


def test_areas_and_perimeters_are_exact_to_the_pixel_and_independent_of_chunks(study_area, truth_grid):
    t = truth_grid
    whole = glacier_statistics(t["mask"], t["glacier_id"], t["dem"], t["aspect"], sensor="truth")
    chunked = glacier_statistics(t["mask"].chunk({"year": 2, "y": 256, "x": 384}), t["glacier_id"],
                                 t["dem"], t["aspect"], sensor="truth")
    for name in whole:
        pd.testing.assert_frame_equal(whole[name], chunked[name], check_exact=False, rtol=1e-12)
    areas = whole["areas"]
    counts = np.array([np.bincount(t["ids"][k].ravel(), minlength=areas.glacier_id.max() + 1)
                       for k in range(len(YEARS))])
    pixels = counts[:, areas.glacier_id.unique()].ravel()
    np.testing.assert_array_equal(np.rint(areas["area_km2"].to_numpy() / 1e-4), pixels)
    np.testing.assert_allclose(areas["area_km2"], pixels * 1e-4, rtol=1e-15, atol=0)
    outlines = gpd.read_parquet(study_area.truth / "outlines.parquet")
    both = areas.merge(outlines.assign(length_km=outlines.length / 1000.0), on=["glacier_id", "year"])
    assert len(both) == len(outlines) == len(areas)
    np.testing.assert_allclose(both["area_km2_x"], both["area_km2_y"], rtol=0, atol=1e-9)
    # the edge-count perimeter is the perimeter of the pixel-exact (vectorised) outline
    np.testing.assert_allclose(both["perimeter_km"], both["length_km"], rtol=0, atol=1e-6)
    # bands and pixel-aspect sectors partition the area (no DEM voids over these glaciers)
    total = areas.groupby("year")["area_km2"].sum()
    np.testing.assert_allclose(whole["area_by_band"].groupby("year")["area_km2"].sum(), total, rtol=1e-9)
    by_aspect = whole["area_by_aspect"].groupby(["method", "year"])["area_km2"].sum()
    np.testing.assert_allclose(by_aspect["glacier"], total, rtol=1e-9)
    assert (by_aspect["pixel"] <= total + 1e-9).all() and (by_aspect["pixel"] > 0.99 * total).all()
    # total change and trend: the massif loses area every year
    ch = change_table(areas)
    tot = ch[ch["glacier_id"].isna()].iloc[0]
    assert tot["change_km2"] == pytest.approx(total[2022] - total[2016])
    assert tot["trend_hi_km2_a"] < 0


def test_fixed_aspect_sector_of_the_inventory_matches_the_true_flow_direction(study_area, truth_grid):
    """The sector the pipeline uses (`analysis.fixed_aspect`: the inventory zone over the DEM,
    one per glacier for every year) against the generator's flow direction."""
    t = truth_grid
    fixed = fixed_aspect(t["glacier_id"], t["aspect"])
    true = gpd.read_parquet(study_area.truth / "glaciers.parquet")[["glacier_id", "aspect_deg", "aspect_sector"]]
    both = fixed.merge(true, on="glacier_id", suffixes=("", "_true"))
    assert len(both) == len(true)
    diff = (both["aspect_deg"] - both["aspect_deg_true"] + 180.0) % 360.0 - 180.0
    print(f"\nfixed sector = generator's for {(both.aspect_sector == both.aspect_sector_true).mean():.0%}; "
          f"largest direction error {np.abs(diff).max():.1f}°")
    assert np.abs(diff).max() < 25.0
    assert (both["aspect_sector"] == both["aspect_sector_true"]).mean() >= 0.9


def retreat_vs_generator(study_area, dem: Dem, analysis: Analysis) -> pd.DataFrame:
    """2016-2022 retreat rates of the pipeline's terminus task (`glacier_change.glacier_terminus`,
    the code `run` and `stats` share) on the generator's yearly true outlines, against the
    generator's own rates (truth/glaciers.parquet), both methods."""
    outlines = gpd.read_parquet(study_area.truth / "outlines.parquet")
    true = gpd.read_parquet(study_area.truth / "glaciers.parquet").set_index("glacier_id")
    inventory = gpd.read_parquet(study_area.inventory).to_crs(outlines.crs).set_index("glacier_id").geometry
    rows = []
    for gid, grp in outlines.groupby("glacier_id"):  # per-glacier work, as OGGM maps it
        geoms = {pd.Timestamp(int(y), 1, 1): g for y, g in zip(grp["year"], grp.geometry, strict=True)}
        _, retreat = glacier_terminus(gid, geoms, dem, pixel_size_m=10.0, analysis=analysis, inventory=inventory.get(gid))
        for r in retreat:
            if r["period"] == "overall":
                rows.append({"glacier_id": gid, "method": r["method"], "rate_m_a": r["rate_m_a"],
                             "n_lines": r["n_lines"], "true_m_a": true.at[gid, "retreat_m_a"],
                             "debris": bool(true.at[gid, "debris_covered"])})
    out = pd.DataFrame(rows)
    out["error_m_a"] = out["rate_m_a"] - out["true_m_a"]
    return out


def test_terminus_retreat_2016_2022_against_the_generators_rates(study_area, truth_grid):
    """Both methods with the config's default statistic (mean over the front lines): unbiased
    (mean error within ±0.5 m/a) and within the paper's ±2.36 m/a for 90 % of the glaciers,
    debris-covered ones included. Measured (seed 42, 31 glaciers, front lines within 30° of the
    axis): main-axis -0.45 m/a, box -0.38 m/a, all glaciers within ±2.36 (the median over the
    lines: -0.50 m/a); before the front-line rule the mean over the whole tongue read -1.44 m/a
    and the box -1.72 m/a. What is left is the short, round glaciers whose DEM axis is 10-15°
    off their flow."""
    statistic = Analysis().terminus_statistic
    t = truth_grid
    dem = Dem(t["dem"].values.astype(float), t["transform"], str(t["crs"]))
    tol = float(terminus_change_uncertainty_m_a(10.0, 10.0, 6.0, "variant"))
    assert tol == pytest.approx(2.36, abs=0.005)
    res = retreat_vs_generator(study_area, dem, Analysis(terminus_statistic=statistic))
    assert res.glacier_id.nunique() == 31 and res.debris.any()
    for method, r in res.groupby("method"):
        within = (r["error_m_a"].abs() <= tol).mean()
        print(f"\n{statistic} {method}: mean error {r.error_m_a.mean():+.2f} m/a, within ±{tol:.2f}: {within:.0%}, "
              f"debris-covered mean error {r[r.debris].error_m_a.mean():+.2f} m/a")
        assert abs(r["error_m_a"].mean()) <= 0.5
        assert within >= 0.9
