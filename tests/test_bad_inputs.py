"""Bad inputs a study meets in the wild, each refused (or skipped) with a message that names it.

Every case runs on a copy of the quarter-size area (JSON copied, COGs linked; a COG that is
damaged is copied first, so the session's shared area is never touched). A refusal leaves no
partial output: an existing store stays byte-identical, and no store is left behind where
there was none. A glacier whose terminus cannot be measured is not refused: the run completes
with a ``failures`` row for it (issue 16).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import torch
from conftest import small_run_config
from rich.console import Console
from shapely.geometry import Polygon

from catalog.search import SearchError
from pipeline.config import ConfigError, load_config
from pipeline.glaciers import glacier_change
from pipeline.glaciers.inventory import InventoryError, read_inventory
from pipeline.glaciers.tasks import entity_task
from pipeline.inference.region import glacier_ids_on_grid, infer_to_store, read_card
from pipeline.model.weights import WeightsError, card_path, load_model, sha256
from pipeline.preflight import OUTPUT_MARKER
from pipeline.run import run_study
from pipeline.store import RegionStore

S2, LANDSAT = "sentinel-2", "landsat"
TRUNCATED = "LC08_L2SP_145030_20200724_02_T1"  # 2020, UTM 44N: red.tif cut to half its size
WRONG_CRS = "LC08_L2SP_144030_20200825_02_T1"  # 2020, item says EPSG:32645: red.tif rewritten as 32644
NO_PROJ = "LC08_L2SP_144030_20210816_02_T1"  # 2021, item's proj:code removed
DEM_E084 = "Copernicus_DSM_COG_10_N43_00_E084_00_DEM"


# --------------------------------------------------------------------------------------------
# helpers


def copy_area(area, dst: Path, real: tuple[str, ...] = ()) -> SimpleNamespace:
    """`area` under `dst`: every JSON copied, every other file linked, except `real` (copied: safe to damage)."""
    src = Path(area.root)
    for folder, _, files in os.walk(src):
        rel = Path(folder).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            if name.endswith(".json") or str(rel / name) in real:
                shutil.copy2(Path(folder) / name, dst / rel / name)
            else:
                os.symlink(Path(folder) / name, dst / rel / name)
    return SimpleNamespace(root=dst, spec=area.spec)


def item_json(area, collection: str, item: str) -> Path:
    return Path(area.root) / collection / item / f"{item}.json"


def files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def landsat_only(area, weights, folder: Path, **extra):
    sensors = {LANDSAT: {"resolution": 30, "weights": str(weights[LANDSAT])}}
    return small_run_config(area, weights, folder, sensors=sensors, **extra)


def quiet(tmp_path: Path) -> Console:
    return Console(file=open(tmp_path / "log.txt", "a"), width=120)


def _assert_no_new_store(out: Path) -> None:
    """A refused fresh run leaves no store behind."""
    assert not (out / "store.zarr").exists()


def refused_without_output(cfg, small_run, tmp_path, run_client, error, message: str) -> None:
    """`cfg` is refused with exactly `message` (a regex, fully matched) on an existing store and on none.

    The existing store (a copy of the clean small run's) must come out byte-identical.
    """
    existing = tmp_path / "existing"
    shutil.copytree(Path(small_run[1].store_url), existing / "store.zarr")
    (existing / OUTPUT_MARKER).touch()  # an earlier run's folder
    before = files(existing / "store.zarr")
    with pytest.raises(error) as refused:
        run_study(cfg, existing, client=run_client, console=quiet(tmp_path), publish=False)
    assert re.fullmatch(message, str(refused.value)), str(refused.value)
    assert files(existing / "store.zarr") == before
    fresh = tmp_path / "fresh"
    with pytest.raises(error) as refused:
        run_study(cfg, fresh, client=run_client, console=quiet(tmp_path), publish=False)
    assert re.fullmatch(message, str(refused.value)), str(refused.value)
    _assert_no_new_store(fresh)


# --------------------------------------------------------------------------------------------
# 1-3: scenes. One landsat run over a catalog with a truncated COG (2020), a COG whose header
# contradicts its item's CRS (2020) and an item without projection info (2021).


@pytest.fixture(scope="module")
def damaged_run(small_study_area, small_weights, run_client, tmp_path_factory):
    folder = tmp_path_factory.mktemp("damaged")
    truncated = f"landsat-c2-l2/{TRUNCATED}/red.tif"
    wrong_crs = f"landsat-c2-l2/{WRONG_CRS}/red.tif"
    area = copy_area(small_study_area, folder / "area", real=(truncated, wrong_crs))
    path = area.root / truncated
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    with rasterio.open(area.root / wrong_crs, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:
        assert ds.crs.to_epsg() == 32645
        ds.crs = rasterio.crs.CRS.from_epsg(32644)
    no_proj = item_json(area, "landsat-c2-l2", NO_PROJ)
    item = json.loads(no_proj.read_text())
    for fields in (item["properties"], *item["assets"].values()):
        fields.pop("proj:code", None), fields.pop("proj:epsg", None)
    no_proj.write_text(json.dumps(item))
    cfg = landsat_only(area, small_weights, folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(glacier_change, "glacier_terminus", terminus_fails_for(UNMEASURABLE, LANDSAT))
        with pytest.warns(UserWarning, match="skipping scene") as warned:
            result = run_study(cfg, folder / "out", client=run_client, console=quiet(folder), publish=False)
    return SimpleNamespace(area=area, cfg=cfg, result=result, warnings=[str(w.message) for w in warned])


UNMEASURABLE = 1  # a glacier whose Landsat terminus cannot be measured in the damaged run (below)


def terminus_fails_for(glacier_id: int, on_sensor: str):
    """`glacier_change.glacier_terminus` except that `glacier_id`'s terminus on `on_sensor` raises what a
    flat DEM under its tongue raises, inside the same entity task (the run's own failure path)."""
    measured = glacier_change.glacier_terminus

    @entity_task("terminus")
    def flat(gid, *args, **kwargs):
        raise ValueError("the DEM is flat over the glacier: no main axis")

    def terminus(gid, *args, sensor: str = "", **kwargs):
        chosen = flat if (int(gid), sensor) == (glacier_id, on_sensor) else measured
        return chosen(gid, *args, sensor=sensor, **kwargs)

    return terminus


def test_truncated_cog_is_skipped_named_in_provenance_and_the_year_uses_the_other_scenes(damaged_run):
    prov = json.loads((damaged_run.result.out / "provenance.json").read_text())
    truncated = next(s for s in prov["skipped_scenes"][LANDSAT] if s["item_id"] == TRUNCATED)
    assert truncated["href"] == str(damaged_run.area.root / "landsat-c2-l2" / TRUNCATED / "red.tif")
    assert re.fullmatch(
        r"truncated or corrupt: asset 'red' opens but its data cannot be read \(red\.tif, band 1: .+\); re-fetch the file",
        truncated["reason"],
    ), truncated["reason"]
    # the year is composited from the scenes left, and the store records exactly those
    store = RegionStore.open(damaged_run.result.store_url)
    assert store.year_records(LANDSAT)[2020]["scene_ids"] == ["LC08_L2SP_145030_20200918_02_T1"]
    assert prov["scenes"][LANDSAT]["2020"] == ["LC08_L2SP_145030_20200918_02_T1"]
    assert store.pending_units(LANDSAT) == []
    assert any(w.startswith(f"skipping scene '{TRUNCATED}' ({truncated['href']}): truncated or corrupt") for w in damaged_run.warnings)


def test_cog_whose_crs_contradicts_its_item_is_skipped_naming_both(damaged_run):
    prov = json.loads((damaged_run.result.out / "provenance.json").read_text())
    assert [s["item_id"] for s in prov["skipped_scenes"][LANDSAT]] == [TRUNCATED, WRONG_CRS]
    wrong = prov["skipped_scenes"][LANDSAT][1]
    assert wrong == {
        "item_id": WRONG_CRS,
        "href": str(damaged_run.area.root / "landsat-c2-l2" / WRONG_CRS / "red.tif"),
        "reason": "CRS mismatch: asset 'red' COG header says EPSG:32644, the STAC item says proj:code EPSG:32645; "
        "fix the item's proj:code or the COG's georeferencing",
        "year": 2020,
    }


def test_a_glacier_whose_terminus_cannot_be_measured_is_one_failure_row_and_the_run_completes(damaged_run, small_run):
    """Issue 16: one glacier never sinks a run. Its areas are all there, its retreat is not, every
    other glacier's is, and the summary counts the failure."""
    from pipeline.glaciers.summary import summary_table

    tables = damaged_run.result.tables
    failed = tables["failures"].query("sensor == @LANDSAT")
    assert failed[["glacier_id", "sensor", "task"]].values.tolist() == [[UNMEASURABLE, LANDSAT, "terminus"]]
    assert failed.reason.tolist() == ["ValueError: the DEM is flat over the glacier: no main axis"]
    # the other rows are pairs no terminus line measures (a NaN retreat says why), not failed glaciers
    assert tables["failures"].query("sensor != @LANDSAT").reason.str.startswith("no terminus line cuts both fronts").all()
    clean = small_run[1].tables["retreat"].query("sensor == @LANDSAT")
    assert UNMEASURABLE in set(clean.glacier_id)  # the clean run measures it
    areas = tables["areas"].query("sensor == @LANDSAT")
    retreat = tables["retreat"].query("sensor == @LANDSAT")
    # the other glaciers keep their retreat, except where the scenes skipped above leave a year unobserved
    unobserved = set(areas[areas.flag_unobserved].glacier_id)
    assert UNMEASURABLE not in unobserved
    assert set(retreat.glacier_id) == set(clean.glacier_id) - {UNMEASURABLE} - unobserved
    assert len(set(retreat.glacier_id)) >= len(set(clean.glacier_id)) // 2
    assert UNMEASURABLE in set(tables["retreat"].query("sensor == 'truth'").glacier_id)  # only the Landsat task failed
    assert len(areas.query("glacier_id == @UNMEASURABLE")) == len(areas.year.unique())
    assert summary_table(tables).set_index("sensor").at[LANDSAT, "n_failures"] == 1


def test_item_without_proj_info_is_placed_by_its_cog_header(damaged_run, small_run):
    """Documented fallback (catalog/items.py): no proj:code/proj:epsg -> the COG header's CRS.

    2021 holds the item without projection info and nothing skipped, so its landsat map must
    equal the clean run's, byte for byte (same weights, scenes and grid; probability chunk of year index 1).
    """
    store = RegionStore.open(damaged_run.result.store_url)
    assert NO_PROJ in store.year_records(LANDSAT)[2021]["scene_ids"]
    chunk = "landsat/probability/c/1/0/0"
    assert store.years(LANDSAT) == RegionStore.open(small_run[1].store_url).years(LANDSAT) == [2020, 2021]
    assert (Path(store.url) / chunk).read_bytes() == (Path(small_run[1].store_url) / chunk).read_bytes()


# --------------------------------------------------------------------------------------------
# 4: DEM


def test_dem_not_covering_the_region_is_refused_naming_source_and_gap(small_study_area, small_weights, small_run, run_client, tmp_path):
    area = copy_area(small_study_area, tmp_path / "area")
    collection = area.root / "cop-dem-glo-30" / "collection.json"
    data = json.loads(collection.read_text())
    data["links"] = [link for link in data["links"] if DEM_E084 not in link["href"]]
    collection.write_text(json.dumps(data))
    shutil.rmtree(area.root / "cop-dem-glo-30" / DEM_E084)
    cfg = small_run_config(area, small_weights, tmp_path)
    bbox = list(cfg.region.bbox)
    east = json.loads(item_json(area, "cop-dem-glo-30", DEM_E084.replace("E084", "E083")).read_text())["bbox"][2]
    gap = [round(v, 5) for v in (east, bbox[1], bbox[2], bbox[3])]
    share = f"{(bbox[2] - east) / (bbox[2] - bbox[0]):.0%}"
    message = re.escape(
        f"DEM tiles (cop-dem-glo-30 at {area.root}/catalog.json) do not cover region bbox {bbox}: "
        f"no tile over lon/lat {gap} ({share} of the region); add the missing tiles to that catalog, "
        "point dem.url at a DEM that covers the region, or shrink region.bbox"
    )
    refused_without_output(cfg, small_run, tmp_path, run_client, SearchError, message)


# --------------------------------------------------------------------------------------------
# 5-6: inventory


@pytest.fixture
def inventory(small_study_area) -> gpd.GeoDataFrame:
    return gpd.read_parquet(small_study_area.root / "inventory" / "glaciers.parquet")


def _bowtie(geom) -> Polygon:
    x0, y0, x1, y1 = geom.bounds
    return Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])


def _tiny_twist(geom, size: float = 1e-6) -> Polygon:
    """`geom` with a ring self-intersection (a bow-tie loop of `size` degrees at its first vertex)."""
    ring = list(geom.exterior.coords)
    x, y = ring[1]
    twisted = ring[:2] + [(x + size, y + size), (x + size, y), (x, y + size)] + ring[2:]
    return Polygon(twisted, [i.coords for i in geom.interiors])


def test_inventory_outline_with_a_small_self_intersection_is_repaired(inventory, small_study_area, tmp_path):
    twisted = inventory.copy()
    twisted.loc[0, "geometry"] = _tiny_twist(inventory.geometry.iloc[0])
    assert not twisted.geometry.iloc[0].is_valid
    path = tmp_path / "twisted.parquet"
    twisted.to_parquet(path)
    repaired = read_inventory(path)
    assert repaired.geometry.is_valid.all()
    assert repaired.geometry.iloc[0].area == pytest.approx(inventory.geometry.iloc[0].area, rel=0.01)
    grid = small_run_config(small_study_area, {S2: "x", LANDSAT: "y"}, tmp_path).grid(S2)
    clean = glacier_ids_on_grid(read_inventory(small_study_area.root / "inventory" / "glaciers.parquet"), grid, 100.0, 2048)
    np.testing.assert_array_equal(glacier_ids_on_grid(repaired, grid, 100.0, 2048).values, clean.values)


@pytest.mark.parametrize("case", ["bowtie", "empty", "missing", "duplicate"])
def test_inventory_with_bad_outlines_is_refused_naming_the_glacier(inventory, tmp_path, case):
    bad = inventory.copy()
    path = tmp_path / f"{case}.parquet"
    source = f"inventory {path}"
    gid = int(bad.glacier_id.iloc[2])
    if case == "bowtie":  # repair would change its area by far more than 1 %: refused
        bowtie = _bowtie(bad.geometry.iloc[2])
        bad.loc[2, "geometry"] = bowtie
        message = (
            f"outline of glacier {gid} in {source} is invalid ({shapely.is_valid_reason(bowtie)}) and cannot "
            "be repaired automatically; fix it (e.g. QGIS 'Fix geometries') and rerun"
        )
    elif case in ("empty", "missing"):
        bad.loc[2, "geometry"] = Polygon() if case == "empty" else None
        message = f"outline of glacier {gid} in {source} is empty or missing; remove that feature or fix its geometry"
    else:
        bad.loc[[5, 7], "glacier_id"] = gid
        message = (
            f"{source}: glacier ids [{gid}] appear in more than one row; an inventory holds one outline per "
            "glacier: merge each glacier's parts into one (multi)polygon (e.g. dissolve by glacier_id) or give "
            "each glacier its own id"
        )
    bad.to_parquet(path)
    with pytest.raises(InventoryError) as refused:
        read_inventory(path)
    assert str(refused.value) == message


def test_run_with_duplicate_inventory_ids_is_refused_before_writing(inventory, small_study_area, small_weights, small_run, run_client, tmp_path):
    bad = inventory.copy()
    bad.loc[[1, 4], "glacier_id"] = 9
    path = tmp_path / "dup.parquet"
    bad.to_parquet(path)
    cfg = small_run_config(small_study_area, small_weights, tmp_path, inventory=str(path))
    message = re.escape(
        f"inventory {path}: glacier ids [9] appear in more than one row; an inventory holds one outline per "
        "glacier: merge each glacier's parts into one (multi)polygon (e.g. dissolve by glacier_id) or give "
        "each glacier its own id"
    )
    refused_without_output(cfg, small_run, tmp_path, run_client, InventoryError, message)


def test_inventory_in_another_crs_gives_the_same_glacier_ids(inventory, small_study_area, small_run, tmp_path):
    assert inventory.crs.to_epsg() == 4326
    mercator = tmp_path / "glaciers-3857.gpkg"
    inventory.to_crs(3857).to_file(mercator, driver="GPKG")
    cfg = small_run[0]
    for sensor in (S2, LANDSAT):
        grid = cfg.grid(sensor)
        native = glacier_ids_on_grid(read_inventory(small_study_area.root / "inventory" / "glaciers.parquet"), grid, 100.0, 2048).values
        other = glacier_ids_on_grid(read_inventory(mercator), grid, 100.0, 2048).values
        np.testing.assert_array_equal(other, native)
        stored = RegionStore.open(small_run[1].store_url).open_dataset(sensor).glacier_id.values
        np.testing.assert_array_equal(other, stored)
        assert len(np.unique(other)) > 5


# --------------------------------------------------------------------------------------------
# 7-8: weights


def _copy_weights(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    shutil.copy(card_path(src), card_path(dst))
    return dst


def _edit_card(weights: Path, **changes) -> Path:
    card = json.loads(card_path(weights).read_text())
    card.update(changes)
    card_path(weights).write_text(json.dumps(card))
    return card_path(weights)


def _with_landsat_weights(cfg, weights: Path):
    sensors = {**cfg.sensors, LANDSAT: cfg.sensors[LANDSAT].model_copy(update={"weights": str(weights)})}
    return cfg.model_copy(update={"sensors": sensors})


def test_card_of_another_architecture_is_refused_before_a_store_exists(small_study_area, small_weights, run_client, tmp_path):
    weights = _copy_weights(small_weights[LANDSAT], tmp_path / "landsat.safetensors")
    card = _edit_card(weights, architecture="dunet")  # the tensors (and the file's own header) are a U-Net's
    cfg = _with_landsat_weights(small_run_config(small_study_area, small_weights, tmp_path), weights)
    with pytest.raises(WeightsError) as refused:
        run_study(cfg, tmp_path / "out", client=run_client, console=quiet(tmp_path))
    assert re.fullmatch(
        re.escape(
            f"{weights} holds unet (base width 4, 9 input channels), but its card {card} describes "
            "dunet (base width 4, 9 input channels); first mismatched tensors: ["
        )
        + r"'[^']+', '[^']+', '[^']+'"
        + re.escape("]: pair the weights with their own card (both are written by save_weights)"),
        str(refused.value),
    ), str(refused.value)
    assert not (tmp_path / "out" / "store.zarr").exists()


def test_card_whose_channels_do_not_match_its_recipe_is_refused(small_weights, tmp_path):
    weights = _copy_weights(small_weights[LANDSAT], tmp_path / "landsat.safetensors")
    card = _edit_card(weights, in_channels=7)
    with pytest.raises(WeightsError) as refused:
        read_card(weights)
    assert str(refused.value) == (
        f"{card} says 7 input channels, but its recipe builds 9 (bands ['blue', 'green', 'red', 'nir08', 'swir16', "
        "'swir22'], indices ['ndsi'], terrain ['elevation', 'slope']): the card does not describe landsat.safetensors; "
        "write weights and card together with save_weights"
    )


def test_weights_for_another_sensors_bands_are_refused_before_writing(small_study_area, small_weights, run_client, tmp_path):
    landsat = small_weights[LANDSAT]
    message = (
        f"{landsat} was trained on bands ['blue', 'green', 'red', 'nir08', 'swir16', 'swir22']; sentinel-2 has "
        "['B02', 'B03', 'B04', 'B08', 'B11', 'B12'] (missing ['blue', 'green', 'red', 'nir08', 'swir16', 'swir22']): "
        "use weights trained for sentinel-2 (a run: sensors.sentinel-2.weights; predict: --weights)"
    )
    with pytest.raises(WeightsError) as refused:
        read_card(landsat, S2)
    assert str(refused.value) == message
    # the inference entry point refuses them before it creates a store
    cfg = small_run_config(small_study_area, {S2: landsat, LANDSAT: landsat}, tmp_path)
    url = str(tmp_path / "direct" / "store.zarr")
    with pytest.raises(WeightsError) as refused:
        infer_to_store(cfg, S2, landsat, url, [2020], run_client)
    assert str(refused.value) == message
    assert not Path(url).exists()
    # ... and so does a run
    with pytest.raises(WeightsError) as refused:
        run_study(cfg, tmp_path / "out", client=run_client, console=quiet(tmp_path), publish=False)
    assert str(refused.value) == message
    _assert_no_new_store(tmp_path / "out")


class _Payload:
    """Unpickling this creates the file `marker`: proof that a loader ran code from the weights."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _not_safetensors_message(path: Path) -> str:
    return (
        f"{path} is not a safetensors file (pickled PyTorch checkpoints are refused: they can run code); "
        "convert it on a trusted machine with safetensors.torch.save_file"
    )


@pytest.mark.parametrize("kind", ["pickle", "random-bytes"])
def test_weights_that_are_not_safetensors_are_refused_never_unpickled(kind, small_study_area, small_weights, run_client, tmp_path):
    marker = tmp_path / "code-ran"
    weights = _copy_weights(small_weights[LANDSAT], tmp_path / "landsat.safetensors")
    if kind == "pickle":
        torch.save({"model": _Payload(marker), "tensor": torch.zeros(3)}, weights)
        # the payload is live: an unpickling loader runs it (shown on a twin with its own marker)
        probe = tmp_path / "probe.pt"
        torch.save({"model": _Payload(tmp_path / "probe-ran")}, probe)
        torch.load(probe, weights_only=False)
        assert (tmp_path / "probe-ran").exists()
    else:
        weights.write_bytes(np.random.default_rng(0).bytes(4096))
    _edit_card(weights, weights_sha256=sha256(weights))  # the card vouches for the file: the format alone must refuse it
    cfg = _with_landsat_weights(small_run_config(small_study_area, small_weights, tmp_path), weights)
    for attempt in (lambda: read_card(weights, LANDSAT), lambda: load_model(weights),
                    lambda: run_study(cfg, tmp_path / "out", client=run_client, console=quiet(tmp_path))):
        with pytest.raises(WeightsError) as refused:
            attempt()
        assert str(refused.value) == _not_safetensors_message(weights)
    assert not marker.exists()
    assert not (tmp_path / "out" / "store.zarr").exists()


# --------------------------------------------------------------------------------------------
# 9-10: config


def _config_file(tmp_path: Path, **data) -> Path:
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("store", ["../../etc/x.zarr", "file:///tmp/../etc", "out/../../x.zarr", "/data/../etc/x.zarr"])
def test_store_path_climbing_out_with_dotdot_is_refused(store, tmp_path):
    path = _config_file(tmp_path, store=store)
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == (
        f"{path}: store: {store!r} climbs out of its folder with '..': write the store without '..', relative "
        "to the config's folder (e.g. out/store.zarr), as an absolute path (e.g. /data/glaciers/store.zarr) or "
        "as a URL (e.g. s3://bucket/store.zarr)"
    )


@pytest.mark.parametrize("store", ["out/store.zarr", "/data/glaciers/store.zarr", "s3://bucket/x..y.zarr", "memory://s.zarr"])
def test_store_paths_without_dotdot_are_accepted(store, tmp_path):
    cfg = load_config(_config_file(tmp_path, store=store))
    expected = str(tmp_path / store) if store == "out/store.zarr" else store
    assert cfg.path(cfg.store) == expected


def test_years_in_the_future_are_refused(tmp_path):
    path = _config_file(tmp_path, years={"start": 2020, "end": 2099})
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    this_year = dt.date.today().year
    assert str(refused.value) == f"{path}: years: end (2099) is in the future: use {this_year} or earlier"
