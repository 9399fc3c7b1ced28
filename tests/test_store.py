"""The region store: layout, georeferencing, deterministic unit writes, appends, resume, lock, refusal."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import uuid
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from catalog.grid import TargetGrid
from pipeline.store import (
    IncompatibleStoreError,
    RegionStore,
    StoreError,
    Unit,
    check_compatible,
    encode_indices,
    encode_observed,
    encode_probability,
)
from pipeline.store.lock import StoreLockedError
from pipeline.store.manifest import Manifest

# affine 3 deprecates `*` for composition; rioxarray still uses it (see PITFALLS).
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning:rioxarray.*")

S2 = TargetGrid(32644, 10.0, (500040.0, 4700010.0, 500160.0, 4700100.0))  # 9 x 12 px
GRIDS = {"sentinel-2": S2, "landsat": S2.with_resolution(30.0)}  # 3 x 4 px
CHUNK = 4  # 3 x 3 units for sentinel-2, edge chunks included
WEIGHTS = "a" * 64


@pytest.fixture(params=["local", "memory"])
def url(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "store.zarr")
    return f"memory://{uuid.uuid4().hex}/store.zarr"


def new_store(url: str) -> RegionStore:
    return RegionStore.create(url, GRIDS, weights_sha256=WEIGHTS, chunk_size=CHUNK)


def probability(year: int, grid: TargetGrid = S2) -> np.ndarray:
    rng = np.random.default_rng(year)
    p = encode_probability(rng.random(grid.shape))
    p[:2, :3] = 0  # an all-zero corner: such chunks are still written
    return p


def observed(year: int, grid: TargetGrid = S2) -> np.ndarray:
    """Clear counts 0-3 (0 = cloud in every scene), as stored."""
    return encode_observed(np.random.default_rng(year + 1).integers(0, 4, grid.shape))


def doy(year: int, grid: TargetGrid = S2) -> np.ndarray:
    day = np.random.default_rng(year + 2).integers(180, 270, grid.shape).astype(np.uint16)
    return np.where(observed(year, grid) > 0, day, 0).astype(np.uint16)


def indices(year: int, grid: TargetGrid = S2) -> np.ndarray:
    """Index bits 0-3 (bit 0 NDSI > 0.4, bit 1 red/SWIR > 2), as stored."""
    return np.random.default_rng(year + 3).integers(0, 4, grid.shape).astype(np.uint8)


def file_hashes(store: RegionStore, prefix: str = "") -> dict[str, str]:
    """sha256 of every object under the store (paths relative to it), lock excluded."""
    out = {}
    for path in store.fs.find(store.root):
        rel = path[len(store.root) + 1 :]
        if rel.startswith(prefix) and not rel.endswith("update.lock"):
            out[rel] = hashlib.sha256(store.fs.cat_file(path)).hexdigest()
    return out


def probability_chunks(store: RegionStore, sensor: str = "sentinel-2") -> dict[str, str]:
    return file_hashes(store, f"{sensor}/probability/c/")


def run_years(store: RegionStore, years, sensor: str = "sentinel-2") -> None:
    for year in years:
        store.add_year(sensor, year, scene_ids=[f"S2_{year}_A", f"S2_{year}_B"], config_hash="cfg1")
        grid = store.grids[sensor]
        store.write_probability(
            sensor, year, probability(year, grid), observed=observed(year, grid), doy=doy(year, grid),
            indices=indices(year, grid), scheduler="synchronous",
        )


# -- layout -----------------------------------------------------------------------------------


def test_layout_dtypes_chunks_and_provenance(url):
    store = new_store(url)
    run_years(store, [2016, 2017])
    import zarr

    root = zarr.open_group(store.zarr_store, mode="r", zarr_format=3)
    for sensor, grid in GRIDS.items():
        ny, nx = grid.shape
        prob = root[f"{sensor}/probability"]
        assert prob.dtype == np.uint8 and prob.fill_value == 0
        assert prob.chunks == (1, min(CHUNK, ny), min(CHUNK, nx))
        assert prob.metadata.dimension_names == ("year", "y", "x")
        assert root[f"{sensor}/glacier_id"].dtype == np.int32
        for name in ("dem", "slope", "aspect"):
            assert root[f"{sensor}/{name}"].dtype == np.float32
            assert root[f"{sensor}/{name}"].shape == (ny, nx)
    assert root["sentinel-2/probability"].shape == (2, 9, 12)
    # what was observed, and when, beside the probability: same axes and chunks, one chunk per unit
    for name, dtype, fill in (("observed", np.uint8, 255), ("doy", np.uint16, 0), ("indices", np.uint8, 255)):
        arr = root[f"sentinel-2/{name}"]
        assert (arr.dtype, arr.fill_value, arr.shape, arr.chunks) == (dtype, fill, (2, 9, 12), (1, CHUNK, CHUNK))
        assert arr.metadata.dimension_names == ("year", "y", "x")
        assert len(file_hashes(store, f"sentinel-2/{name}/c/")) == 2 * 9
    assert root["landsat/observed"].shape == (0, 3, 4)
    assert root["landsat/probability"].shape == (0, 3, 4)  # no landsat year written yet
    meta = store.metadata
    assert meta["weights_sha256"] == {s: WEIGHTS for s in GRIDS} and meta["version"] and meta["chunk_size"] == CHUNK
    assert store.grids == GRIDS
    assert store.year_records("sentinel-2")[2017]["scene_ids"] == ["S2_2017_A", "S2_2017_B"]
    assert store.year_records("sentinel-2")[2017]["config_hash"] == "cfg1"

    ds = store.open_dataset("sentinel-2")
    assert ds.probability.dtype == np.uint8 and ds.probability.dims == ("year", "y", "x")
    assert ds.year.values.tolist() == [2016, 2017]
    np.testing.assert_array_equal(ds.probability.sel(year=2017).values, probability(2017))
    np.testing.assert_array_equal(ds.observed.sel(year=2017).values, observed(2017))
    np.testing.assert_array_equal(ds.doy.sel(year=2017).values, doy(2017))
    np.testing.assert_array_equal(ds.indices.sel(year=2017).values, indices(2017))
    # pixel centres
    assert ds.x.values[0] == S2.bounds[0] + 5 and ds.y.values[0] == S2.bounds[3] - 5


def test_static_layers_round_trip(url):
    store = new_store(url)
    dem = np.linspace(3000, 4000, 108, dtype=np.float64).reshape(9, 12)
    ids = np.arange(108).reshape(9, 12) % 5
    store.write_static("sentinel-2", "dem", dem)
    store.write_static("sentinel-2", "glacier_id", xr.DataArray(ids, dims=("y", "x")))
    ds = store.open_dataset("sentinel-2")
    np.testing.assert_array_equal(ds.dem.values, dem.astype(np.float32))
    np.testing.assert_array_equal(ds.glacier_id.values, ids)
    with pytest.raises(StoreError, match="losslessly"):
        store.write_static("sentinel-2", "glacier_id", ids.astype(float))


def _counted_source(grid: TargetGrid, calls: list) -> "da.Array":
    """A lazy float array whose every block read is logged in `calls` (stands for a scene read)."""

    def read(block, block_info=None):
        calls.append(block_info[0]["chunk-location"])
        return np.full(block.shape, 0.5)

    return da.zeros(grid.shape, chunks=CHUNK).map_blocks(read, dtype=np.float64)


def test_layers_sharing_an_input_read_it_once_per_block(url):
    """A year's four layers come from one scene read, and two years' tasks run in one compute:
    each source block is read once, not once per layer (dask.delayed would re-read a `.blocks`
    argument per call)."""
    store, calls = new_store(url), []
    source = _counted_source(S2, calls)
    tasks = []
    for year in (2016, 2017):
        store.add_year("sentinel-2", year, scene_ids=[f"S2_{year}"], config_hash="cfg1")
        _, work = store.write_probability(
            "sentinel-2", year, source.map_blocks(encode_probability, dtype=np.uint8),
            observed=(source * 0 + 2).astype(np.int64).map_blocks(encode_observed, dtype=np.uint8),
            doy=(source * 400).astype(np.uint16), indices=(source > 0.4).astype(np.uint8), compute=False,
        )
        tasks += work
    dask.compute(*tasks, scheduler="threads")
    assert sorted(calls) == sorted({(r, c) for r in range(3) for c in range(3)})
    assert (store.open_dataset("sentinel-2").probability.values == encode_probability(np.full(S2.shape, 0.5))).all()
    statics, calls[:] = {"dem": source * 1000, "slope": source * 10, "aspect": source * 90}, []
    store.write_statics("sentinel-2", statics)
    assert len(calls) == 9 and all(store.static_complete("sentinel-2", n) for n in statics)


def test_statics_computed_with_a_years_units_are_complete_only_once_marked(url):
    """A run computes the terrain's write tasks with its first years (`compute=False`): one read of
    each source block serves both, and a layer counts as written only after `mark_statics_complete`,
    so a run that fails before then leaves it to be written again."""
    store, calls = new_store(url), []
    source = _counted_source(S2, calls)
    store.add_year("sentinel-2", 2016, scene_ids=["S2_2016"], config_hash="cfg1")
    statics = {"dem": source * 1000, "slope": source * 10}
    tasks = store.write_statics("sentinel-2", statics, compute=False)
    _, work = store.write_probability("sentinel-2", 2016, source.map_blocks(encode_probability, dtype=np.uint8), compute=False)
    assert len(tasks) == 18 and not any(store.static_complete("sentinel-2", n) for n in statics)
    dask.compute(*tasks, *work, scheduler="threads")
    assert sorted(calls) == sorted({(r, c) for r in range(3) for c in range(3)})
    assert not store.static_complete("sentinel-2", "dem")  # written, not yet vouched for
    store.mark_statics_complete("sentinel-2", statics)
    assert all(store.static_complete("sentinel-2", n) for n in statics)
    np.testing.assert_array_equal(store.open_dataset("sentinel-2").slope.values, np.full(S2.shape, 5.0, np.float32))


def test_rioxarray_reads_crs_and_transform_of_the_grid(url):
    import rioxarray  # noqa: F401

    store = new_store(url)
    run_years(store, [2016])
    for sensor, grid in GRIDS.items():
        ds = xr.open_zarr(store.zarr_store, group=sensor, consolidated=False)  # no extra arguments
        assert ds.rio.crs.to_epsg() == grid.epsg
        for name in ("probability", "observed", "doy", "glacier_id", "dem"):
            assert ds[name].rio.crs.to_epsg() == grid.epsg
            assert ds[name].rio.transform() == grid.transform
        assert ds.spatial_ref.attrs["GeoTransform"].split() == [str(v) for v in grid.transform.to_gdal()]


def _gdal_alias_copy(src: str, dst: str) -> None:
    """A copy whose codecs carry GDAL 3.10's names ("endian" + gzip): same metadata, same values."""
    import zarr
    from zarr.codecs import GzipCodec

    shutil.copytree(src, dst)
    group = zarr.open_group(dst, path="sentinel-2", mode="r+", zarr_format=3)
    for name, arr in list(group.arrays()):
        values, attrs, dims = arr[...], dict(arr.attrs), arr.metadata.dimension_names
        del group[name]
        new = group.create_array(
            name, shape=arr.shape, chunks=arr.chunks, dtype=arr.dtype, fill_value=arr.fill_value,
            compressors=(GzipCodec(),), attributes=attrs, dimension_names=dims,
        )  # fmt: skip
        new[...] = values
        meta_path = Path(dst, "sentinel-2", name, "zarr.json")
        meta = json.loads(meta_path.read_text())
        meta["codecs"] = [{"name": "endian", "configuration": {"endian": "little"}} if c["name"] == "bytes" else c for c in meta["codecs"]]
        meta_path.write_text(json.dumps(meta))


def test_gdal_opens_the_probability_array(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    store = new_store(str(tmp_path / "store.zarr"))
    run_years(store, [2016, 2017])
    name = f'ZARR:"{store.url}":/sentinel-2/probability'
    try:
        src = rasterio.open(name)
    except rasterio.errors.RasterioIOError as err:
        if "Unsupported codec" in str(err):
            pytest.skip(
                f"GDAL {rasterio.__gdal_version__} predates the final Zarr v3 codec names ('bytes', 'zstd'; "
                f"GDAL >= 3.11): {err}. test_gdal_reads_the_georeferencing checks the metadata instead."
            )
        raise
    with src:
        assert src.crs.to_epsg() == S2.epsg and src.transform == S2.transform and src.count == 2
        np.testing.assert_array_equal(src.read(2), probability(2017))


def test_gdal_reads_the_georeferencing(tmp_path):
    """GDAL understands the store's CF metadata (CRS from grid_mapping, transform from x/y) on its own.

    GDAL 3.10 knows Zarr v3 codecs only by their pre-2025 names, so this reads a copy whose codec
    names are those; nothing else is changed.
    """
    rasterio = pytest.importorskip("rasterio")
    store = new_store(str(tmp_path / "store.zarr"))
    run_years(store, [2016, 2017])
    copy = str(tmp_path / "gdal310.zarr")
    _gdal_alias_copy(store.url, copy)
    with rasterio.open(f'ZARR:"{copy}":/sentinel-2/probability') as src:
        assert src.crs.to_epsg() == S2.epsg
        assert src.transform == S2.transform
        assert (src.count, src.height, src.width) == (2, 9, 12)
        assert src.tags(2)["DIM_year_VALUE"] == "2017"
        np.testing.assert_array_equal(src.read(2), probability(2017))


# -- deterministic writes, appends, resume -------------------------------------------------------


def test_rewriting_a_unit_writes_the_same_bytes(url):
    store = new_store(url)
    run_years(store, [2016])
    before = file_hashes(store)
    unit = Unit("sentinel-2", 2016, 2, 2)  # an edge chunk (1 x 4 px of a 4 x 4 chunk)
    ys, xs = store.unit_window(unit)
    store.write_unit(
        unit, probability(2016)[ys, xs], observed=observed(2016)[ys, xs], doy=doy(2016)[ys, xs], indices=indices(2016)[ys, xs]
    )
    assert file_hashes(store) == before


def test_rerun_is_a_noop_and_leaves_every_file_byte_identical(url):
    store = new_store(url)
    run_years(store, [2016, 2017])
    before = file_hashes(store)
    assert len(probability_chunks(store)) == 2 * 9
    assert store.pending_units("sentinel-2") == []
    assert store.write_probability("sentinel-2", 2017, probability(2017)) == []
    run_years(store, [2016, 2017])  # the whole run again
    assert file_hashes(store) == before


@pytest.mark.slow  # ~3 s per store kind
def test_appending_a_year_leaves_earlier_chunk_files_untouched(url):
    store = new_store(url)
    run_years(store, range(2016, 2023))
    before = probability_chunks(store)
    year_chunks = file_hashes(store, "sentinel-2/year/c/")
    run_years(store, [2023])
    after = probability_chunks(store)
    assert {k: after[k] for k in before} == before
    assert len(after) == len(before) + 9
    assert {k: v for k, v in file_hashes(store, "sentinel-2/year/c/").items() if k in year_chunks} == year_chunks
    ds = store.open_dataset("sentinel-2")
    assert ds.year.values.tolist() == list(range(2016, 2024))
    np.testing.assert_array_equal(ds.probability.sel(year=2023).values, probability(2023))
    np.testing.assert_array_equal(ds.probability.sel(year=2019).values, probability(2019))


def test_resume_after_a_crash_equals_a_clean_run_byte_for_byte(tmp_path, monkeypatch):
    clean = new_store(str(tmp_path / "clean.zarr"))
    run_years(clean, [2016, 2017])

    crashed = new_store(str(tmp_path / "crashed.zarr"))
    run_years(crashed, [2016])
    k = 2  # of 9 units, 4 interior (row, col < 2): whatever dask's task order, an interior and an edge one stay pending
    marked: list[Unit] = []
    real_mark = Manifest.mark_done

    def crash_after_k(self, unit, digest):
        if len(marked) == k:  # this unit's chunk is written, its marker is not: the process dies here
            raise KeyboardInterrupt("killed")
        real_mark(self, unit, digest)
        marked.append(unit)

    monkeypatch.setattr(Manifest, "mark_done", crash_after_k)
    crashed.add_year("sentinel-2", 2017, scene_ids=["S2_2017_A", "S2_2017_B"], config_hash="cfg1")
    with pytest.raises(KeyboardInterrupt):
        crashed.write_probability(
            "sentinel-2", 2017, probability(2017), observed=observed(2017), doy=doy(2017), indices=indices(2017), scheduler="synchronous"
        )
    monkeypatch.setattr(Manifest, "mark_done", real_mark)

    # only the k finished units are in the manifest; the half-done one is pending
    units = crashed.units("sentinel-2", 2017)
    assert crashed.manifest.done("sentinel-2", 2017) == {(u.row, u.col) for u in marked}
    pending = [u for u in units if u not in marked]
    assert crashed.pending_units("sentinel-2") == pending and len(pending) == 9 - k
    # ... and torn chunks from workers that died mid-put, an interior one and an edge one
    interior = next(u for u in pending if u.row < 2 and u.col < 2)
    edge = next(u for u in pending if u.row == 2 or u.col == 2)
    for unit, junk in ((interior, b"\x28\xb5\x2f"), (edge, b"junk")):
        # Which units got written before the crash depends on dask's task order: make the row folder.
        crashed.fs.makedirs(f"{crashed.root}/sentinel-2/probability/c/1/{unit.row}", exist_ok=True)
        crashed.fs.pipe_file(f"{crashed.root}/sentinel-2/probability/c/1/{unit.row}/{unit.col}", junk)

    written = crashed.write_probability(
        "sentinel-2", 2017, probability(2017), observed=observed(2017), doy=doy(2017), indices=indices(2017), scheduler="synchronous"
    )
    assert written == pending
    assert file_hashes(crashed) == file_hashes(clean)


@pytest.mark.parametrize("layer", ["observed", "indices"])
def test_a_crash_between_a_units_layers_leaves_it_pending_and_the_rewrite_equals_a_clean_run(tmp_path, monkeypatch, layer):
    """The probability chunk is on disk, the unit's `observed` (or last, `indices`) write fails
    (disk full): nothing is marked, and the rerun rewrites all four chunk objects to a clean run's bytes."""
    import zarr

    clean = new_store(str(tmp_path / "clean.zarr"))
    run_years(clean, [2016])
    crashed = new_store(str(tmp_path / "crashed.zarr"))
    crashed.add_year("sentinel-2", 2016, scene_ids=["S2_2016_A", "S2_2016_B"], config_hash="cfg1")
    real_set = zarr.storage.LocalStore.set

    async def disk_fills_writing_observed(self, key, value):
        if f"/{layer}/c/0/1/1" in key:
            raise OSError(28, "No space left on device")
        return await real_set(self, key, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", disk_fills_writing_observed)
    with pytest.raises(StoreError, match="unit sentinel-2/2016/1.1 .* No space left"):
        crashed.write_probability(
            "sentinel-2", 2016, probability(2016), observed=observed(2016), doy=doy(2016), indices=indices(2016),
            scheduler="synchronous",
        )
    monkeypatch.setattr(zarr.storage.LocalStore, "set", real_set)
    assert (1, 1) not in crashed.manifest.done("sentinel-2", 2016)
    assert crashed.fs.exists(f"{crashed.root}/sentinel-2/probability/c/0/1/1")  # written, but not trusted
    crashed.write_probability(
        "sentinel-2", 2016, probability(2016), observed=observed(2016), doy=doy(2016), indices=indices(2016), scheduler="synchronous"
    )
    assert file_hashes(crashed) == file_hashes(clean)


def test_index_bits_from_reflectance_by_hand():
    """NDSI = (green - swir16) / (green + swir16) > 0.4 sets bit 0, red / swir16 > 2 bit 1; a missing band sets none."""
    bands = ("blue", "green", "red", "nir08", "swir16", "swir22")
    # pixels: snow (0.9, 0.9, 0.01): NDSI 0.98, ratio 90 -> 3; synthetic ice (0.57, 0.55, 0.12): NDSI 0.65,
    # ratio 4.6 -> 3; rock (0.2, 0.25, 0.3): NDSI -0.2, ratio 0.83 -> 0; shadowed ice (0.08, 0.06, 0.02):
    # NDSI 0.6, ratio 3 -> 3; dirty ice (0.3, 0.33, 0.12): NDSI 0.43, ratio 2.75 -> 3; green missing -> 0
    green = np.array([[0.9, 0.57, 0.2], [0.08, 0.3, np.nan]])
    red = np.array([[0.9, 0.55, 0.25], [0.06, 0.33, 0.3]])
    swir = np.array([[0.01, 0.12, 0.3], [0.02, 0.12, 0.1]])
    refl = np.stack([np.full_like(green, 0.5), green, red, np.full_like(green, 0.5), swir, swir])
    out = encode_indices(refl, bands)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [[3, 3, 0], [3, 3, 0]])
    # NDSI alone (green 0.5, red 0.15, swir 0.1: NDSI 0.67, ratio 1.5) and ratio alone (green 0.2, red 0.5, swir 0.2: NDSI 0, ratio 2.5)
    two = np.stack([np.array([[0.5, 0.2]]), np.array([[0.5, 0.2]]), np.array([[0.15, 0.5]]), np.array([[0.5, 0.5]]),
                    np.array([[0.1, 0.2]]), np.array([[0.1, 0.2]])])
    np.testing.assert_array_equal(encode_indices(two, bands), [[1, 2]])
    # Sentinel-2 names: the same roles
    np.testing.assert_array_equal(encode_indices(two, ("B02", "B03", "B04", "B08", "B11", "B12")), [[1, 2]])
    # a piece whose first band was never seen maps nothing, whatever the others hold (no pixel has every band)
    unseen = refl.copy()
    unseen[0] = np.nan
    np.testing.assert_array_equal(encode_indices(unseen, bands), np.zeros(green.shape))


def test_observed_counts_clip_and_dem_voids_are_unobserved():
    counts = np.array([[0, 1, 3], [254, 300, np.nan]])
    elevation = np.array([[4000.0, np.nan, 4100.0], [4200.0, 4300.0, 4400.0]])
    np.testing.assert_array_equal(encode_observed(counts), [[0, 1, 3], [254, 254, 0]])
    np.testing.assert_array_equal(encode_observed(counts, elevation), [[0, 0, 3], [254, 254, 0]])
    assert encode_observed(counts).dtype == np.uint8


def test_observation_layers_are_checked_and_default_to_not_read(url):
    store = new_store(url)
    store.add_year("sentinel-2", 2016, scene_ids=["x"], config_hash="c")
    unit = Unit("sentinel-2", 2016, 0, 0)
    with pytest.raises(StoreError, match="encode_observed"):
        store.write_unit(unit, probability(2016)[:4, :4], observed=np.ones((4, 4), np.int64))
    with pytest.raises(StoreError, match="doy block has shape"):
        store.write_unit(unit, probability(2016)[:4, :4], doy=np.ones((3, 4), np.uint16))
    with pytest.raises(StoreError, match="encode_indices"):
        store.write_unit(unit, probability(2016)[:4, :4], indices=np.ones((4, 4), np.int16))
    assert store.pending_units("sentinel-2")[0] == unit  # a refused write marks nothing
    # ice-free units read no pixel: "not read" (255), not "not observed" (0), and no date
    free = store.write_ice_free("sentinel-2", 2016, tiles=[(0, 0)])
    assert len(free) == 8
    ds = store.open_dataset("sentinel-2")
    ys, xs = store.unit_window(free[-1])
    assert (ds.observed.sel(year=2016).values[ys, xs] == 255).all() and (ds.doy.sel(year=2016).values[ys, xs] == 0).all()
    assert (ds.indices.sel(year=2016).values[ys, xs] == 255).all()
    assert (ds.probability.sel(year=2016).values[ys, xs] == 0).all()


def test_ice_free_units_as_tasks_write_nothing_until_computed_and_then_the_same_bytes(tmp_path):
    """A run writes them on its workers with the year's other units (a range: thousands a year,
    which the client wrote one after another)."""
    import dask

    eager, lazy = new_store(str(tmp_path / "eager.zarr")), new_store(str(tmp_path / "lazy.zarr"))
    for store in (eager, lazy):
        store.add_year("sentinel-2", 2016, scene_ids=["x"], config_hash="c")
    eager.write_ice_free("sentinel-2", 2016, tiles=[(0, 0)])
    free, tasks = lazy.write_ice_free("sentinel-2", 2016, tiles=[(0, 0)], compute=False)
    assert len(free) == len(tasks) == 8 and len(lazy.pending_units("sentinel-2", [2016])) == 9  # nothing written yet
    assert sorted(dask.compute(*tasks, scheduler="threads")) == sorted(u.key for u in free)
    assert lazy.pending_units("sentinel-2", [2016]) == eager.pending_units("sentinel-2", [2016]) == [Unit("sentinel-2", 2016, 0, 0)]
    a, b = eager.open_dataset("sentinel-2"), lazy.open_dataset("sentinel-2")
    for name in ("probability", "observed", "doy", "indices"):
        np.testing.assert_array_equal(a[name].values, b[name].values)


def test_a_store_made_before_the_observation_layers_gets_them_as_not_read(tmp_path):
    import zarr

    store = new_store(str(tmp_path / "old.zarr"))
    run_years(store, [2016])
    group = zarr.open_group(store.zarr_store, path="sentinel-2", mode="r+", zarr_format=3)
    del group["observed"], group["doy"], group["indices"]  # as a store of the earlier layout has them
    store = new_store(store.url)  # a run opens it
    ds = store.open_dataset("sentinel-2")
    assert ds.observed.shape == (1, 9, 12) and (ds.observed.values == 255).all() and (ds.doy.values == 0).all()
    assert ds.indices.shape == (1, 9, 12) and (ds.indices.values == 255).all()  # not read: compared with nothing
    run_years(store, [2017])  # and appends to it as to any store
    np.testing.assert_array_equal(store.open_dataset("sentinel-2").observed.sel(year=2017).values, observed(2017))
    np.testing.assert_array_equal(store.open_dataset("sentinel-2").indices.sel(year=2017).values, indices(2017))


def test_a_store_made_with_observed_but_without_indices_gets_indices_on_open(tmp_path):
    """The store of the previous release (observed/doy, no indices) is upgraded: earlier years 255, reruns no-ops."""
    import zarr

    store = new_store(str(tmp_path / "old.zarr"))
    run_years(store, [2016])
    group = zarr.open_group(store.zarr_store, path="sentinel-2", mode="r+", zarr_format=3)
    del group["indices"]
    before = file_hashes(store, "sentinel-2/probability/")
    store = new_store(store.url)
    assert (store.open_dataset("sentinel-2").indices.values == 255).all()
    assert store.write_probability("sentinel-2", 2016, probability(2016)) == []  # finished units stay finished
    assert file_hashes(store, "sentinel-2/probability/") == before


def test_manifest_marks_only_finished_units(url):
    store = new_store(url)
    store.add_year("sentinel-2", 2016, scene_ids=["x"], config_hash="c")
    units = store.units("sentinel-2", 2016)
    assert len(units) == 9 and store.pending_units("sentinel-2") == units
    for unit in units[:3]:
        ys, xs = store.unit_window(unit)
        store.write_unit(unit, probability(2016)[ys, xs])
    assert store.pending_units("sentinel-2") == units[3:]
    rec = store.manifest.record(units[0])
    ys, xs = store.unit_window(units[0])
    assert rec["data_sha256"] == hashlib.sha256(probability(2016)[ys, xs].tobytes()).hexdigest()
    with pytest.raises(StoreError, match="encode_probability"):
        store.write_unit(units[3], np.zeros((4, 4), np.float32))
    assert store.pending_units("sentinel-2") == units[3:]  # a refused write marks nothing


def test_years_are_appended_in_order_and_scenes_must_match(url):
    store = new_store(url)
    run_years(store, [2016, 2018])
    with pytest.raises(StoreError, match="inserted before them"):
        store.add_year("sentinel-2", 2017, scene_ids=["a"], config_hash="c")
    with pytest.raises(StoreError, match=r"glacierwatch update --year 2018 --redo"):
        store.add_year("sentinel-2", 2018, scene_ids=["S2_2018_A", "S2_2018_C"], config_hash="c")
    store.reset_year("sentinel-2", 2018)
    assert len(store.pending_units("sentinel-2")) == 9
    store.add_year("sentinel-2", 2018, scene_ids=["S2_2018_A", "S2_2018_C"], config_hash="c")
    assert store.year_records("sentinel-2")[2018]["scene_ids"] == ["S2_2018_A", "S2_2018_C"]


# -- lock ------------------------------------------------------------------------------------------


def test_lock_refuses_a_concurrent_holder_naming_it(url):
    store = new_store(url)
    with store.lock() as first:
        holder = first.holder
        lock_path = f"{store.root}/run/update.lock"
        with pytest.raises(StoreLockedError) as err:
            store.lock().acquire()
        said = re.sub(r"lock last renewed \d+ s ago", "lock last renewed N s ago", str(err.value))  # its first beat: now
        assert said == (
            f"store {store.url} is locked by another annual update on host {socket.gethostname()}, "
            f"pid {os.getpid()}, started {holder.started}, lock last renewed N s ago. Wait for it to finish, or, if that "
            f"process is no longer running, delete the stale lock file {lock_path} and run again."
        )
        assert store.fs.exists(lock_path)
    assert not store.fs.exists(lock_path)
    with store.lock():  # free again
        pass


# -- refusal -----------------------------------------------------------------------------------------


def test_a_store_made_with_another_grid_is_refused(url):
    store = new_store(url)
    other = TargetGrid(32645, 10.0, S2.bounds)
    with pytest.raises(IncompatibleStoreError) as err:
        check_compatible(store, {"sentinel-2": other}, WEIGHTS)
    assert str(err.value).startswith(
        f"store at {store.url} was made with sentinel-2 grid EPSG:32644 at 10 m over {S2.bounds}; "
        f"this config asks for EPSG:32645 at 10 m over {S2.bounds}: start a new store (set `store:` in the config"
    )
    with pytest.raises(IncompatibleStoreError, match="was made with sentinel-2 grid"):
        RegionStore.create(url, {"sentinel-2": other}, weights_sha256=WEIGHTS, chunk_size=CHUNK)
    check_compatible(store.url if url.startswith("/") else store, GRIDS, WEIGHTS)  # the same: fine


def test_a_store_made_with_other_weights_is_refused(url):
    store = new_store(url)
    with pytest.raises(IncompatibleStoreError) as err:
        check_compatible(store, GRIDS, {"sentinel-2": WEIGHTS, "landsat": "b" * 64})
    assert str(err.value) == (
        f"store at {store.url} holds landsat probabilities made with weights sha256 {WEIGHTS}; this config asks "
        f"for weights sha256 {'b' * 64}: start a new store (set `store:` in the config to a new path), or use the "
        f"weights that made it (sensors.landsat.weights with sha256 {WEIGHTS})"
    )


def test_a_store_whose_glacier_id_came_from_another_inventory_is_refused(tmp_path):
    from pipeline.store import check_same_inventory

    store = new_store(str(tmp_path / "store.zarr"))
    check_same_inventory(store, ["sentinel-2"], "b" * 64, "inventory x.gpkg")  # no glacier_id yet: nothing to compare
    store.write_statics("sentinel-2", {"glacier_id": np.ones(S2.shape, np.int32)}, compute=False)
    store.mark_statics_complete("sentinel-2", ["glacier_id"], attrs={"glacier_id": {"inventory_sha256": "a" * 64}})
    assert store.static_complete("sentinel-2", "glacier_id")
    check_same_inventory(store, ["sentinel-2", "landsat"], "a" * 64, "inventory x.gpkg")
    with pytest.raises(IncompatibleStoreError) as err:
        check_same_inventory(store.url, ["sentinel-2"], "b" * 64, "inventory x.gpkg")
    assert str(err.value).startswith(
        f"store at {store.url} holds a sentinel-2 glacier_id layer rasterised from another inventory or "
        f"analysis.glacier_buffer_m (sha256 {'a' * 64}) than inventory x.gpkg (sha256 {'b' * 64}): start a new store"
    )


def test_each_sensor_keeps_its_own_weights(tmp_path):
    url = str(tmp_path / "store.zarr")
    RegionStore.create(url, {"sentinel-2": GRIDS["sentinel-2"]}, weights_sha256="a" * 64, chunk_size=CHUNK)
    store = RegionStore.create(url, {"landsat": GRIDS["landsat"]}, weights_sha256="c" * 64, chunk_size=CHUNK)
    assert store.metadata["weights_sha256"] == {"landsat": "c" * 64, "sentinel-2": "a" * 64}
    check_compatible(store, GRIDS, {"sentinel-2": "a" * 64, "landsat": "c" * 64})


def test_opening_a_missing_store_names_it(tmp_path):
    with pytest.raises(StoreError, match=r"no glacierwatch store at .*nowhere\.zarr"):
        RegionStore.open(str(tmp_path / "nowhere.zarr"))


def test_a_year_made_another_way_than_the_series_is_refused(url):
    """An update with a changed season made its year from 4 looks where the series had 6 and read 3 %
    less ice, with no word, and provenance then claimed the new season for every year."""
    from pipeline.config import load_config

    store = new_store(url)
    july = load_config().year_method("sentinel-2")
    assert july == {"season": "07-01..09-30", "max_cloud": 70.0}
    for year in (2016, 2017):
        store.add_year("sentinel-2", year, scene_ids=[f"S2_{year}"], config_hash="cfg1", method=july)
    store.add_year("sentinel-2", 2017, scene_ids=["S2_2017"], config_hash="cfg1", method=july)  # again: the same
    august = load_config(season={"start": "08-01", "end": "09-30"}).year_method("sentinel-2")
    with pytest.raises(StoreError, match=r"holds sentinel-2 2016 made with other settings than this run's for 2018 "
                                         r"\(season '07-01..09-30' -> '08-01..09-30'\): a series is made one way"):
        store.add_year("sentinel-2", 2018, scene_ids=["S2_2018"], config_hash="cfg2", method=august)
    assert store.years("sentinel-2") == [2016, 2017]  # refused before the axis grew
    assert store.year_records("sentinel-2")[2016]["method"] == july
    # a year recorded before methods were (an older store) does not stop it
    legacy = new_store(url.replace("store.zarr", "legacy.zarr"))
    legacy.add_year("sentinel-2", 2016, scene_ids=["a"], config_hash="c")
    legacy.add_year("sentinel-2", 2017, scene_ids=["b"], config_hash="c", method=august)
    # a setting recorded since (how the network was fed): judged between the years that record it, not against older ones
    fed = {**july, "mirrored_north_south": False}
    store.add_year("sentinel-2", 2018, scene_ids=["S2_2018"], config_hash="cfg1", method=fed)
    with pytest.raises(StoreError, match=r"for 2019 \(mirrored_north_south False -> True\)"):
        store.add_year("sentinel-2", 2019, scene_ids=["S2_2019"], config_hash="cfg1", method={**fed, "mirrored_north_south": True})
