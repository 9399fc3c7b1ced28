"""Cubes hold the COGs' values after each item's own scale and offset, on one grid across UTM zones."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.windows import Window

from catalog.cube import quality_cube, reflectance_cube
from catalog.grid import TargetGrid
from catalog.items import ItemError, normalize_items, reflectance_scale_offset
from catalog.providers import get_profile
from catalog.reads import SceneReadError
from catalog.scene_check import RegionError
from catalog.scenes import find_scenes
from catalog.search import open_source

PROFILE = get_profile("local")
SEASON = ("06-01", "09-30")


@pytest.fixture(scope="module")
def area(small_study_area):
    return small_study_area, open_source(str(small_study_area.catalog)), small_study_area.spec.bbox()


def _scene(area, sensor: str, year: int, epsg: int):
    sa, source, bbox = area
    items = find_scenes(source, PROFILE, sensor, bbox, year, SEASON, None)
    hits = [i for i in items if i.properties["proj:code"] == f"EPSG:{epsg}"]
    assert hits, f"no {sensor} {year} scene in EPSG:{epsg}"
    return hits[0], bbox


def _cog_values(href: str, xs: np.ndarray, ys: np.ndarray, epsg: int | None = None) -> np.ndarray:
    with rasterio.open(href) as ds:
        if epsg is not None and ds.crs.to_epsg() != epsg:
            xs, ys = Transformer.from_crs(epsg, ds.crs, always_xy=True).transform(xs, ys)
        rows, cols = (np.asarray(a) for a in rasterio.transform.rowcol(ds.transform, xs, ys))
        data = ds.read(1)
        inside = (rows >= 0) & (rows < ds.height) & (cols >= 0) & (cols < ds.width)
        out = np.zeros(rows.shape, data.dtype)  # 0 = nodata outside the scene
        out[inside] = data[rows[inside], cols[inside]]
        return out


def test_normalize_adds_proj_epsg_without_touching_the_callers_items(area):
    item, _ = _scene(area, "sentinel-2", 2021, 32644)
    assert "proj:epsg" not in item.properties
    (norm,) = normalize_items([item])
    assert norm.properties["proj:epsg"] == 32644
    assert "proj:epsg" not in item.properties and norm is not item


@pytest.mark.parametrize(
    ("sensor", "year", "epsg", "band", "res"),
    [
        ("sentinel-2", 2021, 32644, "B04", 10),  # baseline < 04.00: offset 0
        ("sentinel-2", 2021, 32645, "B11", 20),
        ("sentinel-2", 2022, 32644, "B11", 20),  # baseline 05.09: offset -0.1
        ("sentinel-2", 2022, 32645, "B04", 10),
        ("landsat", 2022, 32644, "nir08", 30),
        ("landsat", 2021, 32645, "swir16", 30),
    ],
)
def test_cube_pixels_equal_cog_values_after_scale_and_offset(area, sensor, year, epsg, band, res):
    item, bbox = _scene(area, sensor, year, epsg)
    grid = TargetGrid.from_lonlat_bbox(bbox, res, epsg=epsg)  # the scene's own zone: pixels align
    cube = reflectance_cube([item], PROFILE, sensor, grid).sel(band=band).isel(time=0)
    key = PROFILE.asset_key(sensor, band)
    so = reflectance_scale_offset(normalize_items([item])[0], sensor, key, PROFILE.scale_offset_rule(sensor))
    if sensor == "sentinel-2":
        # The embedded COGs carry +1000 DN from baseline 04.00 on and say so as Earth Search would
        # (earthsearch:boa_offset_applied false): the reader removes it.
        assert item.properties["earthsearch:boa_offset_applied"] is False
        assert so.offset == (-0.1 if year >= 2022 else 0.0) and so.rule == "earthsearch-flag"
    assert cube.attrs["scale_offset"][item.id] == so.record()
    rng = np.random.default_rng(0)
    rows = rng.integers(0, grid.shape[0], 400)
    cols = rng.integers(0, grid.shape[1], 400)
    got = cube.values[rows, cols]
    dn = _cog_values(item.assets[key].href, cube.x.values[cols], cube.y.values[rows])
    want = np.where(dn == 0, np.nan, dn.astype(np.float32) * np.float32(so.scale) + np.float32(so.offset))
    assert cube.dtype == np.float32
    assert (dn > 0).sum() > 100
    np.testing.assert_array_equal(got, want)


def test_scene_from_the_other_zone_is_warped_onto_the_grid(area):
    item, bbox = _scene(area, "sentinel-2", 2022, 32645)
    grid = TargetGrid.from_lonlat_bbox(bbox, 10, epsg=32644)
    scl = quality_cube([item], PROFILE, "sentinel-2", grid).isel(time=0).values
    refl = reflectance_cube([item], PROFILE, "sentinel-2", grid).sel(band="B04").isel(time=0).values
    X, Y = np.meshgrid(grid.transform.c + 5 + 10 * np.arange(grid.shape[1]), grid.transform.f - 5 - 10 * np.arange(grid.shape[0]))
    inside = scl > 0
    assert 0.2 < inside.mean() < 0.9  # the 45N tile covers the east part of the region only
    want = _cog_values(item.assets["scl"].href, X[inside], Y[inside], epsg=32644)
    assert (scl[inside] == want).mean() > 0.99  # nearest neighbour, up to GDAL's approximate transformer
    assert np.isfinite(refl[inside]).mean() > 0.99 and np.nanmin(refl) > -0.1


def test_both_zones_and_providers_map_to_canonical_bands(area):
    sa, source, bbox = area
    items = find_scenes(source, PROFILE, "sentinel-2", bbox, 2022, SEASON, None)
    grid = TargetGrid.from_lonlat_bbox(bbox, 10)
    cube = reflectance_cube(items, PROFILE, "sentinel-2", grid)
    assert list(cube.band.values) == ["B02", "B03", "B04", "B08", "B11", "B12"]
    assert cube.shape == (len(items), 6, *grid.shape) and cube.chunks is not None
    assert cube.attrs["crs"] == "EPSG:32644"
    # each look's sun, as its item states it (the generator's, like Earth Search's view:sun_*)
    want = [(i.properties["view:sun_azimuth"], i.properties["view:sun_elevation"]) for i in sorted(items, key=lambda i: i.datetime)]
    assert list(zip(cube.sun_azimuth.values, cube.sun_elevation.values)) == want
    assert all(40.0 < el < 65.0 for _, el in want)  # July-September at 43.8 N, mid-morning


def test_missing_asset_names_item_asset_and_provider(area):
    item, bbox = _scene(area, "sentinel-2", 2022, 32644)
    grid = TargetGrid.from_lonlat_bbox(bbox, 10)
    with pytest.raises(ItemError, match=rf"{item.id}.*'B04'.*planetary-computer"):
        reflectance_cube([item], get_profile("planetary-computer"), "sentinel-2", grid)


def test_an_item_missing_an_asset_is_skipped_with_a_record_or_refused(area):
    sa, source, bbox = area
    items = find_scenes(source, PROFILE, "sentinel-2", bbox, 2021, SEASON, None)
    grid = TargetGrid.from_lonlat_bbox(bbox, 10)
    lacking = items[0].clone()
    lacking.id = "NO_RED_BAND"
    del lacking.assets["red"]
    cube = reflectance_cube([lacking, *items], PROFILE, "sentinel-2", grid, on_unreadable="skip")
    assert "NO_RED_BAND" not in list(cube.id.values) and cube.sizes["time"] == len(items)
    (record,) = [s for s in cube.attrs["skipped_scenes"] if s["item_id"] == "NO_RED_BAND"]
    assert "missing asset(s) ['red']" in record["reason"]
    with pytest.raises(ItemError, match=r"NO_RED_BAND.*'red'"):
        reflectance_cube([lacking, *items], PROFILE, "sentinel-2", grid, on_unreadable="raise")


def test_unreadable_cog_is_named_or_skipped_with_a_record(area, tmp_path):
    sa, source, bbox = area
    good, _ = _scene(area, "sentinel-2", 2022, 32644)
    bad = good.clone()
    bad.id = "BROKEN_SCENE"
    broken = tmp_path / "red.tif"
    broken.write_bytes(b"not a tiff")
    bad.assets["red"].href = str(broken)
    grid = TargetGrid.from_lonlat_bbox(bbox, 10, epsg=32644)
    cube = reflectance_cube([good, bad], PROFILE, "sentinel-2", grid)
    with pytest.raises(SceneReadError, match=str(broken)):
        cube.sel(band="B04").compute()
    with pytest.warns(UserWarning, match="BROKEN_SCENE"):
        skipped = reflectance_cube([good, bad], PROFILE, "sentinel-2", grid, on_unreadable="skip")
    assert list(skipped.id.values) == [good.id]
    assert skipped.attrs["skipped_scenes"][0]["item_id"] == "BROKEN_SCENE"
    assert skipped.attrs["skipped_scenes"][0]["href"] == str(broken)


def test_region_outside_every_item_says_so(area):
    item, _ = _scene(area, "sentinel-2", 2022, 32644)
    far = TargetGrid.from_lonlat_bbox((80.0, 40.0, 80.1, 40.1), 10)
    with pytest.raises(RegionError, match="outside every one of the 1 items"):
        reflectance_cube([item], PROFILE, "sentinel-2", far)


def test_the_embedded_flag_means_what_earth_searchs_means(area):
    """boa_offset_applied true: the COG was written with the -1000 DN removed, so nothing is subtracted."""
    item, _ = _scene(area, "sentinel-2", 2022, 32644)
    item = normalize_items([item])[0]
    assert item.properties["s2:processing_baseline"] == "05.09"
    so = reflectance_scale_offset(item, "sentinel-2", "red", "earthsearch-flag")
    assert (so.scale, so.offset) == (1e-4, -0.1) and "false" in so.source
    item.properties["earthsearch:boa_offset_applied"] = True  # as on Earth Search's own 2022+ items
    so = reflectance_scale_offset(item, "sentinel-2", "red", "earthsearch-flag")
    assert (so.scale, so.offset) == (1e-4, 0.0) and "true" in so.source
    # Collection 1's rule reads raster:bands (-0.1 here); Planetary Computer's the baseline alone.
    assert reflectance_scale_offset(item, "sentinel-2", "red", "raster-bands").offset == -0.1
    assert reflectance_scale_offset(item, "sentinel-2", "red", "baseline").offset == -0.1


def test_offset_metadata_that_contradicts_the_baseline_is_warned_about(area):
    item, _ = _scene(area, "sentinel-2", 2022, 32644)
    item = normalize_items([item])[0]
    item.assets["red"].extra_fields["raster:bands"][0]["offset"] = 0.0
    with pytest.warns(UserWarning, match="disagrees with processing baseline"):
        so = reflectance_scale_offset(item, "sentinel-2", "red", "baseline")
    assert so.offset == -0.1 and so.rule == "baseline" and "05.09" in so.source


def test_an_item_without_a_baseline_is_refused_where_the_rule_needs_one(area):
    item, _ = _scene(area, "sentinel-2", 2022, 32644)
    item = normalize_items([item])[0]
    del item.properties["s2:processing_baseline"]
    with pytest.raises(ItemError, match=rf"{item.id}.*s2:processing_baseline.*earthsearch-flag"):
        reflectance_scale_offset(item, "sentinel-2", "red", "earthsearch-flag")


def test_a_landsat_7_scene_is_refused_by_name(area):
    item, bbox = _scene(area, "landsat", 2021, 32645)
    item = item.clone()
    item.properties["platform"] = "landsat-7"
    grid = TargetGrid.from_lonlat_bbox(bbox, 30)
    with pytest.raises(ItemError, match=rf"{item.id}.*'landsat-7'.*landsat-8, landsat-9"):
        reflectance_cube([item], PROFILE, "landsat", grid)


@pytest.mark.parametrize(("resolution", "zone"), [(10, 32644), (20, 32644), (10, 32645)])
def test_direct_and_gathered_reads_equal_stackstacs_masked_exact_warp(area, resolution, zone, monkeypatch):
    """The no-warp path for aligned assets (zone 44 on the zone-44 grid) gives exactly what stackstac's
    masked WarpedVRT read gives; the gather of the other zone's scene (catalog.gather_warp) what that
    read gives with GDAL's exact transformer (tolerance 1e-9 instead of its 0.125 px approximation),
    but for pixels whose source lies within the lattice's ~1e-6 px of a pixel edge (none here)."""
    import stackstac
    from stackstac.raster_spec import RasterSpec
    from stackstac.rio_reader import AutoParallelRioReader

    from catalog.cube import stack_assets
    from catalog.reads import ExplainingRioReader
    from catalog.scene_check import prepare_scene_items

    gathered = []
    read_gathered = ExplainingRioReader._read_gathered
    monkeypatch.setattr(
        ExplainingRioReader, "_read_gathered", lambda self, window: gathered.append(1) or read_gathered(self, window)
    )
    vrt_params = RasterSpec.vrt_params.func  # a cached_property
    monkeypatch.setattr(RasterSpec, "vrt_params", property(lambda self: {**vrt_params(self), "tolerance": 1e-9}))

    item, bbox = _scene(area, "sentinel-2", 2021, zone)
    grid = TargetGrid.from_lonlat_bbox(bbox, resolution, epsg=32644)
    prepared, _ = prepare_scene_items([item], PROFILE, "sentinel-2", grid)
    keys = ["red", "swir16", "scl"]
    ours = stack_assets(prepared, keys, grid, Resampling.nearest, np.uint16(0), 256).values
    warped = stackstac.stack(
        prepared, assets=keys, epsg=grid.epsg, resolution=grid.resolution, bounds=grid.bounds, snap_bounds=False,
        resampling=Resampling.nearest, chunksize=256, dtype=np.dtype("uint16"), fill_value=np.uint16(0),
        rescale=False, reader=AutoParallelRioReader,
    ).values
    assert (ours > 0).mean() > 0.5
    assert gathered or zone == grid.epsg  # the other zone is gathered (and a 10 m band onto the 20 m grid)
    if zone == grid.epsg:
        np.testing.assert_array_equal(ours, warped)
        return
    # GDAL's "exact" transformer still errs by up to a few thousandths of a pixel in places: where a
    # centre lies that close to a source pixel's edge it takes the neighbour; ours is the floor of PROJ's.
    differ = np.argwhere(ours != warped)
    assert len(differ) < 1e-4 * ours.size, len(differ)
    _, band, rows, cols = differ.T
    x, y = grid.transform * (cols + 0.5, rows + 0.5)
    sx = sy = None
    col, row = np.empty(len(differ)), np.empty(len(differ))
    for b, key in enumerate(keys):
        with rasterio.open(prepared[0].assets[key].href) as ds:
            if sx is None:
                sx, sy = (np.asarray(v) for v in Transformer.from_crs(grid.epsg, ds.crs, always_xy=True).transform(x, y))
            col[band == b], row[band == b] = ~ds.transform * (sx[band == b], sy[band == b])
    to_edge = np.minimum(np.abs(col - np.round(col)), np.abs(row - np.round(row)))
    assert (to_edge < 0.005).all(), to_edge.max()  # (which pixels varies with GDAL's state: none at times)


def test_a_direct_read_at_any_offset_repeats_each_coarse_pixel_k_by_k(tmp_path):
    """A 20 m band on a 10 m grid, its origin 1 grid row above and 3 columns right of the grid's
    (odd offsets), read in windows that start mid-pixel on either axis and run past its edge: each
    grid pixel holds the 20 m pixel under its centre, and a nodata equal to the fill value is kept
    as read."""
    import contextlib
    import types

    from affine import Affine

    from catalog.reads import ExplainingRioReader

    data = np.arange(1, 7 * 9 + 1, dtype=np.uint16).reshape(7, 9)
    path = tmp_path / "swir16.tif"
    with rasterio.open(path, "w", driver="GTiff", width=9, height=7, count=1, dtype="uint16", crs="EPSG:32644",
                       transform=Affine(20.0, 0, 500_030.0, 0, -20.0, 4_800_010.0), nodata=0) as ds:
        ds.write(data, 1)
    r0, c0 = -1, 3  # the asset's origin on the grid whose corner is (500,000, 4,800,000), 10 m pixels
    reader = object.__new__(ExplainingRioReader)
    reader.url, reader.fill_value, reader.dtype = str(path), np.uint16(0), np.dtype("uint16")
    reader.gdal_env = types.SimpleNamespace(read=contextlib.nullcontext())
    reader._direct = (r0, c0, 7, 9, 2, 0.0)
    rows, cols = (np.arange(40)[:, None] - r0) // 2, (np.arange(40)[None, :] - c0) // 2
    inside = (rows >= 0) & (rows < 7) & (cols >= 0) & (cols < 9)
    reference = np.where(inside, data[np.clip(rows, 0, 6), np.clip(cols, 0, 8)], 0)
    for row_off, col_off, h, w in [(0, 0, 40, 40), (3, 4, 9, 11), (2, 5, 20, 30), (10, 20, 30, 20)]:
        got = reader._read_direct(Window(col_off, row_off, w, h))
        np.testing.assert_array_equal(got, reference[row_off:row_off + h, col_off:col_off + w])


def test_the_reads_keep_no_gdal_block_cache():
    """rasterio sets GDAL_CACHEMAX in bytes: 64 is 64 bytes while a read runs (catalog.gdal_env), restored after."""
    from rasterio.env import get_gdal_config

    from catalog.gdal_env import GDAL_CACHE_BYTES, SCENE_READ_ENV

    before = get_gdal_config("GDAL_CACHEMAX")
    with SCENE_READ_ENV.read:
        assert get_gdal_config("GDAL_CACHEMAX") == GDAL_CACHE_BYTES == 64
    assert get_gdal_config("GDAL_CACHEMAX") == before


def test_a_season_crossing_the_new_year_keeps_its_december_in_the_next_year_s_time_chunk():
    """The composite finds a year's looks in one time chunk (no rechunk that reads ahead): 2022's southern
    summer is December 2021 to March 2022, one chunk; without a season, calendar years as before."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from catalog.cube import _year_chunks

    items = [SimpleNamespace(datetime=datetime(*d, tzinfo=UTC)) for d in
             [(2021, 12, 5), (2021, 12, 20), (2022, 1, 9), (2022, 3, 2), (2022, 12, 1), (2023, 2, 14)]]
    assert _year_chunks(items, ("12-01", "03-31")) == (4, 2)
    assert _year_chunks(items) == (2, 3, 1)
