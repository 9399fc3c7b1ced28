"""The embedded study area: geography, glaciers, products, STAC, truth - and that it is reproducible."""

from __future__ import annotations

import hashlib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pystac
import pytest
import rasterio

from catalog.synthetic import StudyAreaSpec, generate_study_area
from catalog.synthetic import study_area as study_area_module
from catalog.synthetic.area_catalog import make_collection, plain_python
from catalog.synthetic.surface import SPECTRA, Surface


def _items(area, collection: str) -> list[pystac.Item]:
    cat = pystac.Catalog.from_file(str(area.catalog))
    return list(cat.get_child(collection).get_items())


def test_area_sits_at_yilian_habirga_and_straddles_84e(study_area):
    w, s, e, n = study_area.spec.bbox()
    # Inside the paper's study area 43°25'-44°10'N, 83°30'-85°05'E.
    assert 83.5 <= w < 84.0 < e <= 85 + 5 / 60
    assert 43 + 25 / 60 <= s < n <= 44 + 10 / 60
    zones = {i.properties["proj:code"] for i in _items(study_area, "sentinel-2-l2a")}
    assert zones == {"EPSG:32644", "EPSG:32645"}
    assert {i.properties["proj:code"] for i in _items(study_area, "landsat-c2-l2")} == {"EPSG:32644", "EPSG:32645"}


def test_glaciers_cover_all_aspects_sizes_and_retreat_like_the_paper(study_area):
    glaciers = gpd.read_parquet(study_area.truth / "glaciers.parquet")
    outlines = gpd.read_parquet(study_area.truth / "outlines.parquet")
    assert len(glaciers) >= 25
    assert set(glaciers.aspect_sector) == {"N", "NE", "E", "SE", "S", "SW", "W", "NW"}
    areas = outlines.groupby("glacier_id").area_km2
    assert areas.min().min() >= 0.1 and areas.max().max() <= 10.0
    assert glaciers.debris_covered.sum() >= 3
    assert glaciers.retreat_m_a.between(5.0, 20.0).all()
    by_sector = glaciers.groupby("aspect_sector").retreat_m_a.mean()
    assert by_sector[["W", "NE", "S"]].mean() > by_sector[["E", "SE"]].mean() + 2.0
    termini = gpd.read_parquet(study_area.truth / "termini.parquet")
    z2016 = termini[termini.year == 2016].set_index("glacier_id").elevation_m
    rates = glaciers.set_index("glacier_id").retreat_m_a
    assert np.corrcoef(z2016.loc[rates.index], rates)[0, 1] < -0.2  # lower termini retreat faster


def test_true_termini_move_up_glacier_at_the_true_rate(study_area):
    termini = gpd.read_parquet(study_area.truth / "termini.parquet")
    rates = gpd.read_parquet(study_area.truth / "glaciers.parquet").set_index("glacier_id").retreat_m_a
    wide = termini.pivot(index="glacier_id", columns="year", values="position_m")
    np.testing.assert_allclose((wide[2016] - wide[2022]) / 6.0, rates.loc[wide.index], atol=1e-9)
    assert (termini.groupby("glacier_id").elevation_m.apply(lambda z: z.iloc[-1] - z.iloc[0]) > 0).mean() > 0.8


def test_truth_outlines_are_the_truth_rasters_to_the_pixel(study_area):
    outlines = gpd.read_parquet(study_area.truth / "outlines.parquet")
    for year in (2016, 2022):
        with rasterio.open(study_area.truth / f"truth_{year}.tif") as ds:
            ids = ds.read(1)
            classes = ds.read(2)
        counts = np.bincount(ids.ravel())
        o = outlines[outlines.year == year].set_index("glacier_id")
        np.testing.assert_allclose(o.area_km2, counts[o.index] * 100 / 1e6)
        np.testing.assert_allclose(o.geometry.area / 1e6, o.area_km2, rtol=1e-9)
        glacier_classes = set(np.unique(classes[ids > 0]))
        assert glacier_classes <= {Surface.ICE, Surface.FIRN, Surface.DEBRIS}
        assert Surface.DEBRIS in glacier_classes


def test_dem_spans_the_massif_heights_in_two_tiles(study_area):
    items = _items(study_area, "cop-dem-glo-30")
    assert len(items) == 2
    lo, hi = [], []
    for item in items:
        with rasterio.open(item.assets["data"].get_absolute_href()) as ds:
            assert ds.crs.to_epsg() == 4326
            z = ds.read(1, masked=True)
            lo.append(z.min())
            hi.append(z.max())
    assert 3290 <= min(lo) < 3400 and 4600 < max(hi) <= 5000


def test_debris_is_hard_for_a_band_ratio_and_clean_ice_is_not():
    red, swir = 2, 4
    ratio = SPECTRA[:, red] / SPECTRA[:, swir]
    assert ratio[Surface.ICE] > 5 and ratio[Surface.FIRN] > 5
    assert abs(ratio[Surface.DEBRIS] - ratio[Surface.ROCK]) < 0.1 < 2.0 - ratio[Surface.DEBRIS]


def test_every_season_has_several_scenes_per_sensor(study_area):
    for collection, per_season in (("sentinel-2-l2a", 6), ("landsat-c2-l2", 3)):
        dates = pd.Series([i.datetime for i in _items(study_area, collection)])
        in_season = dates[dates.dt.month.between(7, 9)]
        assert (in_season.dt.year.value_counts().sort_index() >= per_season).all()
        assert set(in_season.dt.year) == set(range(2016, 2023))
    months = {i.datetime.month for i in _items(study_area, "sentinel-2-l2a")}
    assert 6 in months  # one early-summer overpass, outside the default season


def test_items_follow_earth_search_conventions_and_both_l2a_eras(study_area):
    s2 = _items(study_area, "sentinel-2-l2a")
    assert set(s2[0].assets) == {"blue", "green", "red", "nir", "swir16", "swir22", "scl"}
    for item in s2:
        rb = item.assets["red"].extra_fields["raster:bands"][0]
        assert rb["scale"] == 1e-4 and rb["nodata"] == 0
        assert rb["offset"] == (-0.1 if item.datetime.year >= 2022 else 0.0)
        assert item.properties["s2:processing_baseline"] >= "04.00" if item.datetime.year >= 2022 else True
        assert 0 <= item.properties["eo:cloud_cover"] <= 100
        assert item.assets["swir16"].extra_fields["proj:shape"][0] * 2 == item.assets["red"].extra_fields["proj:shape"][0]
    ls = _items(study_area, "landsat-c2-l2")
    assert set(ls[0].assets) == {"blue", "green", "red", "nir08", "swir16", "swir22", "qa_pixel"}
    rb = ls[0].assets["red"].extra_fields["raster:bands"][0]
    assert (rb["scale"], rb["offset"]) == (2.75e-05, -0.2)


def test_dn_encode_reflectance_with_each_eras_offset(study_area):
    """The same clean-ice pixel reads as ice in 2021 (offset 0) and 2022 (offset -1000 DN)."""
    with rasterio.open(study_area.truth / "truth_2021.tif") as ds:
        classes, transform = ds.read(2), ds.transform
    rows, cols = np.nonzero(classes == Surface.FIRN)
    for year in (2021, 2022):
        items = [i for i in _items(study_area, "sentinel-2-l2a") if i.datetime.year == year and i.properties["proj:code"] == "EPSG:32644"]
        values = []
        for item in items:
            rb = item.assets["green"].extra_fields["raster:bands"][0]
            with rasterio.open(item.assets["green"].get_absolute_href()) as ds:
                xs, ys = rasterio.transform.xy(transform, rows[::50], cols[::50])
                dn = np.array([v[0] for v in ds.sample(zip(xs, ys))], float)
            ok = dn > 0
            values.append(np.median(dn[ok] * rb["scale"] + rb["offset"]))
        # Firn/snow is bright in the green band in every era once scale and offset are applied.
        assert max(values) > 0.5, (year, values)


def test_cogs_are_valid_cloud_optimised_geotiffs(study_area):
    from rio_cogeo.cogeo import cog_validate

    item = _items(study_area, "sentinel-2-l2a")[0]
    for asset in item.assets.values():
        valid, errors, _ = cog_validate(asset.get_absolute_href(), quiet=True)
        assert valid, errors


def test_total_cog_size_fits_the_budget(study_area):
    total = sum(p.stat().st_size for p in Path(study_area.root).rglob("*.tif") if "truth" not in p.parts)
    assert total <= 300 * 2**20, f"{total / 2**20:.0f} MB"


def test_items_validate_against_stac_and_extension_schemas(study_area, stac_schemas):
    for collection in ("sentinel-2-l2a", "landsat-c2-l2", "cop-dem-glo-30"):
        for item in _items(study_area, collection)[:4]:
            assert item.validate()


def test_inventory_is_in_lonlat_with_unique_ids_in_two_formats(study_area):
    parquet = gpd.read_parquet(study_area.inventory)
    gpkg = gpd.read_file(study_area.inventory.with_suffix(".gpkg"))
    assert parquet.crs.to_epsg() == 4326 and parquet.glacier_id.is_unique
    assert list(parquet.glacier_id) == list(gpkg.glacier_id)
    assert (parquet.ref_year == 2015).all() and parquet.geometry.is_valid.all()
    truth_ids = set(gpd.read_parquet(study_area.truth / "glaciers.parquet").glacier_id)
    assert set(parquet.glacier_id) == truth_ids
    # Centroids sit inside the study area's world.
    lon, lat = parquet.geometry.union_all().centroid.coords[0]
    w, s, e, n = study_area.spec.world_bbox()
    assert w < lon < e and s < lat < n


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_same_seed_gives_the_same_bytes(small_study_area, tmp_path):
    again = generate_study_area(tmp_path / "again", small_study_area.spec)
    assert _digest(again.root) == _digest(small_study_area.root)


def test_an_existing_different_area_is_never_overwritten(small_study_area):
    with pytest.raises(FileExistsError, match="choose another output folder"):
        generate_study_area(small_study_area.root, StudyAreaSpec(size=0.25, seed=7))
    # The same spec again is a no-op.
    assert generate_study_area(small_study_area.root, small_study_area.spec).n_glaciers == small_study_area.n_glaciers


@pytest.mark.slow
def test_a_failed_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(study_area_module, "write_dem", broken)
    with pytest.raises(OSError, match="disk full"):
        generate_study_area(tmp_path / "area", StudyAreaSpec(size=0.05), workers=1)  # the smallest: fails sooner
    assert list(tmp_path.iterdir()) == []


def test_catalog_objects_hold_plain_python_numbers_for_strict_json_writers():
    """pystac writes with orjson when installed, which refuses numpy scalars (even float64)."""
    import datetime as dt

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                yield from walk(v)
        else:
            yield value

    item = {
        "type": "Feature", "stac_version": "1.1.0", "id": "x", "bbox": list(np.array([84.0, 43.7, 84.1, 43.8])),
        "geometry": {"type": "Point", "coordinates": [np.float64(84.0), np.float64(43.7)]},
        "properties": {"datetime": "2020-08-01T00:00:00Z", "eo:cloud_cover": np.float64(3.5), "n": np.int64(2)},
        "links": [], "assets": {"red": {"href": "red.tif", "raster:bands": [{"scale": np.float32(1e-4)}]}},
    }
    plain = pystac.Item.from_dict(plain_python(item), migrate=False)
    plain.datetime = dt.datetime(2020, 8, 1, tzinfo=dt.UTC)
    coll = make_collection("c", "C", [plain])
    for obj in (plain.to_dict(), coll.to_dict()):
        numbers = [v for v in walk(obj) if isinstance(v, int | float) and not isinstance(v, bool)]
        assert numbers and all(type(v) in (int, float) for v in numbers)


def test_lazy_truth_equals_the_eager_one_and_reads_nothing_until_computed(small_study_area, monkeypatch):
    # The analysis asks for the truth in store chunks so that a distributed run ships read tasks,
    # not the region's rasters inside its graph, and each task reads and holds one chunk, not a
    # year of the whole grid (eight such planes held at once were 1.55 GB on the x16 area).
    import dask
    import dask.array as da

    from catalog.grid import TargetGrid
    from catalog.synthetic import truth as truth_module
    from catalog.synthetic.truth import truth_on_grid

    read_shapes = []
    read = truth_module._truth_year
    monkeypatch.setattr(truth_module, "_truth_year", lambda path, grid: read_shapes.append(grid.shape) or read(path, grid))
    bbox = small_study_area.spec.bbox()
    for resolution in (10, 30):  # the S2 grid takes the rasters as they are, Landsat's averages them
        grid = TargetGrid.from_lonlat_bbox(bbox, resolution)
        eager = truth_on_grid(small_study_area.truth, grid, [2016, 2022])
        lazy = truth_on_grid(small_study_area.truth, grid, [2016, 2022], chunks=64)
        assert isinstance(lazy.glacier_fraction.data, da.Array) and lazy.glacier_fraction.data.chunksize[1:] == (64, 64)
        read_shapes.clear()
        with dask.config.set(scheduler="sync"):
            computed = lazy.compute()
        n_chunks = int(np.prod([len(c) for c in lazy.glacier_fraction.data.chunks]))
        assert len(read_shapes) == n_chunks and max(max(s) for s in read_shapes) == 64  # a read per chunk, of it alone
        for name in ("glacier_fraction", "debris_fraction"):
            np.testing.assert_array_equal(computed[name].values, eager[name].values)
        assert eager.glacier_fraction.values.max() > 0
    # graphs computed side by side (a sensor's accuracy, the truth's own tables) keep apart
    keys = {k: set(truth_on_grid(small_study_area.truth, grid, [2016], chunks=64, key=k).glacier_fraction.data.dask)
            for k in ("truth", "truth-for-landsat")}
    assert not keys["truth"] & keys["truth-for-landsat"]
    again = truth_on_grid(small_study_area.truth, grid, [2016], chunks=64, key="truth").glacier_fraction.data
    assert set(again.dask) == keys["truth"]  # deterministic: a rerun's graph is the same
    with pytest.raises(FileNotFoundError, match="no truth for 1999"):
        truth_on_grid(small_study_area.truth, grid, [1999], chunks=64)


def test_truth_on_the_rasters_lattice_equals_gdals_warp(small_study_area):
    # The 10 and 30 m grids of the area lie on the truth rasters' lattice: slicing (10 m) and
    # k x k block means (30, 60 m) must give GDAL's nearest / average warp to the bit, also
    # where the grid reaches beyond the rasters (a grown bbox); another zone is warped.
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    from catalog.grid import TargetGrid
    from catalog.synthetic.truth import _on_lattice

    w, s, e, n = small_study_area.spec.bbox()
    path = max(small_study_area.truth.glob("truth_*.tif"))
    with rasterio.open(path) as ds:
        glacier = (ds.read(1) > 0).astype(np.float32)
        for bbox in ((w, s, e, n), (w - 0.01, s - 0.01, e + 0.01, n + 0.01)):
            for resolution in (10, 30, 60):
                grid = TargetGrid.from_lonlat_bbox(bbox, resolution, epsg=ds.crs.to_epsg())
                warped = np.zeros(grid.shape, np.float32)
                reproject(glacier, warped, src_transform=ds.transform, src_crs=ds.crs, dst_transform=grid.transform,
                          dst_crs=grid.crs, resampling=Resampling.nearest if resolution == 10 else Resampling.average)
                ours = _on_lattice(glacier, ds.transform, ds.crs.to_epsg(), grid)
                assert ours is not None and ours.dtype == np.float32
                assert ours.tobytes() == warped.tobytes(), (bbox, resolution)
                assert 0 < ours.mean() < 1 and (resolution == 10 or ((ours > 0) & (ours < 1)).any())  # mixed pixels
        other = TargetGrid.from_lonlat_bbox((w, s, e, n), 10, epsg=ds.crs.to_epsg() + 1)
        assert _on_lattice(glacier, ds.transform, ds.crs.to_epsg(), other) is None


def test_massif_share_leaves_the_dense_area_as_it_was_and_is_checked():
    # The default's fingerprint leaves massif_share out, as it was before the option existed (generator
    # version 3: the items state their sun; version 2's areas must be generated again).
    assert StudyAreaSpec().fingerprint() == "246b49c529d4fbaf"
    assert StudyAreaSpec(massif_share=0.5).fingerprint() != StudyAreaSpec().fingerprint()
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="massif_share"):
            StudyAreaSpec(massif_share=bad)


@pytest.mark.slow
def test_a_sparse_area_scatters_fewer_massifs_over_ice_free_land():
    from catalog.synthetic.area_world import build_world
    from catalog.synthetic.reference_data import inventory_outlines

    dense, sparse = build_world(StudyAreaSpec()), build_world(StudyAreaSpec(massif_share=0.34))
    massifs = {g.massif for g in dense.glaciers}, {g.massif for g in sparse.glaciers}
    assert len(massifs[0]) == 6 and len(massifs[1]) == 2  # 6 cells of ~5 km; a third keep their massif
    ice = [(w.glacier_id[max(w.glacier_id)] > 0).mean() for w in (dense, sparse)]
    assert 0.2 < ice[1] / ice[0] < 0.5, ice  # about a third of the ice
    outlines = inventory_outlines(sparse)
    assert len(outlines) == len(sparse.glaciers) and outlines.crs.to_epsg() == 4326
