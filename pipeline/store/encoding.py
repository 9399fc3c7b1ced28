"""How the pipeline's float and count arrays become the store's compact integer layers.

`probability` is uint8 p x 255, `observed` a uint8 clear count and `indices` a uint8 of two index
bits (see `pipeline.store.layout`). The conversions live here, beside nothing else, so that
inference, tests and the store's own error messages ("convert with encode_probability(p)")
point at one definition of each encoding.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

MAX_CLEAR_COUNT = 254
NDSI_BIT, RATIO_BIT = 1, 2
NDSI_THRESHOLD, RATIO_THRESHOLD = 0.4, 2.0
"""The classic thresholds (as `pipeline.model.baselines`): NDSI = (green - SWIR16) / (green + SWIR16)
> 0.4 (snow and ice), red / SWIR16 > 2 (Paul et al.)."""


def encode_probability(p: np.ndarray) -> np.ndarray:
    """Glacier probability 0-1 (float, NaN = no data -> 0) as the store's uint8 0-255 (round half to even)."""
    p = np.nan_to_num(np.asarray(p, dtype=np.float32), nan=0.0)
    return np.rint(np.clip(p, 0.0, 1.0) * 255.0).astype(np.uint8)


def encode_observed(clear_count: np.ndarray, elevation: np.ndarray | None = None) -> np.ndarray:
    """Clear-observation counts (NaN = 0) as the store's uint8 `observed`: clipped to 254, and 0
    where `elevation` is NaN (a DEM void is not observed: the model saw no terrain there)."""
    count = np.nan_to_num(np.asarray(clear_count, dtype=np.float64), nan=0.0)
    out = np.clip(count, 0, MAX_CLEAR_COUNT).astype(np.uint8)
    if elevation is not None:
        out[~np.isfinite(np.asarray(elevation, dtype=np.float64))] = 0
    return out


def encode_indices(reflectance: np.ndarray, bands: Iterable[str]) -> np.ndarray:
    """The store's uint8 `indices` of a (band, y, x) reflectance: bit 0 NDSI > 0.4, bit 1 red/SWIR16 > 2.

    `bands` names the planes (either sensor's names, `pipeline.model.inputs.BAND_ROLES`). A pixel
    with any band missing (NaN) sets no bit: no index maps ice where the composite has no value.
    """
    from pipeline.model.inputs import spectral_index

    bands = tuple(str(b) for b in bands)
    refl = np.asarray(reflectance, dtype=np.float32)
    if refl.shape[0] and not np.isfinite(refl[0]).any():  # nothing seen (a piece far from ice): one band looked at, not six
        return np.zeros(refl.shape[1:], np.uint8)
    valid = np.isfinite(refl).all(axis=0)
    with np.errstate(invalid="ignore"):
        ndsi = valid & (spectral_index(refl, bands, "ndsi") > NDSI_THRESHOLD)
        ratio = valid & (spectral_index(refl, bands, "red_swir_ratio") > RATIO_THRESHOLD)
    return (ndsi * np.uint8(NDSI_BIT) | ratio * np.uint8(RATIO_BIT)).astype(np.uint8)


def index_mask(indices, bit: int):
    """Where the store's `indices` (numpy or xarray, any shape) have index `bit` (NDSI_BIT or
    RATIO_BIT) set: the index maps ice there. A pixel no scene saw (`layout.INDICES_NOT_READ`, every
    bit set) maps none."""
    from pipeline.store.layout import INDICES_NOT_READ

    return (indices != INDICES_NOT_READ) & ((indices & bit) > 0)
