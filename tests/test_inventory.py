"""Inventories as users have them: RGI 6, RGI 7 and GLIMS files with their own id field; bad ones refused up front."""

from __future__ import annotations

import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box

from pipeline.config import load_config
from pipeline.glaciers.inventory import InventoryError, attach_inventory_ids, inventory_ids, read_inventory


def _squares(ids, crs="EPSG:4326", x0=84.0, y0=43.7, size=0.01) -> gpd.GeoDataFrame:
    geoms = [box(x0 + i * 2 * size, y0, x0 + i * 2 * size + size, y0 + size) for i in range(len(ids))]
    return gpd.GeoDataFrame({"gid": ids}, geometry=geoms, crs=crs)


@pytest.mark.parametrize(
    "file, id_field, first_id",
    [
        ("hintereisferner/Hintereisferner_RGI6.shp", "RGIId", "RGI60-11.00897"),
        ("hintereisferner/rgi7g_hef.shp", "rgi_id", "RGI2000-v7.0-G-11-03116"),
        ("oetztal/rgi_oetztal.shp", "RGIId", None),
    ],
)
def test_real_rgi_files_load_with_their_own_id_field(real_data, file, id_field, first_id):
    raw = gpd.read_file(real_data / file)
    inventory = read_inventory(real_data / file, id_field)
    assert len(inventory) == len(raw)
    assert inventory.inventory_id.tolist() == raw[id_field].astype(str).tolist()
    # string ids get internal ids 1..N in the sorted order of the inventory's own ids
    assert sorted(inventory.glacier_id) == list(range(1, len(raw) + 1))
    by_rank = dict(zip(sorted(raw[id_field].astype(str)), range(1, len(raw) + 1), strict=True))
    assert all(by_rank[i] == g for i, g in zip(inventory.inventory_id, inventory.glacier_id, strict=True))
    if first_id:
        assert inventory.inventory_id.iloc[0] == first_id


def test_glims_analysis_in_parts_loads_as_one_glacier_but_parts_of_a_plain_file_are_refused(real_data, tmp_path):
    glims = gpd.read_file(real_data / "hochalmkees" / "glims_polygons.shp")
    parts = glims.groupby("anlys_id").size()
    single, split = parts[parts == 1].index[0], parts[parts > 1].index[0]
    one = _read_from(glims[glims.anlys_id == single], "glac_id", tmp_path / "one.gpkg")
    assert one.inventory_id.tolist() == ["G013332E47020N"] and one.glacier_id.tolist() == [1]
    # a GLIMS download: the analysis' boundary parts are one glacier (tests/test_glims.py)
    dissolved = _read_from(glims[glims.anlys_id == split], "glac_id", tmp_path / "split.gpkg")
    assert dissolved.geometry.iloc[0].geom_type == "MultiPolygon"
    assert len(dissolved.geometry.iloc[0].geoms) == parts[split]
    # the same parts without GLIMS' layout: nothing says they are one analysis of one glacier
    plain = glims[glims.anlys_id == split].drop(columns=["line_type", "anlys_id"])
    with pytest.raises(InventoryError, match=r"G013332E47020N.*dissolve by glac_id"):
        _read_from(plain, "glac_id", tmp_path / "plain.gpkg")


def test_the_polygon_layer_of_a_geopackage_whose_first_layer_is_points_is_the_inventory(tmp_path):
    """GDAL reads a file's first layer: a GeoPackage saved from QGIS with the glaciers' centre points
    first gave "outline ... is a Point, not a polygon" for a file that holds the outlines."""
    path = tmp_path / "project.gpkg"
    squares = _squares(["a", "b", "c"])
    squares.assign(geometry=squares.representative_point()).to_file(path, driver="GPKG", layer="centres")
    squares.to_file(path, driver="GPKG", layer="outlines")
    inventory = read_inventory(path, "gid")
    assert inventory.inventory_id.tolist() == ["a", "b", "c"]
    assert (inventory.geometry.geom_type == "Polygon").all()


def _read_from(gdf: gpd.GeoDataFrame, id_field: str, path) -> gpd.GeoDataFrame:
    gdf.to_file(path, driver="GPKG")
    return read_inventory(path, id_field)


def test_integer_ids_are_kept_as_they_are(tmp_path):
    path = tmp_path / "ids.parquet"
    _squares([7, 3, 12, 1_000_000]).to_parquet(path)
    inventory = read_inventory(path, "gid")
    assert inventory.glacier_id.tolist() == [7, 3, 12, 1_000_000]
    assert inventory.inventory_id.tolist() == ["7", "3", "12", "1000000"]


@pytest.mark.parametrize(
    "ids, expected_internal",
    [
        ([2**31 + 5, 2**33, 10], [2, 3, 1]),  # above int32: ranked by their text
        ([5, 2_000_000_000, 10], [3, 2, 1]),  # in int32, but per-id arrays would take 16 GB: ranked
        ([5, 1_000_001, 1_000_000], [3, 2, 1]),  # one above the bound ranks them all
        ([0, 1, 2], [1, 2, 3]),  # 0 means "no glacier" in the raster: ranked
        ([1.5, 2.0, 3.25], [1, 2, 3]),  # not integral: ranked
        ([10_000_000.0, 2.0, 3.0], [1, 2, 3]),  # whole floats above the bound: ranked by their integer text
        (["b", "a", "c"], [2, 1, 3]),
    ],
)
def test_ids_the_raster_cannot_hold_are_ranked_and_kept_as_text(tmp_path, ids, expected_internal):
    path = tmp_path / "ids.gpkg"
    _squares(ids).to_file(path, driver="GPKG")
    inventory = read_inventory(path, "gid")
    assert inventory.glacier_id.tolist() == expected_internal
    assert inventory.glacier_id.dtype == np.int32
    assert len(set(inventory.inventory_id)) == 3
    if ids[0] == 10_000_000.0:  # a float column's whole ids read as the integers they are
        assert inventory.inventory_id.tolist() == ["10000000", "2", "3"]


def test_ids_above_two_to_the_31_survive_in_the_tables(tmp_path):
    path = tmp_path / "big.gpkg"
    _squares([2**31 + 5, 2**33]).to_file(path, driver="GPKG")
    inventory = read_inventory(path, "gid")
    areas = pd.DataFrame({"glacier_id": [1, 2, pd.NA], "sensor": "x", "area_km2": [1.0, 2.0, 3.0]})
    out = attach_inventory_ids(areas, inventory_ids(inventory))
    assert list(out.columns) == ["glacier_id", "inventory_id", "sensor", "area_km2"]
    assert out.inventory_id.tolist()[:2] == [str(2**31 + 5), str(2**33)]
    assert pd.isna(out.inventory_id.iloc[2])  # the region-wide row


def _write_bad(tmp_path, case):
    path = tmp_path / f"{case}.gpkg"
    if case == "missing":
        return tmp_path / "no-such-file.gpkg", "not found: set inventory.path"
    if case == "folder":
        (tmp_path / "folder.gpkg").mkdir()
        return tmp_path / "folder.gpkg", "is a folder, not a vector file"
    if case == "random-bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
        return path, "cannot be read as glacier outlines"
    if case == "empty-file":
        path.write_bytes(b"")
        return path, "cannot be read as glacier outlines"
    if case == "no-features":
        _squares([1]).iloc[:0].to_file(path, driver="GPKG")
        return path, "holds no outlines"
    if case == "wrong-id-field":
        _squares([1, 2]).rename(columns={"gid": "RGIId"}).to_file(path, driver="GPKG")
        return path, r"has no id field 'gid' \(it has \['RGIId'\]\): set inventory.id_field"
    if case == "no-id":
        _squares(["a", None, "c"]).to_file(path, driver="GPKG")
        return path, r"1 outlines \(rows \[1\]\) have no 'gid'"
    if case == "metres-in-lonlat":
        bad = _squares([1, 2, 3])
        bad.loc[1, "geometry"] = box(500000, 4800000, 501000, 4801000)  # UTM metres in a lon/lat layer
        bad.to_file(path, driver="GPKG")
        return path, r"1 outlines \(e.g. glaciers \['2'\]\) have coordinates outside lon/lat range .* look like metres"
    if case == "two-polygon-layers":
        _squares([1, 2]).to_file(path, driver="GPKG", layer="outlines_2000")
        _squares([1, 2]).to_file(path, driver="GPKG", layer="outlines_2020")
        return path, (r"holds 2 layers \(outlines_2000 \(Polygon\), outlines_2020 \(Polygon\)\) and 2 of them polygons: "
                      r"write the glacier outlines' layer to a file of its own \(ogr2ogr outlines.gpkg two-polygon-layers.gpkg LAYER\)")
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case", ["missing", "folder", "random-bytes", "empty-file", "no-features", "wrong-id-field", "no-id", "metres-in-lonlat",
             "two-polygon-layers"]
)
def test_bad_inventories_are_one_line_errors_naming_the_file(tmp_path, case):
    path, message = _write_bad(tmp_path, case)
    with pytest.raises(InventoryError) as refused:
        read_inventory(path, "gid")
    text = str(refused.value)
    assert "\n" not in text
    assert str(path) in text
    assert re.search(message, text), text


def test_config_takes_an_inventory_path_alone_or_with_its_id_field(tmp_path):
    (tmp_path / "a.yaml").write_text("inventory: rgi.shp\n")
    (tmp_path / "b.yaml").write_text("inventory: {path: rgi.shp, id_field: rgi_id}\n")
    a, b = load_config(tmp_path / "a.yaml"), load_config(tmp_path / "b.yaml")
    assert a.inventory.id_field == "glacier_id" and a.inventory_path() == str(tmp_path / "rgi.shp")
    assert b.inventory.id_field == "rgi_id" and b.inventory_path() == str(tmp_path / "rgi.shp")


def test_the_inventory_fingerprint_follows_ids_outlines_and_buffer_not_row_order(tmp_path):
    from shapely.affinity import translate

    from pipeline.glaciers.inventory import inventory_sha256

    path = tmp_path / "ids.parquet"
    _squares([7, 3, 12]).to_parquet(path)
    inventory = read_inventory(path, "gid")
    sha = inventory_sha256(inventory, 100.0)
    assert inventory_sha256(inventory.iloc[::-1], 100.0) == sha
    assert inventory_sha256(inventory, 50.0) != sha
    moved = inventory.copy()
    moved.loc[moved.index[0], "geometry"] = translate(moved.geometry.iloc[0], 0.0001, 0.0)
    assert inventory_sha256(moved, 100.0) != sha
    assert inventory_sha256(inventory.assign(inventory_id=["7", "3", "13"]), 100.0) != sha



@pytest.mark.parametrize(("crs", "lon", "lat"), [
    ("EPSG:3338", -150.0, 61.0),   # Alaska Albers: area of use 172.42 E to 129.99 W
    ("EPSG:3338", 179.5, 52.0),    # its Aleutians, west of the 180° meridian
    ("EPSG:3832", 170.0, -43.5),   # Pacific Mercator: 98.69 E to 68 W; New Zealand
    ("EPSG:3832", -72.0, -50.0),   # and Patagonia
])
def test_projected_inventories_whose_crs_crosses_the_antimeridian_load(tmp_path, crs, lon, lat):
    path = tmp_path / "across.gpkg"
    _squares([1, 2], x0=lon, y0=lat).to_crs(crs).to_file(path, driver="GPKG")
    assert read_inventory(path, "gid").glacier_id.tolist() == [1, 2]
    far = tmp_path / "far.gpkg"  # the Alps written in Alaska Albers: outside its area of use, still refused
    _squares([1, 2], x0=10.8, y0=46.8).to_crs("EPSG:3338").to_file(far, driver="GPKG")
    with pytest.raises(InventoryError, match=r"far.gpkg: 2 outlines .* lie outside where EPSG:3338 is defined"):
        read_inventory(far, "gid")


def test_each_glacier_keeps_its_own_outline_when_the_file_carries_an_index_of_its_own(tmp_path):
    """A GeoParquet written after sorting (or after dropping a glacier) keeps its old index: lined up by
    that label, 30 of 31 glaciers got another one's outline, and a dropped row read as "coordinates
    that look like metres" (a helper's update audit)."""
    squares = _squares([f"G{i}" for i in range(6)])
    shuffled = squares.sort_values("gid", ascending=False)  # index 5, 4, ..., 0
    path = tmp_path / "sorted.parquet"
    shuffled.to_parquet(path)
    inventory = read_inventory(path, "gid")
    for gid, geom in zip(inventory.inventory_id, inventory.geometry, strict=True):
        assert geom.equals(squares.set_index("gid").geometry[gid]), gid
    dropped = tmp_path / "dropped.parquet"
    squares.drop(index=2).to_parquet(dropped)  # index 0, 1, 3, 4, 5
    inventory = read_inventory(dropped, "gid")
    assert inventory.inventory_id.tolist() == ["G0", "G1", "G3", "G4", "G5"] and inventory.geometry.notna().all()
    assert inventory.geometry.iloc[2].equals(squares.geometry.iloc[3])
