"""Threshold classifiers that glacier inventories have long used, as baselines for the D-UNet.

Both return a 0/1 probability, so they slot into the same accuracy tables as the networks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.model.inputs import SENTINEL2_BANDS, Index, spectral_index


def _threshold(reflectance: np.ndarray, bands: tuple[str, ...], index: Index, threshold: float) -> np.ndarray:
    values = spectral_index(reflectance, bands, index)
    valid = np.isfinite(reflectance).all(axis=0)
    with np.errstate(invalid="ignore"):
        return ((values > threshold) & valid).astype(np.float32)


@dataclass(frozen=True)
class BandRatioPredictor:
    """Glacier where red / SWIR16 > threshold (2.0 is the common choice; Paul et al.)."""

    bands: tuple[str, ...] = SENTINEL2_BANDS
    threshold: float = 2.0
    name: str = "band_ratio"

    def predict(self, reflectance: np.ndarray, terrain: dict[str, np.ndarray] | None = None) -> np.ndarray:
        return _threshold(reflectance, self.bands, "red_swir_ratio", self.threshold)


@dataclass(frozen=True)
class NDSIPredictor:
    """Glacier (snow and ice) where NDSI = (green - SWIR16) / (green + SWIR16) > threshold."""

    bands: tuple[str, ...] = SENTINEL2_BANDS
    threshold: float = 0.4
    name: str = "ndsi"

    def predict(self, reflectance: np.ndarray, terrain: dict[str, np.ndarray] | None = None) -> np.ndarray:
        return _threshold(reflectance, self.bands, "ndsi", self.threshold)
