"""A data check that a composite's reflectance has its offset applied once: not twice, not never.

Metadata decides each item's offset (catalog/items.py), and metadata is wrong at times: Earth
Search items mis-flagged `earthsearch:boa_offset_applied` in both directions have been
reported, and a provider may change its conventions. An offset applied twice lowers every
band by 0.1, one missing raises it by 0.1; both move NDSI and every model input, silently.
The pixels themselves tell: over any scene, the darkest band of a pixel (usually blue or
SWIR) is near 0 for snow and ice (SWIR ~0.01-0.05), water, shadows and vegetation (blue/red
~0.02-0.05).
- Applied twice: such pixels drop to about -0.1..-0.05; with the offset right, reflectance
  below -0.05 is rare (deep shadow, noise). Refused when more than TWICE_MAX_SHARE of the
  valid pixels have their darkest band below TWICE_BELOW.
- Missing: nothing is dark any more; the 1st percentile of the darkest band sits above
  ~0.1. Bright ground alone does the same, though: a chunk of desert, alluvial fans or pale
  rock with no water or shadow in it (the x4 study area's 70 x 256 px edge chunks at
  `tiling.tile_px: 256`: 0.084, and the run stopped). So a chunk is refused only when its snow
  and ice say so too: pixels with NDSI > SNOW_NDSI are dark in the SWIR whatever the ground
  around them (0.01-0.05), and a missing offset lifts them with everything else (NDSI stays
  above 0.4 for them). Refused when the 1st percentile of the darkest band is above
  MISSING_P1_ABOVE over all valid pixels and over at least MIN_VALID snow-and-ice pixels; a
  chunk with fewer of them is not judged for a missing offset (the chunks of a glacier region
  that hold ice are). Measured on the synthetic x4 area's composites (7 years, 256 px blocks):
  7 of 756 blocks had the all-pixel percentile above 0.08 with the offset right, none had both;
  with the offset missing every block with snow had both (snow 1st percentile >= 0.105).
Blocks with fewer than MIN_VALID valid pixels are not judged (too few to say).

`checked_reflectance` wires the check lazily into a composite: each spatial chunk is checked
in the task that computes it, and the run fails with ReflectanceOffsetError naming the items
of that year and the rule that decided their offset.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

from catalog.providers import REFLECTANCE_BANDS

TWICE_BELOW = -0.05
TWICE_MAX_SHARE = 0.05
MISSING_P1_ABOVE = 0.08
SNOW_NDSI = 0.4
MIN_VALID = 1000
GREEN, SWIR16 = 1, 4
"""Planes of green and SWIR 1.6 um in either sensor's band order (catalog.providers.REFLECTANCE_BANDS)."""
MAX_NAMED = 8  # items named in a message; the rest are counted


class ReflectanceOffsetError(RuntimeError):
    """A composite whose reflectance says its offset was applied twice or not at all; names the items."""


@dataclass(frozen=True)
class OffsetStats:
    """What the check measured: valid pixels, share with darkest band < TWICE_BELOW, 1st percentile of the darkest
    band; and the same percentile over the snow-and-ice pixels (NDSI > SNOW_NDSI), with their number."""

    n_valid: int
    share_far_below: float
    p1_darkest: float
    n_snow: int = 0
    p1_darkest_snow: float = float("nan")

    @property
    def judged(self) -> bool:
        return self.n_valid >= MIN_VALID

    @property
    def applied_twice(self) -> bool:
        return self.judged and self.share_far_below > TWICE_MAX_SHARE

    @property
    def missing(self) -> bool:
        return (self.judged and self.p1_darkest > MISSING_P1_ABOVE
                and self.n_snow >= MIN_VALID and self.p1_darkest_snow > MISSING_P1_ABOVE)


def offset_stats(reflectance: np.ndarray, band_axis: int = 0) -> OffsetStats:
    """The statistics of one image's reflectance (bands along `band_axis`, in REFLECTANCE_BANDS order: green is
    plane GREEN, SWIR 1.6 um plane SWIR16); a pixel is valid if every band is finite."""
    refl = np.moveaxis(np.asarray(reflectance), band_axis, 0).reshape(np.shape(reflectance)[band_axis], -1)
    valid = np.isfinite(refl).all(axis=0)
    n = int(valid.sum())
    if n == 0:
        return OffsetStats(0, 0.0, float("nan"))
    # Reduced over the whole planes first, the valid pixels picked after: picking every band's valid
    # pixels first (a (band, n) gather) and reducing that took 4.5x as long (317 vs ~70 ms on a
    # 2,240 px block, one core: every composite chunk-year pays it). The same values.
    darkest = refl.min(axis=0)[valid]
    green, swir = refl[GREEN][valid], refl[SWIR16][valid]
    snow = (green + swir > 0) & ((green - swir) > SNOW_NDSI * (green + swir))  # NDSI > SNOW_NDSI, with no division
    n_snow = int(snow.sum())
    return OffsetStats(n, float((darkest < TWICE_BELOW).mean()), float(np.percentile(darkest, 1)),
                       n_snow, float(np.percentile(darkest[snow], 1)) if n_snow else float("nan"))


def _items_phrase(item_ids: Sequence[str], decisions: Mapping[str, Mapping]) -> str:
    by_rule: dict[str, list[str]] = {}
    for item_id in item_ids:
        d = decisions.get(item_id) or {}
        rule = f"{d.get('rule', '?')}: {d.get('source', '?')} (scale {d.get('scale', '?')}, offset {d.get('offset', '?')})"
        by_rule.setdefault(rule, []).append(item_id)
    parts = []
    for rule, ids in by_rule.items():
        named = ", ".join(ids[:MAX_NAMED]) + (f" and {len(ids) - MAX_NAMED} more" if len(ids) > MAX_NAMED else "")
        parts.append(f"{named} [rule {rule}]")
    return "; ".join(parts) if parts else "no items recorded"


def check_reflectance_offset(
    reflectance: np.ndarray,
    item_ids: Sequence[str],
    decisions: Mapping[str, Mapping] | None = None,
    where: str = "composite",
    band_axis: int = 0,
) -> OffsetStats:
    """Raise ReflectanceOffsetError if `reflectance` (one composite image) looks offset twice or not at all.

    `item_ids`: the scenes the image was composited from; `decisions`: their scale/offset
    records (reflectance cube attrs `scale_offset`), quoted in the message with their rule.
    """
    stats = offset_stats(reflectance, band_axis)
    if not (stats.applied_twice or stats.missing):
        return stats
    decisions = decisions or {}
    if stats.applied_twice:
        what = (
            f"{stats.share_far_below:.0%} of its {stats.n_valid} valid pixels have their darkest band below "
            f"{TWICE_BELOW} (at most {TWICE_MAX_SHARE:.0%} expected): the reflectance offset looks applied twice"
        )
    else:
        what = (
            f"the 1st percentile of the darkest band over its {stats.n_valid} valid pixels is {stats.p1_darkest:.3f}, "
            f"over its {stats.n_snow} snow and ice pixels (NDSI > {SNOW_NDSI}) {stats.p1_darkest_snow:.3f} (snow and "
            f"ice are dark in the SWIR, below {MISSING_P1_ABOVE}): the reflectance offset looks missing"
        )
    raise ReflectanceOffsetError(
        f"{where}: {what}; items: {_items_phrase(item_ids, decisions)}. If these items' metadata is wrong "
        "(e.g. a mis-set earthsearch:boa_offset_applied), drop them, or fix scale_offset of the provider in "
        "catalog/providers.yaml"
    )


def _in_band_order(image: xr.DataArray) -> xr.DataArray:
    """`image` with its bands in REFLECTANCE_BANDS order when they are one sensor's bands by name (else as given)."""
    if "band" not in image.coords:
        return image
    names = [str(b) for b in image["band"].values]
    for order in REFLECTANCE_BANDS.values():
        if set(order) == set(names) and list(order) != names:
            return image.sel(band=list(order))
    return image


def _check_block(block: xr.DataArray, items: bytes, label: str) -> xr.DataArray:
    """The check on one chunk; `items`: the pickled (items_by_year, decisions), unpickled only to word an error.

    As dicts, a range's item ids and scale/offset records (all years, every scene of the bbox) were
    pickled again with every chunk's task: 30,000 items (3.3 MB) cost 4.5 ms per task on a 2-worker
    local cluster; as one bytes object, 0.4 ms."""
    for k, year in enumerate(block["year"].values):
        values = _in_band_order(block.isel(year=k)).transpose("band", "y", "x").values
        stats = offset_stats(values)
        if not (stats.applied_twice or stats.missing):
            continue
        items_by_year, decisions = pickle.loads(items)
        ids = list(items_by_year.get(str(int(year)), []))
        y, x = block["y"].values, block["x"].values
        where = f"{label} composite {int(year)} (chunk x {x[0]:.0f}..{x[-1]:.0f}, y {y[-1]:.0f}..{y[0]:.0f})"
        check_reflectance_offset(values, ids, {i: decisions.get(i) for i in ids}, where)
    return block


def checked_reflectance(
    reflectance: xr.DataArray,
    items_by_year: Mapping[str, Sequence[str]],
    decisions: Mapping[str, Mapping],
    label: str = "",
) -> xr.DataArray:
    """`reflectance` (year, band, y, x) with the offset check run on each chunk as it is computed (lazy).

    An eager array is checked now. `items_by_year`: {"2022": [item ids]}; `decisions`:
    {item id: scale/offset record}. Nothing is read by calling this.
    """
    items = pickle.dumps((dict(items_by_year), dict(decisions)))
    if reflectance.chunks is None:
        return _check_block(reflectance, items, label)
    if len(reflectance.chunksizes["band"]) > 1:
        reflectance = reflectance.chunk({"band": -1})
    return xr.map_blocks(_check_block, reflectance, kwargs={"items": items, "label": label}, template=reflectance)
