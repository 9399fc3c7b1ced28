"""Real provider metadata: every recorded item gets its provider's scale/offset, assets, EPSG and platform decision.

Fixtures: ../shared/data/real-stac/ (item JSON recorded from Earth Search, Planetary Computer
and stactools; see its README for the provider quirks). No network: hrefs are never opened.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pystac
import pytest
from shapely.geometry import MultiPolygon, Polygon, box, shape

from catalog.gdal_env import ObjectStorageError, check_object_storage, scene_read_env
from catalog.grid import TargetGrid
from catalog.items import (
    ItemError,
    check_platforms,
    footprint_meets,
    item_epsg,
    item_footprint,
    normalize_items,
    reflectance_scale_offset,
    require_assets,
)
from catalog.providers import QUALITY_BAND, REFLECTANCE_BANDS, SIGNERS, ProviderError, get_profile
from catalog.scene_check import RegionError, items_over_grid
from catalog.scenes import find_scenes
from catalog.search import LocalCatalogSource, SceneQuery

# ../shared beside the checkout (as tests/conftest.py's SHARED); skipped where absent.
pytestmark = pytest.mark.filterwarnings("ignore:Could not parse bucket/account from href")

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-stac"
FILES = sorted(p for p in REAL.rglob("*.json")) if REAL.is_dir() else []
ABSENT = pytest.param(None, marks=pytest.mark.skip(reason=f"real STAC items not found at {REAL}"))

# Fixture folder -> (provider profile, kind). stactools' Sentinel-2 builder is what Earth Search's
# Collection 1 runs (same asset keys, raster:bands); stactools' Landsat builder is PC's and ES's.
GROUPS = {
    "earth-search/sentinel-2-l2a": ("earth-search", "sentinel-2"),
    "earth-search/sentinel-2-c1-l2a": ("earth-search-c1", "sentinel-2"),
    "earth-search/landsat-c2-l2": ("earth-search", "landsat"),
    "earth-search/cop-dem-glo-30": ("earth-search", "dem"),
    "planetary-computer/sentinel-2-l2a": ("planetary-computer", "sentinel-2"),
    "planetary-computer/landsat-c2-l2": ("planetary-computer", "landsat"),
    "planetary-computer/cop-dem-glo-30": ("planetary-computer", "dem"),
    "stactools/sentinel-2-l2a": ("earth-search-c1", "sentinel-2"),
    "stactools/landsat-c2-l2": ("earth-search", "landsat"),
}


def _group(path: Path) -> str:
    return path.parent.relative_to(REAL).as_posix()


def _load(path: Path) -> pystac.Item:
    return pystac.Item.from_dict(json.loads(path.read_text()))


def _real(name: str) -> pystac.Item:
    path = REAL / name
    if not path.is_file():
        pytest.skip(f"{path} absent")
    return _load(path)


def _params():
    return [pytest.param(p, id=p.relative_to(REAL).as_posix()) for p in FILES] or [ABSENT]


def _documented_s2_offset(group: str, props: dict, raster_offset: float | None) -> float:
    """What each provider documents (README of the fixtures; Element84/earth-search #9, #23; PC #134)."""
    baseline = tuple(int(v) for v in props["s2:processing_baseline"].split("."))
    if group == "earth-search/sentinel-2-l2a":  # the flag is the truth; raster:bands still says -0.1
        if props.get("earthsearch:boa_offset_applied") is True:
            return 0.0
        return -0.1 if baseline >= (4, 0) else 0.0
    if group == "planetary-computer/sentinel-2-l2a":  # pixels keep +1000 DN from 04.00; no raster:bands
        return -0.1 if baseline >= (4, 0) else 0.0
    return raster_offset  # Collection 1 / stactools: raster:bands is to be applied


def test_every_folder_is_mapped_to_a_provider():
    if not FILES:
        pytest.skip(f"real STAC items not found at {REAL}")
    assert {_group(p) for p in FILES} == set(GROUPS)
    assert len(FILES) == 126


@pytest.mark.parametrize("path", _params())
def test_item_gets_its_providers_scale_offset_assets_and_epsg(path):
    group = _group(path)
    provider, kind = GROUPS[group]
    profile = get_profile(provider)
    raw = _load(path)
    (item,) = normalize_items([raw], profile, kind)

    # EPSG from proj:code or proj:epsg, on a projection that matches where the item is.
    epsg = item_epsg(item)
    if kind == "dem":
        assert epsg == 4326
        assert profile.asset_key("dem", "elevation") in item.assets
        return
    zone = (epsg or 0) % 100
    if kind == "sentinel-2":  # the MGRS tile names the UTM zone and hemisphere
        tile = item.properties.get("s2:mgrs_tile") or f"{item.properties['mgrs:utm_zone']:02d}{item.properties['mgrs:latitude_band']}"
        assert epsg == (32600 if tile[2] >= "N" else 32700) + int(tile[:2])
    else:  # Landsat: north UTM zones throughout (south scenes too), the zone of the scene's centre
        centre_zone = int((item_footprint(item).centroid.x + 180) // 6) % 60 + 1
        assert 32601 <= epsg <= 32660 and abs((zone - centre_zone + 30) % 60 - 30) <= 1

    # Bands from the provider's asset keys (fallback keys renamed to the canonical one).
    keys = [profile.asset_key(kind, b) for b in (*REFLECTANCE_BANDS[kind], QUALITY_BAND[kind])]
    require_assets([item], keys, profile)
    if group == "planetary-computer/sentinel-2-l2a":  # no raster:bands: only the baseline can decide
        assert "raster:bands" not in raw.assets["B04"].extra_fields

    # Scale and offset by the provider's rule, for every reflectance band.
    rule = profile.scale_offset_rule(kind)
    for band in REFLECTANCE_BANDS[kind]:
        key = profile.asset_key(kind, band)
        rb = (item.assets[key].extra_fields.get("raster:bands") or [{}])[0]
        if kind == "landsat":
            so = reflectance_scale_offset(item, kind, key, rule)
            assert (so.scale, so.offset) == (2.75e-05, -0.2)
            continue
        want = _documented_s2_offset(group, item.properties, rb.get("offset"))
        if want not in (0.0, -0.1):
            with pytest.raises(ItemError, match=rf"{item.id}.*offset {want}"):
                reflectance_scale_offset(item, kind, key, rule)
            return
        so = reflectance_scale_offset(item, kind, key, rule)
        assert (so.scale, so.offset) == (1e-4, want) and so.rule == rule


def test_the_same_acquisition_reads_the_same_in_both_earth_search_collections():
    """Tile 32VKL on 2025-07-17: sentinel-2-l2a COGs had the 1000 DN removed, Collection 1's keep it."""
    old = _real("earth-search/sentinel-2-l2a/S2B_32VKL_20250717_0_L2A.json")
    c1 = _real("earth-search/sentinel-2-c1-l2a/S2B_T32VKL_20250717T112116_L2A.json")
    a = reflectance_scale_offset(old, "sentinel-2", "red", get_profile("earth-search").scale_offset_rule("sentinel-2"))
    b = reflectance_scale_offset(c1, "sentinel-2", "red", get_profile("earth-search-c1").scale_offset_rule("sentinel-2"))
    assert old.assets["red"].extra_fields["raster:bands"][0]["offset"] == -0.1  # ignored: the flag says it is applied
    assert (a.offset, b.offset) == (0.0, -0.1)
    # A surface of reflectance 0.15: DN 1500 in the flagged COG, 2500 in Collection 1.
    assert 1500 * a.scale + a.offset == pytest.approx(0.15) and 2500 * b.scale + b.offset == pytest.approx(0.15)
    # Before the fix the baseline alone decided: 1500 * 1e-4 - 0.1 = 0.05 (snow NDSI 0.82 -> 1.17).


def test_planetary_computer_offset_follows_the_baseline_and_old_items_find_scl():
    old = _real("planetary-computer/sentinel-2-l2a/S2A_MSIL2A_20190101T000001_R116_T58UGE.json")
    new = _real("planetary-computer/sentinel-2-l2a/S2A_MSIL2A_20220728T093601_R036_T47XMK_20220729T125849.json")
    profile = get_profile("planetary-computer")
    assert "SCL" not in old.assets and "SCL-20m" in old.assets
    (norm,) = normalize_items([old], profile, "sentinel-2")
    assert norm.assets["SCL"].href == old.assets["SCL-20m"].href and "SCL-20m" in old.assets  # caller's item untouched
    assert reflectance_scale_offset(norm, "sentinel-2", "B04", "baseline").offset == 0.0  # 02.12
    assert reflectance_scale_offset(new, "sentinel-2", "B04", "baseline").offset == -0.1  # 04.00


@pytest.mark.parametrize(
    ("name", "accepted"),
    [
        ("stactools/landsat-c2-l2/LT04_L2SP_002026_19830110_02_T1.json", False),
        ("stactools/landsat-c2-l2/LT05_L2SP_010067_19860424_02_T2.json", False),
        ("stactools/landsat-c2-l2/LE07_L2SP_021030_20100109_02_T1.json", False),
        ("stactools/landsat-c2-l2/LC08_L2SP_047027_20201204_02_T1.json", True),
        ("stactools/landsat-c2-l2/LC09_L2SP_010065_20220129_02_T1.json", True),
        ("earth-search/landsat-c2-l2/LC08_L2SP_033032_20231008_02_T1.json", True),
        ("planetary-computer/landsat-c2-l2/LC09_L2SP_079240_20240513_02_T1.json", True),
    ],
)
def test_landsat_other_than_8_and_9_is_refused_by_name(name, accepted):
    item = _real(name)
    for provider in ("earth-search", "planetary-computer", "local"):
        if accepted:
            check_platforms([item], get_profile(provider), "landsat")
        else:
            with pytest.raises(ItemError, match=rf"{item.id}.*platform '{item.properties['platform']}'.*landsat-8, landsat-9"):
                check_platforms([item], get_profile(provider), "landsat")


def test_searches_ask_for_landsat_8_and_9_only(tmp_path):
    names = [
        "stactools/landsat-c2-l2/LT04_L2SP_002026_19830110_02_T1.json",
        "stactools/landsat-c2-l2/LT05_L2SP_010067_19860424_02_T2.json",
        "stactools/landsat-c2-l2/LE07_L2SP_021030_20100109_02_T1.json",
        "stactools/landsat-c2-l2/LC08_L2SP_047027_20201204_02_T1.json",
        "stactools/landsat-c2-l2/LC09_L2SP_010065_20220129_02_T1.json",
    ]
    catalog = pystac.Catalog("real", "real Landsat items")
    for name in names:
        item = _real(name)
        item.clear_links()
        catalog.add_item(item)
    catalog.normalize_and_save(str(tmp_path / "cat"), pystac.CatalogType.SELF_CONTAINED)
    source = LocalCatalogSource(tmp_path / "cat" / "catalog.json")
    from datetime import datetime, timezone

    every = SceneQuery("landsat-c2-l2", (-180, -90, 180, 90), datetime(1980, 1, 1, tzinfo=timezone.utc), datetime(2030, 1, 1, tzinfo=timezone.utc))
    assert len(source.search(every)) == 5
    profile = get_profile("earth-search")
    query = SceneQuery(**{**every.__dict__, "platforms": profile.platforms["landsat"]})
    assert [i.properties["platform"] for i in source.search(query)] == ["landsat-8", "landsat-9"]
    assert query.query_extension() is None  # platforms are filtered on the client (see catalog.search)
    # find_scenes asks for the profile's platforms: of 2010's Landsat 7 scene nothing is left.
    from catalog.search import SearchError

    with pytest.raises(SearchError, match="no landsat scenes from landsat-8, landsat-9"):
        find_scenes(source, profile, "landsat", (-87, 42, -83, 45), 2010, ("01-01", "12-31"), None)


def test_a_stac_api_search_keeps_only_the_profiles_platforms():
    from catalog.search import StacApiSource

    sent = {}
    answer = [_load(p) for p in sorted((REAL / "stactools" / "landsat-c2-l2").glob("L*.json"))]
    if not answer:
        pytest.skip(f"real Landsat items not found under {REAL}")

    class Client:
        def search(self, **kwargs):
            sent.update(kwargs)
            return type("R", (), {"items": lambda self: iter(answer)})()

    source = StacApiSource("https://example.invalid/stac")
    source.__dict__["_client"] = Client()
    find_query = SceneQuery("landsat-c2-l2", (84, 43, 85, 44), *_season(), max_cloud=50.0, platforms=("landsat-8", "landsat-9"))
    kept = source.search(find_query)
    # only the cloud limit goes to the API (its `in` operator is not served everywhere)
    assert sent["query"] == {"eo:cloud_cover": {"lte": 50.0}}
    assert {i.properties.get("platform") for i in kept} <= {"landsat-8", "landsat-9"}
    assert len(kept) == 2 and len(answer) == 5  # Landsat 4, 5 and 7 dropped


def _season():
    from catalog.scenes import season_bounds

    return season_bounds(2020, ("07-01", "09-30"))


# ---------------------------------------------------------------------------------------------
# object storage


def _gdal_option(env, name: str):
    """The GDAL option `name` as a reader sees it inside the environment (opening and reading)."""
    import rasterio

    with env.open:
        opened = rasterio.env.getenv().get(name)
    with env.read:
        assert rasterio.env.getenv().get(name) == opened
    return opened


def test_profiles_configure_gdal_as_the_items_storage_says():
    es_landsat = _real("earth-search/landsat-c2-l2/LC08_L2SP_033032_20231008_02_T1.json")
    es_dem = _real("earth-search/cop-dem-glo-30/Copernicus_DSM_COG_10_S90_00_W171_00_DEM.json")
    profile = get_profile("earth-search")
    # As recorded (pystac migrates the storage extension on reading, as pystac-client's search does).
    raw_landsat, raw_dem = (json.loads((REAL / n).read_text()) for n in (
        "earth-search/landsat-c2-l2/LC08_L2SP_033032_20231008_02_T1.json",
        "earth-search/cop-dem-glo-30/Copernicus_DSM_COG_10_S90_00_W171_00_DEM.json",
    ))
    assert es_landsat.assets["red"].href.startswith("s3://usgs-landsat/")
    assert raw_landsat["assets"]["red"]["storage:requester_pays"] is True
    assert _gdal_option(scene_read_env(profile, "landsat"), "AWS_REQUEST_PAYER") == "requester"
    assert es_dem.assets["data"].href.startswith("s3://copernicus-dem-30m/")
    assert raw_dem["properties"]["storage:requester_pays"] is False
    assert _gdal_option(scene_read_env(profile, "dem"), "AWS_NO_SIGN_REQUEST") == "YES"
    assert _gdal_option(scene_read_env(profile, "sentinel-2"), "AWS_NO_SIGN_REQUEST") is None
    pc = _real("planetary-computer/landsat-c2-l2/LC09_L2SP_079240_20240513_02_T1.json")
    assert pc.assets["red"].href.startswith("https://")  # signed https: no AWS settings
    assert _gdal_option(scene_read_env(get_profile("planetary-computer"), "landsat"), "AWS_REQUEST_PAYER") is None


def test_requester_pays_without_credentials_is_refused_before_any_work(tmp_path):
    es = get_profile("earth-search")
    with pytest.raises(ObjectStorageError) as err:
        check_object_storage(es, "landsat", environ={}, home=tmp_path)
    message = str(err.value)
    assert "\n" not in message and isinstance(err.value, ProviderError)
    assert "'earth-search'" in message and "landsat-c2-l2" in message and "AWS_ACCESS_KEY_ID" in message
    assert "planetary-computer" in message
    check_object_storage(es, "landsat", environ={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}, home=tmp_path)
    check_object_storage(es, "landsat", environ={"AWS_PROFILE": "work"}, home=tmp_path)
    # a role's credentials: an EKS service account, an ECS task; an SSO profile in ~/.aws/config
    check_object_storage(es, "landsat", environ={"AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token", "AWS_ROLE_ARN": "arn"},
                         home=tmp_path)
    check_object_storage(es, "landsat", environ={"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials"}, home=tmp_path)
    (tmp_path / "sso" / ".aws").mkdir(parents=True)
    (tmp_path / "sso" / ".aws" / "config").write_text("[default]\nsso_session = work\nsso_account_id = 1\n")
    check_object_storage(es, "landsat", environ={}, home=tmp_path / "sso")
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text("[default]\naws_access_key_id = a\naws_secret_access_key = b\n")
    check_object_storage(es, "landsat", environ={}, home=tmp_path)
    for kind in ("dem", "sentinel-2"):  # public buckets need nothing
        check_object_storage(es, kind, environ={}, home=tmp_path / "nowhere")
    check_object_storage(get_profile("planetary-computer"), "landsat", environ={}, home=tmp_path / "nowhere")


def test_items_that_say_their_bucket_is_requester_pays_are_refused_without_credentials_whatever_the_catalog(tmp_path):
    """A mirror of Earth Search's Landsat (sensors.landsat.url set: the provider check above is skipped) serves
    the same s3://usgs-landsat hrefs; the items' storage:requester_pays says so, before any scene is read."""
    from catalog.gdal_env import check_requester_pays

    path = REAL / "earth-search" / "landsat-c2-l2" / "LC08_L2SP_033032_20231008_02_T1.json"
    if not path.is_file():
        pytest.skip(f"real STAC item not found at {path}")
    es = get_profile("earth-search")
    landsat = normalize_items([_load(path)], es, "landsat")
    keys = [es.asset_key("landsat", b) for b in (*REFLECTANCE_BANDS["landsat"], QUALITY_BAND["landsat"])]
    with pytest.raises(ObjectStorageError) as err:
        check_requester_pays(landsat, keys, "landsat", environ={}, home=tmp_path)
    message = str(err.value)
    assert "\n" not in message and "1 landsat items (e.g. LC08_L2SP_033032_20231008_02_T1, s3://usgs-landsat/" in message
    assert "AWS_ACCESS_KEY_ID" in message
    check_requester_pays(landsat, keys, "landsat", environ={"AWS_PROFILE": "work"}, home=tmp_path)  # credentials: fine
    sentinel = REAL / "earth-search" / "sentinel-2-c1-l2a" / "S2A_T38WMA_20240419T090557_L2A.json"  # requester_pays false
    s2_keys = [es.asset_key("sentinel-2", b) for b in REFLECTANCE_BANDS["sentinel-2"]]
    check_requester_pays(normalize_items([_load(sentinel)], get_profile("earth-search-c1"), "sentinel-2"), s2_keys,
                         "sentinel-2", environ={}, home=tmp_path)


# ---------------------------------------------------------------------------------------------
# signing


def test_planetary_computer_without_its_package_is_one_line_naming_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "planetary_computer", None)  # import fails as if not installed
    with pytest.raises(ProviderError) as err:
        get_profile("planetary-computer").signer()
    assert "pip install planetary-computer" in str(err.value) and "\n" not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_a_broken_signer_is_a_provider_error(monkeypatch):
    def broken():
        raise AttributeError("module 'planetary_computer' has no attribute 'sign_inplace'")

    monkeypatch.setitem(SIGNERS, "planetary-computer", broken)
    with pytest.raises(ProviderError, match="'planetary-computer'.*AttributeError"):
        get_profile("planetary-computer").signer()


# ---------------------------------------------------------------------------------------------
# footprints


def test_a_grid_in_the_empty_corner_of_a_high_latitude_bbox_meets_no_item():
    item = _real("planetary-computer/landsat-c2-l2/LC09_L2SP_079240_20240513_02_T1.json")
    footprint = item_footprint(item)
    assert footprint.area < 0.5 * box(*item.bbox).area  # a slanted scene fills 42 % of its bbox
    west, south, east, north = item.bbox
    corner = (west + 0.05, north - 0.15, west + 0.45, north - 0.05)  # inside the bbox, outside the scene
    assert box(*item.bbox).contains(box(*corner)) and not footprint.intersects(box(*corner))
    grid = TargetGrid.from_lonlat_bbox(corner, 30)
    with pytest.raises(RegionError, match="outside every one of the 1 items"):
        items_over_grid([item], grid)
    centre = footprint.centroid
    inside = TargetGrid.from_lonlat_bbox((centre.x - 0.1, centre.y - 0.05, centre.x + 0.1, centre.y + 0.05), 30)
    assert items_over_grid([item], inside) == [item]


def _split_at_antimeridian(item: pystac.Item) -> pystac.Item:
    """The real tile 01VCG as Earth Search writes tiles across 180: a MultiPolygon split there, bbox west > east."""
    west = shape(item.geometry)  # the real footprint ends at -180
    east = Polygon([(179.7, 60.15), (180.0, 60.16), (180.0, 60.41), (179.75, 60.41)])
    out = item.clone()
    out.geometry = MultiPolygon([west, east]).__geo_interface__
    out.bbox = [179.7, west.bounds[1], west.bounds[2], west.bounds[3]]
    return out


def test_tiles_across_the_antimeridian_are_kept_on_both_sides():
    real = _real("stactools/sentinel-2-l2a/S2B_OPER_MSI_L2A_TL_S2RP_20230315T224658_A018417_T01VCG.json")
    assert real.bbox[0] == -180.0
    item = _split_at_antimeridian(real)
    east_grid = TargetGrid.from_lonlat_bbox((179.8, 60.25, 179.9, 60.3), 10)  # UTM 60N, east of the split
    west_grid = TargetGrid.from_lonlat_bbox((-179.5, 60.2, -179.4, 60.25), 10)  # UTM 1N
    assert east_grid.epsg == 32660 and west_grid.epsg == 32601
    # The bbox reads as -179.1..179.7 (the wrong way round the globe): a bbox test drops both.
    assert not box(*item.bbox).intersects(box(179.8, 60.25, 179.9, 60.3))
    assert items_over_grid([item], east_grid) == [item]
    assert items_over_grid([item], west_grid) == [item]
    # The real (unsplit) footprint stops at -180: the grid east of 180 is not in it.
    with pytest.raises(RegionError):
        items_over_grid([real], east_grid)
    # Without a geometry, a west > east bbox still wraps the right way.
    bare = item.clone()
    bare.geometry = None
    assert footprint_meets(item_footprint(bare), east_grid.lonlat_polygon())
    assert footprint_meets(item_footprint(bare), west_grid.lonlat_polygon())
    assert not footprint_meets(item_footprint(bare), box(0.0, 60.2, 1.0, 60.3))


def test_dem_tiles_cover_a_polar_region_by_their_footprints():
    from catalog.scenes import find_dem_items

    tiles = [_real(f"earth-search/cop-dem-glo-30/Copernicus_DSM_COG_10_S90_00_W{w}_00_DEM.json") for w in (177, 176)]

    class Source:
        url = "recorded"

        def search(self, query):
            return [t for t in tiles if footprint_meets(item_footprint(t), box(*query.bbox))]

    assert find_dem_items(Source(), get_profile("earth-search"), (-176.9, -89.9, -175.1, -89.1)) == tiles
    from catalog.search import SearchError

    with pytest.raises(SearchError, match="do not cover"):
        find_dem_items(Source(), get_profile("earth-search"), (-176.9, -89.9, -174.5, -89.1))
