"""STAC items made ready for stacking, in one place: CRS codes, assets present, scale and offset.

stackstac 0.5.1 reads only `proj:epsg`, while pystac >= 1.12 and current public catalogs
write `proj:code`; it silently fills an asset an item lacks with nodata; and Sentinel-2's
reflectance offset changed with processing baseline 04.00 (Jan 2022). Every cube is built
from items that went through here, so those three facts are handled once and tested once.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pystac

from catalog.providers import ProviderProfile

# Sentinel-2 L2A digital numbers: reflectance = DN * 1e-4 (+ -0.1 from baseline 04.00 on).
S2_SCALE = 1e-4
S2_OFFSET_FROM_BASELINE_04 = -0.1
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


def normalize_items(items: Iterable[pystac.Item]) -> list[pystac.Item]:
    """Copies of `items` with `proj:epsg` added from `proj:code` on the item and on each asset.

    The caller's items are left untouched (a search result may be reused by other code).
    An existing `proj:epsg` is kept.

    An item with neither (no projection extension) is passed on as it is, not refused: cubes are
    stacked on the target grid's explicit EPSG, bounds and resolution, and every COG is read in
    the CRS its own header gives, so such an item lands where its COG header says (the same
    pixels as with a correct `proj:code`; stackstac only loses the footprint it uses to skip
    chunks the asset does not touch). Where an item does state a CRS, catalog/cube.py's checks
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
        out.append(item)
    return out


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
    """reflectance = DN * scale + offset; `source` says where the numbers came from."""

    scale: float
    offset: float
    source: str


def reflectance_scale_offset(item: pystac.Item, sensor: str, key: str) -> ScaleOffset:
    """Per-item, per-asset scale and offset, applied explicitly (never a loader's silent rescale).

    Sentinel-2: the processing baseline decides the offset when the item states it (catalog
    offset metadata has been wrong at times); a `raster:bands` offset that disagrees is warned
    about and not used. Without a baseline, `raster:bands`; without that, DN / 1e4.
    Landsat C2 L2: `raster:bands`, else the published 2.75e-5 / -0.2.
    """
    scale, offset = raster_scale_offset(item, key)
    if sensor == "sentinel-2":
        from_baseline = s2_offset_from_baseline(item)
        if from_baseline is not None:
            if offset is not None and abs(offset - from_baseline) > 1e-9:
                warnings.warn(
                    f"item {item.id!r} asset {key!r}: raster:bands offset {offset} disagrees with processing "
                    f"baseline {item.properties['s2:processing_baseline']} (offset {from_baseline}); "
                    "using the baseline's",
                    stacklevel=2,
                )
            return ScaleOffset(scale if scale is not None else S2_SCALE, from_baseline, "processing baseline")
        if offset is not None or scale is not None:
            return ScaleOffset(scale if scale is not None else S2_SCALE, offset or 0.0, "raster:bands")
        return ScaleOffset(S2_SCALE, 0.0, "default")
    if sensor == "landsat":
        if scale is not None or offset is not None:
            return ScaleOffset(
                scale if scale is not None else LANDSAT_SCALE,
                offset if offset is not None else LANDSAT_OFFSET,
                "raster:bands",
            )
        return ScaleOffset(LANDSAT_SCALE, LANDSAT_OFFSET, "default")
    raise ValueError(f"unknown sensor {sensor!r}: use 'sentinel-2' or 'landsat'")
