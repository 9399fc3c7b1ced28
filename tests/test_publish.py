"""Publishing outputs: mask COGs equal the store, the STAC catalog validates, is searchable, and is replaced whole."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pystac
import pytest
import rasterio
import xarray as xr
from rio_cogeo.cogeo import cog_validate
from shapely.geometry import box

from catalog.grid import TargetGrid
from catalog.search import LocalCatalogSource, SceneQuery
from pipeline.outputs.glacier_masks import MASK_NODATA, NO_ICE, PublishError, deferred_mask_tiles, write_glacier_masks
from pipeline.outputs.publish import COLLECTION_ID, publish_catalog
from pipeline.store import RegionStore, Unit

S2 = TargetGrid(32644, 10.0, (500040.0, 4700040.0, 500680.0, 4700680.0))  # 64 x 64 px
LANDSAT = TargetGrid(32644, 30.0, (500040.0, 4700020.0, 500700.0, 4700680.0))  # 22 x 22 px
GRIDS = {"sentinel-2": S2, "landsat": LANDSAT}
YEARS = {"sentinel-2": [2016, 2017, 2018], "landsat": [2017, 2018]}
CHUNK = 16  # landsat: 2 x 2 units, the edge ones 6 px
PENDING = Unit("landsat", 2018, 1, 0)  # never written: its pixels are not a result
WEIGHTS = {"sentinel-2": "a" * 64, "landsat": "b" * 64}
SEASON = {"start": "06-15", "end": "10-15"}


def probability(sensor: str, year: int) -> np.ndarray:
    """A glacier disc shrinking by year plus noise, uint8 0-255, with values either side of 128."""
    ny, nx = GRIDS[sensor].shape
    yy, xx = np.mgrid[:ny, :nx]
    r = np.hypot(yy - ny / 2, xx - nx / 2) / (ny / 2)
    p = np.clip(1.2 - r * (1 + 0.1 * (year - 2016)), 0, 1)
    rng = np.random.default_rng(year * 7 + len(sensor))
    return np.clip(p * 255 + rng.normal(0, 20, p.shape), 0, 255).astype(np.uint8)


CLOUD = ("sentinel-2", 2017, slice(10, 20), slice(40, 50))  # never seen that year: no data, not "no glacier"


def observed(sensor: str, year: int) -> np.ndarray:
    """Clear looks per pixel: 3, but 0 under CLOUD."""
    obs = np.full(GRIDS[sensor].shape, 3, np.uint8)
    if (sensor, year) == CLOUD[:2]:
        obs[CLOUD[2], CLOUD[3]] = 0
    return obs


def expected_mask(store: RegionStore, sensor: str, year: int, threshold: int = 128) -> np.ndarray:
    ds = store.open_dataset(sensor)
    stored = ds.probability.sel(year=year).values
    mask = (stored >= threshold).astype(np.uint8)
    mask[ds.observed.sel(year=year).values == 0] = MASK_NODATA
    for unit in store.pending_units(sensor, [year]):
        mask[store.unit_window(unit)] = MASK_NODATA
    return mask


def build_store(url: str) -> RegionStore:
    store = RegionStore.create(url, GRIDS, weights_sha256=WEIGHTS, chunk_size=CHUNK)
    for sensor, years in YEARS.items():
        for year in years:
            scenes = [f"{sensor}-{year}-{i}" for i in range(year - 2014)]
            store.add_year(sensor, year, scene_ids=scenes, config_hash=f"cfg{year}")
            p, obs = probability(sensor, year), observed(sensor, year)
            for unit in store.units(sensor, year):
                if unit != PENDING:
                    store.write_unit(unit, p[store.unit_window(unit)], observed=obs[store.unit_window(unit)])
    return store


@pytest.fixture(scope="module")
def run_out(tmp_path_factory) -> dict:
    """A run's output folder: store, masks, outlines, tables, report (no catalog yet)."""
    out = tmp_path_factory.mktemp("run")
    store = build_store(str(out / "store.zarr"))
    masks = write_glacier_masks(store.url, out / "masks")
    outlines = gpd.GeoDataFrame(
        {"glacier_id": [1, 1, 1], "sensor": ["sentinel-2", "sentinel-2", "landsat"], "year": [2016, 2017, 2017]},
        geometry=[box(500100, 4700100, 500300, 4700300)] * 3,
        crs=32644,
    )
    outlines.to_parquet(out / "outlines.parquet")
    (out / "tables").mkdir()
    tables = {}
    for name in ("total_area", "area_change"):
        tables[name] = out / "tables" / f"{name}.parquet"
        pd.DataFrame({"sensor": ["sentinel-2"], "year": [2016], "area_km2": [0.3]}).to_parquet(tables[name])
    (out / "report").mkdir()
    (out / "report" / "index.html").write_text("<html><body>report</body></html>")
    weights = {s: {"sha256": w, "architecture": {"sentinel-2": "unet", "landsat": "dunet"}[s]} for s, w in WEIGHTS.items()}
    provenance = {"config_hash": "c" * 16, "version": "0.1.0", "season": SEASON, "weights": weights}
    return {
        "out": out, "store": store, "masks": masks, "outlines": out / "outlines.parquet", "tables": tables,
        "report": out / "report" / "index.html", "provenance": provenance,
    }


def publish(run_out: dict, folder: str = "stac", **changes) -> Path:
    kwargs = {k: run_out[k] for k in ("masks", "outlines", "tables", "report", "provenance")}
    return publish_catalog(run_out["out"] / folder, store_url=run_out["store"].url, **{**kwargs, **changes})


@pytest.fixture(scope="module")
def published(run_out) -> Path:
    return publish(run_out)


def items_by_year(catalog_json: Path) -> dict[int, pystac.Item]:
    catalog = pystac.Catalog.from_file(str(catalog_json))
    return {item.properties["glacierwatch:year"]: item for item in catalog.get_items(recursive=True)}


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- masks ------------------------------------------------------------------------------------


def test_one_valid_cog_per_sensor_and_year_equal_to_the_thresholded_store(run_out):
    store, masks = run_out["store"], run_out["masks"]
    assert sorted(masks) == sorted((s, y) for s, years in YEARS.items() for y in years)
    for (sensor, year), path in masks.items():
        assert path == run_out["out"] / "masks" / sensor / f"glacier_mask_{sensor}_{year}.tif"
        valid, errors, _ = cog_validate(str(path), quiet=True)
        assert valid, errors
        grid = GRIDS[sensor]
        with rasterio.open(path) as ds:
            assert ds.crs.to_epsg() == grid.epsg and ds.shape == grid.shape
            assert ds.transform.almost_equals(grid.transform)
            assert ds.dtypes == ("uint8",) and ds.nodata == MASK_NODATA
            assert ds.block_shapes == [(512, 512)]
            assert ds.profile["compress"] == "deflate"
            values = ds.read(1)
        expected = expected_mask(store, sensor, year)
        np.testing.assert_array_equal(values, expected)
        ones = int((values == 1).sum())
        assert 0 < ones < values.size  # the disc and its outside both present


def test_pixels_no_look_saw_are_nodata_not_bare_ground(run_out):
    """A cloud gap's probability is the network's 0 over no data: the mask published it as 0, "not
    glacier", though its band said 255 was what is not computed (a helper opening the Landsat 2021
    mask of the embedded area found its 6,994 unobserved pixels all 0)."""
    sensor, year, rows, cols = CLOUD
    with rasterio.open(run_out["masks"][(sensor, year)]) as ds:
        values, valid = ds.read(1), ds.read_masks(1)
        assert "no data (not observed" in ds.descriptions[0]
    assert (values[rows, cols] == MASK_NODATA).all() and not valid[rows, cols].any()
    assert (probability(sensor, year)[rows, cols] >= 128).any()  # some of it would have read as ice
    assert (values != MASK_NODATA).sum() == values.size - 100


def test_unfinished_store_units_are_nodata_not_bare_ground(run_out):
    with rasterio.open(run_out["masks"][("landsat", 2018)]) as ds:
        values = ds.read(1)
        valid = ds.read_masks(1)
    ys, xs = run_out["store"].unit_window(PENDING)
    assert (values[ys, xs] == MASK_NODATA).all() and (valid[ys, xs] == 0).all()
    outside = np.ones(values.shape, bool)
    outside[ys, xs] = False
    assert set(np.unique(values[outside])) == {0, 1}


def test_threshold_is_the_one_asked_for(run_out, tmp_path):
    masks = write_glacier_masks(run_out["store"].url, tmp_path, threshold=200)
    with rasterio.open(masks[("sentinel-2", 2017)]) as ds:
        values = ds.read(1)
    np.testing.assert_array_equal(values, expected_mask(run_out["store"], "sentinel-2", 2017, threshold=200))
    assert (values == 1).sum() < (expected_mask(run_out["store"], "sentinel-2", 2017) == 1).sum()
    with pytest.raises(PublishError, match="outside 1-255"):
        write_glacier_masks(run_out["store"].url, tmp_path, threshold=0)


def test_masks_made_in_the_statistics_read_equal_those_read_from_the_store(run_out, tmp_path):
    """The tiles of a pass over the maps (16 px chunks, landsat's edge ones 6 px, one unit never
    written) give byte-identical mask values; tiles that do not fit are refused before any file."""
    store = run_out["store"]
    tiles = {s: deferred_mask_tiles(store.open_dataset(s).probability, 128, store.open_dataset(s).observed).compute() for s in YEARS}
    assert tiles["landsat"].row_edges == (0, 16, 22) and tiles["landsat"].tiles.shape == (2, 2, 2)
    held = [t for made in tiles.values() for t in made.tiles.ravel()]
    assert NO_ICE in held and any(t != NO_ICE for t in held)  # tiles without ice hold nothing; both kinds are compared below
    masks = write_glacier_masks(store.url, tmp_path / "from-tiles", tiles=tiles)
    assert sorted(masks) == sorted(run_out["masks"])
    for key, path in masks.items():
        with rasterio.open(path) as ours, rasterio.open(run_out["masks"][key]) as read:
            np.testing.assert_array_equal(ours.read(1), read.read(1))
    with pytest.raises(PublishError, match="made at threshold 128"):
        write_glacier_masks(store.url, tmp_path / "refused", threshold=200, tiles=tiles)
    with pytest.raises(PublishError, match="landsat mask tiles .* on \\(64, 64\\) px"):  # S2's tiles for landsat
        write_glacier_masks(store.url, tmp_path / "refused", tiles={"landsat": tiles["sentinel-2"]})
    assert not (tmp_path / "refused").exists()


def test_a_grid_larger_than_a_tile_gets_512_px_tiles_and_categorical_overviews(tmp_path):
    grid = TargetGrid(32644, 10.0, (500000.0, 4700000.0, 511600.0, 4711000.0))  # 1100 x 1160 px
    store = RegionStore.create(str(tmp_path / "store.zarr"), {"sentinel-2": grid}, weights_sha256="a" * 64, chunk_size=600)
    store.add_year("sentinel-2", 2020, scene_ids=["a"], config_hash="c")
    ny, nx = grid.shape
    yy, xx = np.mgrid[:ny, :nx]
    disc = (np.hypot(yy - 500, xx - 600) < 300).astype(np.uint8) * 255
    store.write_probability("sentinel-2", 2020, disc, scheduler="synchronous")
    path = write_glacier_masks(store.url, tmp_path / "masks")[("sentinel-2", 2020)]
    valid, errors, _ = cog_validate(str(path), quiet=True)
    assert valid, errors
    with rasterio.open(path) as ds:
        assert ds.block_shapes == [(512, 512)]
        assert ds.overviews(1) == [2, 4]  # halved until it fits one tile
        full = ds.read(1)
        overview = ds.read(1, out_shape=(ny // 2, nx // 2))
    assert set(np.unique(overview)) == {0, 1}  # classes, not blends
    assert abs(overview.mean() - full.mean()) < 0.005


# -- catalog ----------------------------------------------------------------------------------


def test_catalog_collection_and_items_validate_against_core_and_extension_schemas(published, stac_schemas):
    catalog = pystac.Catalog.from_file(str(published))
    assert catalog.validate_all() == len(YEARS["sentinel-2"])
    collection = catalog.get_child(COLLECTION_ID)
    assert pystac.extensions.projection.ProjectionExtension.get_schema_uri() in collection.stac_extensions  # summaries' proj:code
    assert collection.validate()
    for item in collection.get_items():
        assert item.validate()
        assert pystac.extensions.projection.ProjectionExtension.get_schema_uri() in item.stac_extensions
        assert pystac.extensions.raster.RasterExtension.get_schema_uri() in item.stac_extensions


def test_one_item_per_year_with_each_sensors_assets_on_its_grid(published, run_out):
    items = items_by_year(published)
    assert sorted(items) == [2016, 2017, 2018]
    for year, item in items.items():
        sensors = [s for s in sorted(GRIDS) if year in YEARS[s]]
        assert item.id == f"glacierwatch-{year}" and item.collection_id == COLLECTION_ID
        assert set(item.assets) == {"outlines", *(f"{k}-{s}" for s in sensors for k in ("probability", "mask"))}
        assert item.properties["glacierwatch:sensors"] == sensors
        assert item.properties["glacierwatch:weights_sha256"] == {s: WEIGHTS[s] for s in sensors}
        assert item.properties["glacierwatch:scene_count"] == {s: year - 2014 for s in sensors}
        assert item.properties["glacierwatch:config_hash"] == {s: f"cfg{year}" for s in sensors}
        start, end = item.common_metadata.start_datetime, item.common_metadata.end_datetime
        assert start == dt.datetime(year, 6, 15, tzinfo=dt.UTC)
        assert end == dt.datetime(year, 10, 15, 23, 59, 59, tzinfo=dt.UTC)
        for sensor in sensors:
            grid = GRIDS[sensor]
            for key in ("probability", "mask"):
                asset = item.assets[f"{key}-{sensor}"]
                assert asset.extra_fields["proj:code"] == f"EPSG:{grid.epsg}"
                assert asset.extra_fields["proj:shape"] == list(grid.shape)
                assert asset.extra_fields["proj:transform"] == list(grid.transform)[:6]
                assert asset.roles == ["data"]
            mask = item.assets[f"mask-{sensor}"]
            assert mask.media_type == pystac.MediaType.COG
            assert mask.extra_fields["raster:bands"][0]["nodata"] == MASK_NODATA
            assert mask.extra_fields["raster:bands"][0]["data_type"] == "uint8"
            assert mask.extra_fields["glacierwatch:threshold"] == 128
            assert item.assets[f"probability-{sensor}"].media_type == "application/vnd+zarr"
        assert item.assets["outlines"].extra_fields["glacierwatch:filter"] == f"year == {year}"
        outlines = gpd.read_parquet(item.assets["outlines"].get_absolute_href())
        rows = outlines.query(item.assets["outlines"].extra_fields["glacierwatch:filter"])
        assert len(rows) == {2016: 1, 2017: 2, 2018: 0}[year]


def test_every_href_is_relative_and_resolves_to_the_output_it_names(published, run_out):
    out = run_out["out"]
    jsons = list(published.parent.rglob("*.json"))
    assert len(jsons) == 1 + 1 + 3 + 1  # catalog, collection, items, provenance
    for path in jsons:
        doc = json.loads(path.read_text())
        if "stac_version" not in doc:
            continue
        assert not any(link["rel"] == "self" for link in doc["links"])
        for link in doc["links"]:
            if link["rel"] == "license":  # the Sentinel legal notice: the one link outside the outputs
                assert link["href"].startswith("https://")
                continue
            assert not link["href"].startswith("/") and (path.parent / link["href"]).resolve().is_file()
        for asset in doc.get("assets", {}).values():
            assert "://" not in asset["href"] and not asset["href"].startswith("/"), asset["href"]
            assert (path.parent / asset["href"]).exists(), asset["href"]
    item = items_by_year(published)[2017]
    assert Path(item.assets["mask-landsat"].get_absolute_href()) == run_out["masks"][("landsat", 2017)]
    assert Path(item.assets["outlines"].get_absolute_href()) == out / "outlines.parquet"
    assert Path(item.assets["probability-landsat"].get_absolute_href()) == out / "store.zarr" / "landsat"


def test_probability_asset_opens_as_the_store_group_at_the_stated_year_index(published, run_out):
    asset = items_by_year(published)[2018].assets["probability-sentinel-2"]
    ds = xr.open_zarr(asset.get_absolute_href(), consolidated=False)
    index = asset.extra_fields["glacierwatch:year_index"]
    assert index == 2 and int(ds.year[index]) == 2018
    np.testing.assert_array_equal(ds.probability[index].values, probability("sentinel-2", 2018))


def test_collection_holds_extent_sensors_tables_report_and_provenance(published, run_out):
    collection = pystac.Catalog.from_file(str(published)).get_child(COLLECTION_ID)
    assert collection.license == "other"
    # the networks that ran, as provenance records them (it said "D-UNet" whatever ran)
    assert "landsat: D-UNet (deformable blocks at every level), sentinel-2: U-Net" in collection.description
    # the sources' credits, and the Copernicus licence's legal notice as the licence link
    assert "Contains modified Copernicus Sentinel data 2016-2018." in collection.description
    assert "Landsat data courtesy of the U.S. Geological Survey." in collection.description
    assert [link.target for link in collection.get_links("license")] == [
        "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice"]
    assert collection.summaries.get_list("glacierwatch:sensors") == ["landsat", "sentinel-2"]
    west, south, east, north = collection.extent.spatial.bboxes[0]
    for grid in GRIDS.values():
        w, s, e, n = grid.lonlat_bounds()
        assert west <= w and south <= s and east >= e and north >= n
    assert collection.extent.temporal.intervals[0] == [
        dt.datetime(2016, 6, 15, tzinfo=dt.UTC), dt.datetime(2018, 10, 15, 23, 59, 59, tzinfo=dt.UTC)]
    assert set(collection.assets) == {"table-total_area", "table-area_change", "report", "provenance"}
    for name, path in run_out["tables"].items():
        asset = collection.assets[f"table-{name}"]
        assert Path(asset.get_absolute_href()) == path and asset.media_type == "application/vnd.apache.parquet"
    assert collection.assets["report"].media_type == "text/html" and collection.assets["report"].roles == ["overview"]
    stored = json.loads(Path(collection.assets["provenance"].get_absolute_href()).read_text())
    assert stored == run_out["provenance"]
    assert Path(collection.assets["provenance"].get_absolute_href()).parent == published.parent


def test_outputs_are_found_by_year_and_bbox_with_the_input_search(published, run_out):
    source = LocalCatalogSource(published)
    lon, lat = S2.lonlat_polygon().centroid.coords[0]
    bbox = (lon - 0.001, lat - 0.001, lon + 0.001, lat + 0.001)
    day = dt.datetime(2017, 8, 1, tzinfo=dt.UTC)
    hits = source.search(SceneQuery(COLLECTION_ID, bbox, day, day))
    assert [i.id for i in hits] == ["glacierwatch-2017"]
    later = SceneQuery(COLLECTION_ID, bbox, dt.datetime(2019, 1, 1, tzinfo=dt.UTC), dt.datetime(2019, 12, 31, tzinfo=dt.UTC))
    assert source.search(later) == []
    assert source.search(SceneQuery(COLLECTION_ID, (lon + 1, lat, lon + 1.01, lat + 0.01), day, day)) == []
    with rasterio.open(hits[0].assets["mask-sentinel-2"].href) as ds:
        assert ds.crs.to_epsg() == S2.epsg and ds.shape == S2.shape
        ones = int((ds.read(1) == 1).sum())
    ds = run_out["store"].open_dataset("sentinel-2").sel(year=2017)
    assert ones == int(((ds.probability >= 128) & (ds.observed > 0)).sum())  # CLOUD is no data


def test_season_defaults_to_july_to_september(run_out):
    catalog = publish(run_out, "stac-default-season", provenance={})
    item = items_by_year(catalog)[2016]
    assert item.common_metadata.start_datetime == dt.datetime(2016, 7, 1, tzinfo=dt.UTC)
    assert item.common_metadata.end_datetime == dt.datetime(2016, 9, 30, 23, 59, 59, tzinfo=dt.UTC)
    with pytest.raises(PublishError, match="MM-DD"):
        publish(run_out, "stac-bad-season", provenance={"season": {"start": "07-01", "end": "09-31"}})
    assert not (run_out["out"] / "stac-bad-season").exists()


def test_a_season_crossing_the_new_year_dates_each_item_from_the_year_before(run_out):
    """2016's southern summer 12-01..03-31 is 2015-12-01..2016-03-31: the item and the collection say so."""
    catalog = publish(run_out, "stac-south", provenance={"season": {"start": "12-01", "end": "03-31"}})
    items = items_by_year(catalog)
    assert items[2016].common_metadata.start_datetime == dt.datetime(2015, 12, 1, tzinfo=dt.UTC)
    assert items[2016].common_metadata.end_datetime == dt.datetime(2016, 3, 31, 23, 59, 59, tzinfo=dt.UTC)
    collection = next(pystac.Catalog.from_file(str(catalog)).get_children())
    last = max(items)
    assert collection.extent.temporal.intervals == [[dt.datetime(2015, 12, 1, tzinfo=dt.UTC),
                                                     dt.datetime(last, 3, 31, 23, 59, 59, tzinfo=dt.UTC)]]


# -- replacing ----------------------------------------------------------------------------------


def test_rerun_replaces_the_catalog_whole(run_out):
    first = publish(run_out, "stac-rerun")
    (first.parent / "stray.txt").write_text("left by hand")
    second = publish(run_out, "stac-rerun", tables={"total_area": run_out["tables"]["total_area"]}, report=None)
    assert second == first
    collection = pystac.Catalog.from_file(str(second)).get_child(COLLECTION_ID)
    assert set(collection.assets) == {"table-total_area", "provenance"}
    assert not (second.parent / "stray.txt").exists()
    assert not [p.name for p in run_out["out"].iterdir() if p.name.startswith(".stac-rerun")]


def test_failure_mid_publish_leaves_the_previous_catalog_untouched(run_out, monkeypatch):
    catalog = publish(run_out, "stac-failure")
    before = tree_bytes(catalog.parent)
    writes = []
    real_write = pystac.stac_io.DefaultStacIO.write_text_to_href

    def failing_write(self, href, txt):
        writes.append(href)
        if len(writes) == 3:
            raise OSError("disk full")
        real_write(self, href, txt)

    monkeypatch.setattr(pystac.stac_io.DefaultStacIO, "write_text_to_href", failing_write)
    with pytest.raises(OSError, match="disk full"):
        publish(run_out, "stac-failure", provenance={**run_out["provenance"], "config_hash": "changed"})
    assert len(writes) == 3  # it failed part-way, with two documents already written
    assert tree_bytes(catalog.parent) == before
    assert not [p.name for p in run_out["out"].iterdir() if p.name.startswith(".stac-failure")]


def test_inputs_that_would_break_the_catalog_are_refused(run_out, tmp_path):
    inside = run_out["out"] / "stac-refused" / "mask.tif"
    inside.parent.mkdir()
    inside.write_bytes(run_out["masks"][("landsat", 2017)].read_bytes())
    with pytest.raises(PublishError, match="inside the catalog folder"):
        publish(run_out, "stac-refused", masks={("landsat", 2017): inside})
    with pytest.raises(PublishError, match="does not hold"):
        publish(run_out, "stac-refused", masks={("landsat", 2016): run_out["masks"][("landsat", 2017)]})
    with pytest.raises(PublishError, match="not on the store's grid"):
        publish(run_out, "stac-refused", masks={("landsat", 2017): run_out["masks"][("sentinel-2", 2017)]})
    with pytest.raises(PublishError, match="no file"):
        publish(run_out, "stac-refused", outlines=tmp_path / "missing.parquet")
    assert [p.name for p in (run_out["out"] / "stac-refused").iterdir()] == ["mask.tif"]


def test_builds_a_killed_run_left_beside_the_outputs_are_removed_by_the_next(tmp_path):
    """A run killed (SIGKILL) while writing its report left `.report-incomplete-<pid>/` beside the outputs for
    good: cleanup only removed its own process's build (the helper auditing the annual update)."""
    import subprocess
    import sys

    from pipeline.outputs.replace import incomplete_path

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()  # a process that has ended: its pid names no running one
    target = tmp_path / "report"
    left = [tmp_path / f".report-incomplete-{dead}"]
    (tmp_path / f".report-old-{dead}").mkdir()  # a swap cut between its renames: the last report's only copy, kept
    for folder in left:
        (folder / "tables").mkdir(parents=True)
    (tmp_path / f".outlines-incomplete-{dead}.parquet").write_bytes(b"half")
    alive = tmp_path / f".report-incomplete-{os.getppid()}"  # another run writing beside this one: left alone
    alive.mkdir()
    build = incomplete_path(target)
    assert build == tmp_path / f".report-incomplete-{os.getpid()}"
    assert not any(f.exists() for f in left) and alive.exists() and (tmp_path / f".report-old-{dead}").exists()
    assert (tmp_path / f".outlines-incomplete-{dead}.parquet").exists()  # another target's: its own writer cleans it
    assert incomplete_path(tmp_path / "outlines.parquet", ".parquet") == tmp_path / f".outlines-incomplete-{os.getpid()}.parquet"
    assert not (tmp_path / f".outlines-incomplete-{dead}.parquet").exists()
