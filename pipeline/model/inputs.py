"""What the model eats: the input recipe, fixed at training time and shipped with the weights.

A model is only valid for the exact channels, order and normalisation it was trained on, so the
recipe travels in the model card and the same `build_inputs` runs in training and inference.
Sentinel-2 and Landsat are given as the same six physical bands under their own asset names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

SENTINEL2_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
LANDSAT_BANDS = ("blue", "green", "red", "nir08", "swir16", "swir22")
PHYSICAL_BANDS = ("blue", "green", "red", "nir", "swir16", "swir22")
"""The physical band of each position in SENTINEL2_BANDS and LANDSAT_BANDS."""

BAND_ROLES: dict[str, str] = {
    **dict(zip(SENTINEL2_BANDS, PHYSICAL_BANDS)),
    **dict(zip(LANDSAT_BANDS, PHYSICAL_BANDS)),
}

Index = Literal["ndsi", "ndwi", "red_swir_ratio"]
TerrainChannel = Literal["elevation", "slope"]


def band_by_role(reflectance: np.ndarray, bands: tuple[str, ...], role: str) -> np.ndarray:
    """The (y, x) plane of the band playing `role` (e.g. "swir16") in a (band, y, x) array."""
    for i, name in enumerate(bands):
        if BAND_ROLES.get(name) == role:
            return reflectance[i]
    raise KeyError(f"no {role!r} band among {bands}; known band names: {sorted(BAND_ROLES)}")


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is not positive (no meaningful ratio)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan).astype(np.float32)


def spectral_index(reflectance: np.ndarray, bands: tuple[str, ...], index: Index) -> np.ndarray:
    """NDSI (green-swir16)/(green+swir16), NDWI (green-nir)/(green+nir) or red/swir16."""
    green = band_by_role(reflectance, bands, "green")
    if index == "ndsi":
        swir = band_by_role(reflectance, bands, "swir16")
        return _ratio(green - swir, green + swir)
    if index == "ndwi":
        nir = band_by_role(reflectance, bands, "nir")
        return _ratio(green - nir, green + nir)
    red = band_by_role(reflectance, bands, "red")
    return _ratio(red, band_by_role(reflectance, bands, "swir16"))


class InputRecipe(BaseModel):
    """Band order, derived indices, terrain channels and per-channel mean/std, in channel order.

    Channels are the reflectance bands, then `indices`, then `terrain`. `mean`/`std` stay None
    until `fit_normalisation` has seen training data; `build_inputs` refuses an unfitted recipe.
    """

    model_config = ConfigDict(frozen=True)

    bands: tuple[str, ...] = SENTINEL2_BANDS
    indices: tuple[Index, ...] = ()
    terrain: tuple[TerrainChannel, ...] = ()
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> InputRecipe:
        unknown = [b for b in self.bands if b not in BAND_ROLES]
        if unknown:
            raise ValueError(f"unknown band names {unknown}; use {SENTINEL2_BANDS} or {LANDSAT_BANDS}")
        for stats in (self.mean, self.std):
            if stats is not None and len(stats) != self.n_channels:
                raise ValueError(f"{len(stats)} normalisation values for {self.n_channels} channels {self.channel_names}")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")
        return self

    @property
    def channel_names(self) -> tuple[str, ...]:
        return (*self.bands, *self.indices, *self.terrain)

    @property
    def n_channels(self) -> int:
        return len(self.bands) + len(self.indices) + len(self.terrain)

    def raw_channels(self, reflectance: np.ndarray, terrain: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Un-normalised (channel, y, x) float32, NaN where a channel has no value."""
        if reflectance.ndim != 3 or reflectance.shape[0] != len(self.bands):
            raise ValueError(f"reflectance must be (band, y, x) with bands {self.bands}, got shape {reflectance.shape}")
        reflectance = reflectance.astype(np.float32, copy=False)
        planes = [*reflectance, *(spectral_index(reflectance, self.bands, i) for i in self.indices)]
        missing = [name for name in self.terrain if terrain is None or name not in terrain]
        if missing:
            raise KeyError(f"recipe needs terrain channels {missing}; pass them in `terrain`")
        planes += [np.asarray(terrain[name], dtype=np.float32) for name in self.terrain]  # type: ignore[index]
        return np.stack(planes)

    def build_inputs(
        self, reflectance: np.ndarray, terrain: dict[str, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Normalised (channel, y, x) float32 with no-data filled by 0 (the mean), and a (y, x) valid mask.

        A pixel is valid where every reflectance band and terrain channel is finite; an index whose
        denominator vanishes is filled but does not invalidate the pixel.
        """
        if self.mean is None or self.std is None:
            raise ValueError("recipe has no normalisation; fit it with fit_normalisation(recipe, samples)")
        raw = self.raw_channels(reflectance, terrain)
        measured = [*range(len(self.bands)), *range(len(self.bands) + len(self.indices), self.n_channels)]
        valid = np.isfinite(raw[measured]).all(axis=0)
        mean = np.asarray(self.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None, None]
        inputs = np.nan_to_num((raw - mean) / std, nan=0.0, posinf=0.0, neginf=0.0)
        return inputs.astype(np.float32, copy=False), valid


def fit_normalisation(
    recipe: InputRecipe, samples: Iterable[tuple[np.ndarray, dict[str, np.ndarray] | None]]
) -> InputRecipe:
    """The recipe with per-channel mean/std over all finite pixels of (reflectance, terrain) samples.

    Sums are accumulated in float64 one sample at a time, so many large samples fit in memory.
    """
    count = np.zeros(recipe.n_channels)
    total = np.zeros(recipe.n_channels)
    total_sq = np.zeros(recipe.n_channels)
    for reflectance, terrain in samples:
        raw = recipe.raw_channels(reflectance, terrain).reshape(recipe.n_channels, -1).astype(np.float64)
        finite = np.isfinite(raw)
        raw = np.where(finite, raw, 0.0)
        count += finite.sum(axis=1)
        total += raw.sum(axis=1)
        total_sq += (raw**2).sum(axis=1)
    if (count == 0).any():
        empty = [n for n, c in zip(recipe.channel_names, count) if c == 0]
        raise ValueError(f"no finite pixels for channels {empty}; cannot fit normalisation")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std = np.where(std > 1e-6, std, 1.0)  # a constant channel is centred, not blown up
    return recipe.model_copy(update={"mean": tuple(map(float, mean)), "std": tuple(map(float, std))})
