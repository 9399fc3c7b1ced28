"""Scenes, bytes and scene observations per year: searched in the STAC metadata, or estimated from the revisit.

A plan asks the configured STAC API (one quick TCP check per URL first) and counts what the
items' footprints bring into the read area; offline, or when the API cannot be reached or
fails, it estimates from the orbits (`footprints`) and says which and why.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from urllib.parse import urlparse

import shapely

from catalog.grid import TargetGrid
from catalog.providers import QUALITY_BAND, REFLECTANCE_BANDS, get_profile
from catalog.redact import redact
from catalog.scenes import find_scenes
from catalog.search import SearchError, open_source
from pipeline.config import Config
from pipeline.scale.plan.footprints import (
    DTYPE_BYTES,
    NOMINAL_ASSETS,
    footprint_multiplicity,
    lonlat_projector,
    mgrs_tiles,
    nominal_bytes_per_m2,
    revisit_days,
    season_days,
    wrs2_scenes,
)


def _unreachable(url: str, timeout: float = 5.0) -> str | None:
    """Why a STAC API cannot be reached (None if a TCP connection opens): asked once, quickly."""
    parts = urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except OSError as err:
        return f"{type(err).__name__}: {err}"


def _asset_res_bytes(item, asset_key: str, band: str, sensor: str) -> tuple[float, int]:
    """Native pixel size (m) and bytes per sample of one asset, from its metadata or the sensor's nominal values."""
    res, nbytes = NOMINAL_ASSETS[sensor].get(band, (None, 2))
    asset = item.assets.get(asset_key)
    if asset is None:
        return res, nbytes
    fields = asset.extra_fields
    raster = (fields.get("raster:bands") or [{}])[0]
    transform = fields.get("proj:transform")
    res = abs(transform[0]) if transform else raster.get("spatial_resolution") or fields.get("gsd") or res
    nbytes = DTYPE_BYTES.get(raster.get("data_type"), nbytes)
    return float(res), nbytes


def _searched(cfg: Config, sensor: str, grid: TargetGrid, read_area, years: Sequence[int], items_by_year: dict):
    """Scenes, bytes and observations per year from the items themselves (footprint within the read area)."""
    profile = get_profile(cfg.sensors[sensor].provider)
    bands = (*REFLECTANCE_BANDS[sensor], QUALITY_BAND[sensor])
    to_grid = lonlat_projector(grid.epsg)
    scenes, nbytes, obs = {}, {}, {}
    for year in years:
        items = items_by_year[year]
        scenes[year], nbytes[year], obs[year] = len(items), 0, 0
        for item in items:
            footprint = shapely.transform(shapely.segmentize(shapely.geometry.shape(item.geometry), 0.05), to_grid)
            area = shapely.intersection(footprint, read_area).area
            if area <= 0:
                continue
            obs[year] += round(area / grid.resolution**2)
            for band in bands:
                res, b = _asset_res_bytes(item, profile.asset_key(sensor, band), band, sensor)
                nbytes[year] += round(area / res**2) * b
    return scenes, nbytes, obs


def _estimated(sensor: str, grid: TargetGrid, bbox, read_m2: float, years: Sequence[int], season: tuple[str, str]):
    """Scenes, bytes and observations per year from the revisit: footprints over the bbox x acquisitions in the season."""
    footprints = mgrs_tiles(bbox) if sensor == "sentinel-2" else wrs2_scenes(bbox)
    per_point = footprint_multiplicity(sensor, (bbox[1] + bbox[3]) / 2)
    scenes, nbytes, obs, why = {}, {}, {}, []
    for year in years:
        days, how = revisit_days(sensor, year)
        acquisitions = season_days(year, season) / days if days else 0.0
        scenes[year] = round(footprints * acquisitions)
        nbytes[year] = round(read_m2 * per_point * acquisitions * nominal_bytes_per_m2(sensor))
        obs[year] = round(read_m2 / grid.resolution**2 * per_point * acquisitions)
        if how not in why:
            why.append(how)
    unit = "MGRS tiles" if sensor == "sentinel-2" else "WRS-2 path/rows"
    return scenes, nbytes, obs, (
        f"{footprints} {unit} x season days / revisit ({'; '.join(why)}); "
        "cloud filter and orbit overlap not modelled"
    )


def scenes_per_year(cfg: Config, sensor: str, grid: TargetGrid, read_area, offline: bool, unreachable: dict[str, str | None]):
    """Scenes, bytes and observations per year: searched, or estimated with the reason why (and search notes)."""
    sensor_cfg = cfg.sensors[sensor]
    years, season, bbox = tuple(cfg.years), cfg.season.as_tuple(), cfg.region.bbox
    url = cfg.source_url(sensor_cfg)
    remote = url.startswith(("http://", "https://"))
    why_not = "offline" if offline and remote else None
    if why_not is None and remote:
        if url not in unreachable:  # asked once per URL, not once per sensor
            unreachable[url] = _unreachable(url)
        if unreachable[url]:
            why_not = f"STAC API {redact(url)} unreachable ({unreachable[url]})"
    items_by_year: dict[int, list] = {}
    notes: list[str] = []
    if why_not is None:
        try:
            profile = get_profile(sensor_cfg.provider)
            source = open_source(url, profile.signer())
            for year in years:
                try:
                    items_by_year[year] = find_scenes(source, profile, sensor, bbox, year, season, sensor_cfg.max_cloud)
                except SearchError as err:
                    if err.__cause__ is not None:  # the API failed, not the query
                        raise
                    items_by_year[year] = []
                    notes.append(redact(str(err)))
        except Exception as err:  # noqa: BLE001 - any failure to ask means: estimate instead, and say why
            why_not = f"search at {redact(url)} failed ({type(err).__name__}: {redact(str(err))})"
            notes = []
    if why_not is None:
        scenes, nbytes, obs = _searched(cfg, sensor, grid, read_area, years, items_by_year)
        return scenes, nbytes, obs, "searched", f"find_scenes at {redact(url)}, max_cloud {sensor_cfg.max_cloud:g} %", notes
    scenes, nbytes, obs, how = _estimated(sensor, grid, bbox, read_area.area, years, season)
    return scenes, nbytes, obs, "estimated", f"{why_not}: {how}", notes
