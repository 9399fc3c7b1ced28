"""A run's outputs as a static STAC catalog, so results are found the way the inputs were.

The inputs arrive as STAC items searched by collection, bbox and season; the outputs go out
the same way: one item per year whose assets are that year's slice of the store, a glacier
mask COG per sensor and the outlines, and one collection holding the tables and the report.
`catalog.search.LocalCatalogSource` (or any STAC tool) then answers "the 2019 maps over this
bbox" without knowing the store's layout. The store stays the source of truth; the catalog
only points at it and is rebuilt whole on every publish.

This module owns the catalog; the mask COGs it points at are written by `pipeline.outputs.glacier_masks`
(`write_glacier_masks`, `PublishError`, `MASK_NODATA`).

Layout under a run's ``out`` (``pipeline.run``)::

    masks/SENSOR/glacier_mask_SENSOR_YEAR.tif      write_glacier_masks: uint8 COG on the sensor's grid,
                                                   1 glacier (probability >= threshold), 0 not glacier,
                                                   255 nodata = not observed (cloud, no scene) or not computed yet
    stac/catalog.json                              publish_catalog: relative links only (SELF_CONTAINED)
    stac/provenance.json                           the run's provenance, as given
    stac/glacierwatch-outputs/collection.json      assets: table-NAME (parquet), report (html), provenance
    stac/glacierwatch-outputs/glacierwatch-YEAR/glacierwatch-YEAR.json
                                                   assets: probability-SENSOR (the store's sensor group),
                                                   mask-SENSOR (COG), outlines (all years: rows year == YEAR)

Asset hrefs are relative to the item or collection JSON, so ``out`` can be moved or synced as a
whole; a store on an object store (``s3://...``) keeps its absolute URL.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pystac
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from shapely.geometry import mapping
from shapely.ops import unary_union

from catalog.grid import TargetGrid
from catalog.redact import redact
from catalog.scenes import season_bounds
from pipeline.outputs.glacier_masks import MASK_NODATA, PublishError, mask_threshold
from pipeline.outputs.replace import building
from pipeline.store import PROBABILITY, RegionStore

__all__ = ["COLLECTION_ID", "publish_catalog"]

COLLECTION_ID = "glacierwatch-outputs"
DEFAULT_SEASON = {"start": "07-01", "end": "09-30"}
# STAC 1.1 deprecates "proprietary" for "other": the outputs carry no licence of their own until
# whoever publishes them chooses one; the sources' credits and the Sentinel legal notice come with them.
LICENSE = "other"
# The media type Zarr readers of STAC (xpystac, odc-stac) match on; pystac calls it MediaType.ZARR.
ZARR_TYPE = "application/vnd+zarr"
SENTINEL_LEGAL_NOTICE = "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice"
"""The licence link of the providers' own Sentinel-2 collections (Earth Search's, in ../shared/data/real-stac)."""
SOURCE_PROVIDERS = {
    "sentinel-2": pystac.Provider("ESA / Copernicus", roles=[pystac.ProviderRole.LICENSOR, pystac.ProviderRole.PRODUCER],
                                  url="https://sentinels.copernicus.eu"),
    "landsat": pystac.Provider("USGS", roles=[pystac.ProviderRole.LICENSOR, pystac.ProviderRole.PRODUCER],
                               url="https://www.usgs.gov/landsat-missions"),
}


def publish_catalog(
    out_dir: str | Path,
    *,
    store_url: str,
    masks: Mapping[tuple[str, int], Path],
    outlines: Path,
    tables: Mapping[str, Path],
    report: Path | None,
    provenance: Mapping[str, Any],
) -> Path:
    """Write ``out_dir/catalog.json``: collection `glacierwatch-outputs` with one item per store year.

    Items come from the store (a year any sensor holds); `masks` ((sensor, year) -> COG, from
    `write_glacier_masks`) adds mask assets where given. `tables` (name -> parquet) and `report`
    become collection assets, `provenance` is written beside the catalog as provenance.json.
    ``provenance["season"]`` ({"start": "MM-DD", "end": "MM-DD"}, as `pipeline.run` records
    it) dates the items (`catalog.scenes.season_bounds`: a season crossing the new year starts in
    the year before the item's); default July-September. The catalog is built in a sibling folder and
    moved into place only when complete, so a failure leaves the previous catalog as it was and
    a rerun replaces it whole. Returns the path of catalog.json.
    """
    out_dir = Path(out_dir).resolve()
    store = RegionStore.open(store_url)
    files = _check_files(out_dir, store, masks, outlines, tables, report)
    season = _season(provenance)
    with building(out_dir) as build:
        build.mkdir(parents=True)
        (build / "provenance.json").write_text(redact(json.dumps(provenance, indent=1, default=str)))
        catalog = _build_catalog(store, files, season, provenance, build / "provenance.json")
        # The build folder is a sibling of out_dir, so hrefs made relative here stay right after the move.
        catalog.normalize_hrefs(str(build))
        catalog.make_all_asset_hrefs_relative()
        catalog.save(pystac.CatalogType.SELF_CONTAINED)
        _redact_files(build)
    return out_dir / "catalog.json"


NETWORK_NAMES = {"unet": "U-Net", "dunet": "D-UNet (deformable blocks at every level)",
                 "dunet-shallow": "D-UNet (deformable blocks in the shallow levels)",
                 "dunet-deep": "D-UNet (deformable blocks in the deep levels)"}


def _network_name(provenance: Mapping[str, Any], sensor: str) -> str:
    """The architecture of the weights that made `sensor`'s maps (provenance), as a reader names it: the
    collection said "D-UNet" whatever ran, while the shipped networks are U-Nets."""
    architecture = (provenance.get("weights") or {}).get(sensor, {}).get("architecture")
    return NETWORK_NAMES.get(architecture, architecture or "network of unrecorded architecture")


def _redact_files(folder: Path) -> None:
    """Every JSON document of the catalog through `redact`: a remote store's href, or any field a
    credential could reach, is published with its userinfo and signature parameters masked."""
    for path in folder.rglob("*.json"):
        text = path.read_text(encoding="utf-8")
        clean = redact(text)
        if clean != text:
            path.write_text(clean, encoding="utf-8")


def _check_files(out_dir: Path, store: RegionStore, masks, outlines, tables, report) -> dict[str, Any]:
    """Resolved input paths; refuse missing files, masks the store cannot explain, files inside out_dir."""
    store_years = {s: store.years(s) for s in store.sensors()}
    resolved_masks = {}
    for (sensor, year), path in sorted(masks.items()):
        if int(year) not in store_years.get(sensor, []):
            raise PublishError(
                f"mask {path} is for {sensor} {year}, which the store at {store.url} does not hold: "
                "write the masks from this store (write_glacier_masks(store_url, ...))"
            )
        resolved_masks[(sensor, int(year))] = Path(path).resolve()
    named = {
        **{f"mask {s} {y}": p for (s, y), p in resolved_masks.items()},
        "outlines": Path(outlines).resolve(),
        **{f"table {name}": Path(p).resolve() for name, p in tables.items()},
        **({"report": Path(report).resolve()} if report is not None else {}),
    }
    if _is_local_store(store) and Path(_store_href(store, "")).is_relative_to(out_dir):
        raise PublishError(
            f"the store ({store.url}) lies inside the catalog folder {out_dir}, which publishing replaces whole: "
            "publish into a folder of its own (e.g. out/stac)"
        )
    for what, path in named.items():
        if not path.is_file():
            raise PublishError(f"{what}: no file at {path}; write the run's outputs before publishing them")
        if path.is_relative_to(out_dir):
            raise PublishError(
                f"{what} ({path}) lies inside the catalog folder {out_dir}, which publishing replaces whole: "
                "keep outputs beside it (e.g. out/masks, out/tables) and publish into out/stac"
            )
    return {
        "masks": resolved_masks,
        "outlines": named["outlines"],
        "tables": {name: Path(p).resolve() for name, p in sorted(tables.items())},
        "report": named.get("report"),
    }


def _season(provenance: Mapping[str, Any]) -> tuple[str, str]:
    """The run's season as ("MM-DD", "MM-DD"), which `catalog.scenes.season_bounds` dates each year by."""
    season = {**DEFAULT_SEASON, **dict(provenance.get("season") or {})}
    try:
        (m0, d0), (m1, d1) = (tuple(int(v) for v in str(season[k]).split("-")) for k in ("start", "end"))
        dt.date(2001, m0, d0), dt.date(2001, m1, d1)  # noqa: B018 -- raises on a date that does not exist
    except ValueError as err:
        raise PublishError(f"provenance season {season} is not MM-DD to MM-DD (e.g. 07-01 to 09-30)") from err
    return f"{m0:02d}-{d0:02d}", f"{m1:02d}-{d1:02d}"


def _is_local_store(store: RegionStore) -> bool:
    return "://" not in store.url or store.url.startswith("file://")


def _store_href(store: RegionStore, sensor: str) -> str:
    if not _is_local_store(store):
        return f"{store.url}/{sensor}"  # remote: stays absolute
    return str(Path(store.url.removeprefix("file://")).resolve() / sensor)


def _set_projection(asset: pystac.Asset, grid: TargetGrid) -> None:
    proj = ProjectionExtension.ext(asset, add_if_missing=True)
    proj.code = f"EPSG:{grid.epsg}"
    proj.shape = list(grid.shape)
    proj.transform = list(grid.transform)[:6]


def _build_catalog(store: RegionStore, files: dict[str, Any], season, provenance: Mapping[str, Any],
                   provenance_file: Path) -> pystac.Catalog:
    grids = store.grids
    sensors = store.sensors()
    years = {s: store.years(s) for s in sensors}
    records = {s: store.year_records(s) for s in sensors}
    weights = dict(store.metadata["weights_sha256"])
    all_years = sorted({y for ys in years.values() for y in ys})
    footprint = {s: grids[s].lonlat_polygon() for s in sensors}

    catalog = pystac.Catalog(
        "glacierwatch",
        "Outputs of a glacierwatch run: yearly glacier probabilities and masks, outlines, tables and report.",
        title="glacierwatch outputs",
    )
    region = unary_union(list(footprint.values())) if footprint else None
    if all_years:
        temporal = [season_bounds(all_years[0], season)[0], season_bounds(all_years[-1], season)[1]]
    else:
        temporal = [None, None]
    networks = ", ".join(f"{s}: {_network_name(provenance, s)}" for s in sensors)
    span = f"{all_years[0]}-{all_years[-1]}" if all_years else ""
    credits = ((f" Contains modified Copernicus Sentinel data {span}." if "sentinel-2" in sensors else "")
               + (" Landsat data courtesy of the U.S. Geological Survey." if "landsat" in sensors else ""))
    collection = pystac.Collection(
        COLLECTION_ID,
        "Annual glacier maps of one region from Sentinel-2 and Landsat seasonal composites (network "
        f"probabilities x 255 in a Zarr store, {networks}; glacier masks as COGs), the outlines per glacier and "
        "year, and the statistics tables. Each item is one year; its assets are that year's slice of every output."
        + credits,
        extent=pystac.Extent(
            pystac.SpatialExtent([list(region.bounds)] if region is not None else [[-180.0, -90.0, 180.0, 90.0]]),
            pystac.TemporalExtent([temporal]),
        ),
        title="glacierwatch outputs",
        license=LICENSE,
        providers=[
            pystac.Provider("glacierwatch", description=f"version {provenance.get('version', 'unknown')}",
                            roles=[pystac.ProviderRole.PROCESSOR, pystac.ProviderRole.PRODUCER]),
            *(SOURCE_PROVIDERS[s] for s in sensors if s in SOURCE_PROVIDERS),
        ],
        summaries=pystac.Summaries({
            "glacierwatch:sensors": sensors,
            "gsd": sorted({grids[s].resolution for s in sensors}),
            "proj:code": sorted({f"EPSG:{grids[s].epsg}" for s in sensors}),
        }),
        keywords=["glaciers", "glacier outlines", "sentinel-2", "landsat"],
    )
    ProjectionExtension.add_to(collection)  # its summaries name proj:code: declared, so validators check it
    if "sentinel-2" in sensors:  # the Copernicus licence asks for its notice on derived products
        collection.add_link(pystac.Link("license", SENTINEL_LEGAL_NOTICE, title="Legal notice on the use of Copernicus Sentinel data"))
    if "config_hash" in provenance:
        collection.extra_fields["glacierwatch:config_hash"] = provenance["config_hash"]
    catalog.add_child(collection)

    for name, path in files["tables"].items():
        collection.add_asset(f"table-{name}", pystac.Asset(
            str(path), title=f"table {name}", media_type=pystac.MediaType.VND_APACHE_PARQUET, roles=["data"],
            description=f"statistics table {name!r} for every sensor and year"))
    if files["report"] is not None:
        collection.add_asset("report", pystac.Asset(
            str(files["report"]), title="report", media_type=pystac.MediaType.HTML, roles=["overview"]))
    collection.add_asset("provenance", pystac.Asset(
        str(provenance_file), title="provenance", media_type=pystac.MediaType.JSON, roles=["metadata"],
        description="config and its hash, weights, scenes per year, skipped scenes, timings"))

    for year in all_years:
        present = [s for s in sensors if year in years[s]]
        start, end = season_bounds(year, season)
        # Union of the sensors' grid outlines; simplified to drop the collinear densification points (< 1 cm).
        geometry = unary_union([footprint[s] for s in present]).simplify(1e-7)
        item = pystac.Item(
            f"glacierwatch-{year}",
            geometry=mapping(geometry),
            bbox=list(geometry.bounds),
            datetime=None,
            start_datetime=start,
            end_datetime=end,
            properties={
                "title": f"glacier maps {year}",
                "glacierwatch:year": year,
                "glacierwatch:sensors": present,
                # Per sensor: a year's sensors may come from different runs (update appends years).
                "glacierwatch:config_hash": {s: records[s].get(year, {}).get("config_hash") for s in present},
                "glacierwatch:version": {s: records[s].get(year, {}).get("version") for s in present},
                "glacierwatch:weights_sha256": {s: weights.get(s) for s in present},
                "glacierwatch:scene_count": {s: _count(records[s].get(year, {}).get("scene_ids")) for s in present},
            },
        )
        collection.add_item(item)
        for sensor in present:
            grid = grids[sensor]
            index = years[sensor].index(year)
            asset = pystac.Asset(
                _store_href(store, sensor),
                title=f"{sensor} glacier probability {year}",
                media_type=ZARR_TYPE,
                roles=["data"],
                description=(f"Zarr v3 group of the region store; {year} is index {index} of the year axis of "
                             f"`{PROBABILITY}` (year, y, x), uint8 = probability x 255, >= 128 glacier, fill 0"),
                extra_fields={"glacierwatch:variable": PROBABILITY, "glacierwatch:year_index": index},
            )
            item.add_asset(f"probability-{sensor}", asset)
            _set_projection(asset, grid)
            RasterExtension.ext(asset, add_if_missing=True).bands = [RasterBand.create(
                data_type=DataType.UINT8, scale=1 / 255, offset=0.0, spatial_resolution=grid.resolution)]
            if (sensor, year) in files["masks"]:
                path = files["masks"][(sensor, year)]
                threshold = mask_threshold(path, grid, f"mask {sensor} {year}")
                asset = pystac.Asset(
                    str(path),
                    title=f"{sensor} glacier mask {year}",
                    media_type=pystac.MediaType.COG,
                    roles=["data"],
                    description=(f"1 = glacier{'' if threshold is None else f' (probability >= {threshold}/255)'}, "
                                 f"0 = not glacier, {MASK_NODATA} = no data (not observed: cloud or no scene; not computed)"),
                    extra_fields={} if threshold is None else {"glacierwatch:threshold": threshold},
                )
                item.add_asset(f"mask-{sensor}", asset)
                _set_projection(asset, grid)
                RasterExtension.ext(asset, add_if_missing=True).bands = [RasterBand.create(
                    nodata=MASK_NODATA, data_type=DataType.UINT8, spatial_resolution=grid.resolution)]
        item.add_asset("outlines", pystac.Asset(
            str(files["outlines"]),
            title=f"glacier outlines {year}",
            media_type=pystac.MediaType.VND_APACHE_PARQUET,
            roles=["data"],
            description=f"GeoParquet of every sensor and year; this item's outlines are the rows with year == {year}",
            extra_fields={"glacierwatch:filter": f"year == {year}"},  # a pandas query expression
        ))
    return catalog


def _count(scene_ids) -> int | None:
    return None if scene_ids is None else len(scene_ids)
