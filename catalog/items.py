"""STAC items made ready for stacking, in one place: CRS codes, assets, platforms, footprints, scale and offset.

stackstac 0.5.1 reads only `proj:epsg`, while pystac >= 1.12 and current public catalogs
write `proj:code`; it silently fills an asset an item lacks with nodata; providers name one
asset differently over time (Planetary Computer's `SCL` was `SCL-20m`); a collection holds
platforms a composite must not mix (Landsat 7 SLC-off in `landsat-c2-l2`); a bbox is not a
footprint (antimeridian tiles, high latitudes); and Sentinel-2's reflectance offset changed
with processing baseline 04.00 (Jan 2022), which each provider encodes its own way (see
`reflectance_scale_offset`). Every cube is built from items that went through here, so those
facts are handled once and tested once (tests/test_real_stac.py, on real provider items).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pystac
import shapely
from shapely import affinity, unary_union
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from catalog.providers import ProviderProfile

# Sentinel-2 L2A digital numbers: reflectance = DN * 1e-4 (+ -0.1 from baseline 04.00 on,
# unless the provider already removed the +1000 DN: see reflectance_scale_offset).
S2_SCALE = 1e-4
S2_OFFSET_FROM_BASELINE_04 = -0.1
EARTHSEARCH_FLAG = "earthsearch:boa_offset_applied"
S2_KNOWN_OFFSETS = (0.0, S2_OFFSET_FROM_BASELINE_04)  # what ESA's L2A has ever used (BOA_ADD_OFFSET 0 / -1000)
# Landsat Collection 2 Level-2 surface reflectance.
LANDSAT_SCALE = 2.75e-5
LANDSAT_OFFSET = -0.2


class ItemError(ValueError):
    """An item that cannot go into a cube as it is; the message names it and says what to do."""


def _epsg_from_code(code: object) -> int | None:
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        try:
            return int(code.split(":", 1)[1])
        except ValueError:
            return None
    return None


def normalize_items(
    items: Iterable[pystac.Item], profile: ProviderProfile | None = None, kind: str | None = None
) -> list[pystac.Item]:
    """Copies of `items` with `proj:epsg` added from `proj:code` on the item and on each asset.

    The caller's items are left untouched (a search result may be reused by other code).
    An existing `proj:epsg` is kept. With a `profile` and `kind`, an asset found under one of
    the profile's fallback keys (providers.yaml lists them, e.g. Planetary Computer's older
    `SCL-20m`) is renamed to the canonical key, so one stack reads items of either vintage.

    An item with neither (no projection extension) is passed on as it is, not refused: cubes are
    stacked on the target grid's explicit EPSG, bounds and resolution, and every COG is read in
    the CRS its own header gives, so such an item lands where its COG header says (the same
    pixels as with a correct `proj:code`; stackstac only loses the footprint it uses to skip
    chunks the asset does not touch). Where an item does state a CRS, catalog/scene_check.py's checks
    skip a scene whose COG header says another one (on_unreadable="skip").
    """
    out = []
    for item in items:
        item = item.clone()
        epsg = _epsg_from_code(item.properties.get("proj:code"))
        if epsg is not None and item.properties.get("proj:epsg") is None:
            item.properties["proj:epsg"] = epsg
        for asset in item.assets.values():
            asset_epsg = _epsg_from_code(asset.extra_fields.get("proj:code"))
            if asset_epsg is not None and asset.extra_fields.get("proj:epsg") is None:
                asset.extra_fields["proj:epsg"] = asset_epsg
        if profile is not None and kind is not None:
            _rename_fallback_assets(item, profile, kind)
        out.append(item)
    return out


def _rename_fallback_assets(item: pystac.Item, profile: ProviderProfile, kind: str) -> None:
    for band in profile.assets.get(kind, {}):
        canonical, *fallbacks = profile.asset_keys(kind, band)
        if canonical in item.assets:
            continue
        for key in fallbacks:
            if key in item.assets:
                item.assets[canonical] = item.assets.pop(key)
                break


def check_platforms(items: Sequence[pystac.Item], profile: ProviderProfile, kind: str) -> None:
    """Refuse any item whose `platform` the profile does not accept for `kind` (e.g. Landsat 4/5/7).

    The search already asks for these platforms only; an item of another one that still
    arrives (a catalog that ignores the filter, a hand-made item list) would mix another
    sensor into a composite (Landsat 7 SLC-off stripes, TM's other bands), so it is refused.
    """
    allowed = profile.allowed_platforms(kind)
    if allowed is None:
        return
    for item in items:
        platform = item.properties.get("platform")
        if platform is None or str(platform).lower() not in allowed:
            said = f"platform {platform!r}" if platform is not None else "no platform"
            raise ItemError(
                f"item {item.id!r} has {said}; provider {profile.name!r} accepts {kind} from "
                f"{', '.join(allowed)} only: drop the item (search with catalog.scenes.find_scenes, which "
                "filters by platform) or edit platforms in catalog/providers.yaml"
            )


def _unwrapped(geom: BaseGeometry) -> BaseGeometry:
    """A polygon drawn across the antimeridian without splitting (lon span > 180) moved to 0..360."""
    parts = list(getattr(geom, "geoms", [geom]))
    out = []
    for part in parts:
        west, _, east, _ = part.bounds
        if east - west > 180.0:
            part = shapely.transform(part, lambda xy: np.column_stack([np.where(xy[:, 0] < 0, xy[:, 0] + 360.0, xy[:, 0]), xy[:, 1]]))
        out.append(part)
    return unary_union(out) if len(out) > 1 else out[0]


def item_footprint(item: pystac.Item) -> BaseGeometry | None:
    """The item's lon/lat footprint: its geometry (bbox only where it has none); None if neither.

    A bbox is a poor footprint: a tile across the antimeridian has a bbox with west > east (or
    -180..180), and a slanted high-latitude footprint fills half its bbox or even pokes past it.
    Antimeridian-split MultiPolygons are kept as they are (see footprint_meets); a polygon drawn
    across 180 without a split is moved to 0..360.
    """
    if item.geometry:
        geom = shape(item.geometry)
        if not geom.is_valid:
            geom = geom.buffer(0)
        return _unwrapped(geom)
    if item.bbox:
        b = list(item.bbox)
        west, south, east, north = (b[0], b[1], b[3], b[4]) if len(b) == 6 else b
        if west > east:  # STAC: a bbox across the antimeridian has west > east
            east += 360.0
        return box(west, south, east, north)
    return None


def lonlat_region(polygon: BaseGeometry) -> BaseGeometry:
    """A lon/lat region (e.g. TargetGrid.lonlat_polygon()) unwrapped to one side of the antimeridian."""
    return _unwrapped(polygon)


def footprint_meets(footprint: BaseGeometry | None, region: BaseGeometry) -> bool:
    """Whether a lon/lat footprint meets a lon/lat region, either side of the antimeridian (None: unknown, yes)."""
    if footprint is None:
        return True
    return any(footprint.intersects(affinity.translate(region, xoff=shift)) for shift in (0.0, -360.0, 360.0))


def wrapped_footprints(footprints: Iterable[BaseGeometry]) -> BaseGeometry:
    """The union of footprints and their copies 360 degrees east and west (for coverage checks near 180)."""
    geoms = [g for fp in footprints for g in (fp, affinity.translate(fp, xoff=360.0), affinity.translate(fp, xoff=-360.0))]
    return unary_union(geoms)


def item_epsg(item: pystac.Item) -> int | None:
    """The item's EPSG code from `proj:epsg` or `proj:code`."""
    epsg = item.properties.get("proj:epsg")
    return int(epsg) if epsg is not None else _epsg_from_code(item.properties.get("proj:code"))


def require_assets(items: Sequence[pystac.Item], asset_keys: Sequence[str], profile: ProviderProfile) -> None:
    """Raise if any item lacks one of `asset_keys` (stackstac would fill it with nodata silently)."""
    for item in items:
        missing = [k for k in asset_keys if k not in item.assets]
        if missing:
            raise ItemError(
                f"item {item.id!r} has no asset {', '.join(repr(k) for k in missing)} expected by provider "
                f"{profile.name!r} (it has {sorted(item.assets)}): fix the asset keys of {profile.name!r} in "
                "catalog/providers.yaml, pick the provider that matches this catalog, or drop the item"
            )


def _raster_band(item: pystac.Item, key: str) -> dict:
    bands = item.assets[key].extra_fields.get("raster:bands") or [{}]
    return bands[0] or {}


def asset_nodata(item: pystac.Item, key: str) -> float | None:
    """The `raster:bands` nodata of an asset, or None."""
    return _raster_band(item, key).get("nodata")


def raster_scale_offset(item: pystac.Item, key: str) -> tuple[float | None, float | None]:
    """`scale` and `offset` from an asset's `raster:bands` (None where absent)."""
    rb = _raster_band(item, key)
    return rb.get("scale"), rb.get("offset")


def _baseline_tuple(baseline: str) -> tuple[int, ...]:
    return tuple(int(p) for p in baseline.split("."))


def s2_offset_from_baseline(item: pystac.Item) -> float | None:
    """-0.1 from processing baseline 04.00 on, 0.0 before; None if the item does not say."""
    baseline = item.properties.get("s2:processing_baseline")
    if not baseline:
        return None
    try:
        return S2_OFFSET_FROM_BASELINE_04 if _baseline_tuple(str(baseline)) >= (4, 0) else 0.0
    except ValueError:
        return None


@dataclass(frozen=True)
class ScaleOffset:
    """reflectance = DN * scale + offset; `rule` is the provider's rule, `source` what decided it."""

    scale: float
    offset: float
    source: str
    rule: str = ""

    def record(self) -> dict:
        """The decision as plain data, for provenance (cube attrs `scale_offset`)."""
        return {"scale": float(self.scale), "offset": float(self.offset), "rule": self.rule, "source": self.source}


def _flag(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _s2_from_baseline(item: pystac.Item, scale: float, rule: str, why: str) -> ScaleOffset:
    offset = s2_offset_from_baseline(item)
    if offset is None:
        raise ItemError(
            f"item {item.id!r} states no usable s2:processing_baseline "
            f"({item.properties.get('s2:processing_baseline')!r}), which rule {rule!r} needs to decide its "
            "reflectance offset (-0.1 from 04.00 on): add the property, or drop the item"
        )
    baseline = item.properties["s2:processing_baseline"]
    return ScaleOffset(scale, offset, f"{why}processing baseline {baseline} -> offset {offset:g}", rule)


def reflectance_scale_offset(item: pystac.Item, sensor: str, key: str, rule: str) -> ScaleOffset:
    """Per-item, per-asset scale and offset by the provider's `rule`, applied explicitly (never a loader's rescale).

    Sentinel-2 from processing baseline 04.00 on carries +1000 DN (offset -0.1), and providers
    say differently whether their pixels still do (providers.yaml `scale_offset`):
    - `earthsearch-flag` (Earth Search sentinel-2-l2a, and the embedded catalog):
      `earthsearch:boa_offset_applied: true` means the COGs were written with the offset already
      removed -> offset 0 (their raster:bands still say -0.1 and are not used); false or absent ->
      the baseline decides.
    - `raster-bands` (Earth Search sentinel-2-c1-l2a): the asset's raster:bands scale/offset; an
      asset without a raster:bands offset -> the baseline decides; an offset other than 0 or
      -0.1 is refused (ItemError: no L2A product has used another).
    - `baseline` (Planetary Computer: no raster:bands): >= 04.00 -> -0.1, else 0; a raster:bands
      offset that disagrees is warned about and not used.
    An item whose baseline is needed and missing is refused (ItemError): a wrong guess moves all
    reflectance by 0.1. Scale: raster:bands, else 1e-4.
    Landsat C2 L2 (any rule): raster:bands, else the published 2.75e-5 / -0.2.
    Mis-flagged items do exist (users report both directions): the composite sanity check
    (catalog/reflectance_check.py) refuses what the metadata got wrong.
    """
    scale, offset = raster_scale_offset(item, key)
    if sensor == "landsat":
        if scale is not None or offset is not None:
            return ScaleOffset(
                scale if scale is not None else LANDSAT_SCALE,
                offset if offset is not None else LANDSAT_OFFSET,
                f"raster:bands scale {scale} offset {offset}",
                rule,
            )
        return ScaleOffset(LANDSAT_SCALE, LANDSAT_OFFSET, "no raster:bands: published Landsat C2 L2 2.75e-5 / -0.2", rule)
    if sensor != "sentinel-2":
        raise ValueError(f"unknown sensor {sensor!r}: use 'sentinel-2' or 'landsat'")
    s2_scale = scale if scale is not None else S2_SCALE
    if rule == "earthsearch-flag":
        flag = _flag(item.properties.get(EARTHSEARCH_FLAG))
        if flag is True:
            return ScaleOffset(s2_scale, 0.0, f"{EARTHSEARCH_FLAG} true: COG already offset -> offset 0", rule)
        said = "false" if flag is False else "absent"
        return _s2_from_baseline(item, s2_scale, rule, f"{EARTHSEARCH_FLAG} {said}, ")
    if rule == "raster-bands":
        if offset is not None:
            if not any(abs(offset - known) < 1e-9 for known in S2_KNOWN_OFFSETS):
                raise ItemError(
                    f"item {item.id!r} asset {key!r}: raster:bands offset {offset} is none of the Sentinel-2 L2A "
                    f"offsets {S2_KNOWN_OFFSETS} (rule raster-bands): its metadata is wrong; drop the item"
                )
            return ScaleOffset(s2_scale, float(offset), f"raster:bands scale {s2_scale:g} offset {offset:g}", rule)
        return _s2_from_baseline(item, s2_scale, rule, "no raster:bands offset, ")
    if rule == "baseline":
        so = _s2_from_baseline(item, s2_scale, rule, "")
        if offset is not None and abs(offset - so.offset) > 1e-9:
            warnings.warn(
                f"item {item.id!r} asset {key!r}: raster:bands offset {offset} disagrees with processing "
                f"baseline {item.properties['s2:processing_baseline']} (offset {so.offset:g}); using the baseline's",
                stacklevel=2,
            )
        return so
    raise ValueError(f"unknown scale/offset rule {rule!r}: use earthsearch-flag, raster-bands or baseline")
