"""What the model eats: the input recipe, fixed at training time and shipped with the weights.

A model is only valid for the exact channels, order and normalisation it was trained on, so the
recipe travels in the model card and the same `build_inputs` runs in training and inference.
Sentinel-2 and Landsat are given as the same six physical bands under their own asset names.

Terrain channels must travel between regions: absolute "elevation" ties a network to the
elevation range it was trained on (a DEM shifted by -600 m halves the mapped ice), so new
recipes use "relative_elevation" - elevation minus its local mean over RELIEF_WINDOW_PX - which
a regional shift of the DEM leaves unchanged. "elevation" stays readable for shipped weights.
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
TerrainChannel = Literal["elevation", "slope", "relative_elevation"]
RELIEF_WINDOW_PX = 63
"""Side of the square window whose mean elevation "relative_elevation" subtracts (630 m at 10 m,
1.9 km at 30 m): below the smallest halo chunked inference uses (96 px), so tiles agree."""
TERRAIN_SOURCES: dict[str, str] = {"elevation": "elevation", "slope": "slope", "relative_elevation": "elevation"}
"""The DEM-derived layer each terrain channel is computed from (what a cube or --dem provides)."""


def relative_elevation(elevation: np.ndarray, window: int = RELIEF_WINDOW_PX) -> np.ndarray:
    """Elevation minus its NaN-aware local mean over a `window` px square: unchanged by a regional shift.

    The window's median is removed first (in float64), so rounding does not depend on the absolute
    level; edges use mirrored neighbours. NaN stays NaN.
    """
    from scipy.ndimage import uniform_filter

    z = np.asarray(elevation, dtype=np.float64)
    finite = np.isfinite(z)
    if not finite.any():
        return np.full(z.shape, np.nan, np.float32)
    if finite.all():  # the usual tile: the count of finite neighbours is exactly 1 (checked in tests)
        d = z - np.median(z)
        return (d - uniform_filter(d, window, mode="reflect")).astype(np.float32)
    d = np.where(finite, z - np.median(z[finite]), 0.0)
    total = uniform_filter(d, window, mode="reflect")
    count = uniform_filter(finite.astype(np.float64), window, mode="reflect")
    with np.errstate(divide="ignore", invalid="ignore"):
        local = total / count
    return np.where(finite & (count > 1e-9), d - local, np.nan).astype(np.float32)


def nearest_valid_index(valid: np.ndarray) -> np.ndarray | None:
    """(2, y, x) row and column of each pixel's nearest valid pixel (a valid one's own), or None where
    there is nothing to fill (all valid, or none).

    No-data inside a tile (a scene's no-data wedge, a cloud gap in a composite, ground beyond a read
    window) is given its nearest valid neighbour's inputs, as the tile's outer margins are given
    mirrored ones: filled with 0 (the training mean, a bright ice-like pixel) it made the network map
    rock beside the gap as glacier (a Sentinel-2 scene with a no-data wedge: 40 % of the rock within
    3 px of it, 5-7 % within 16 px; none with this fill). In a run it is the composite's cloud gaps: on
    the default area 633 px of Landsat's 2021 map (a 6,994 px gap) and 1,927 of Sentinel-2's 2022 map
    changed class, 614 and 1,927 of them to what the generator's true outlines say."""
    if valid.all() or not valid.any():
        return None
    from scipy.ndimage import distance_transform_edt

    return distance_transform_edt(~valid, return_distances=False, return_indices=True)


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


def spectral_index(reflectance: np.ndarray, bands: tuple[str, ...], index: Index, ratio=_ratio) -> np.ndarray:
    """NDSI (green-swir16)/(green+swir16), NDWI (green-nir)/(green+nir) or red/swir16 of a (band, ...)
    array. `ratio` divides (NaN where the denominator is not positive); the GPU predictor passes a
    torch one to build the same index from tensors (`pipeline.model.device_inputs`)."""
    green = band_by_role(reflectance, bands, "green")
    if index == "ndsi":
        swir = band_by_role(reflectance, bands, "swir16")
        return ratio(green - swir, green + swir)
    if index == "ndwi":
        nir = band_by_role(reflectance, bands, "nir")
        return ratio(green - nir, green + nir)
    red = band_by_role(reflectance, bands, "red")
    return ratio(red, band_by_role(reflectance, bands, "swir16"))


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
    def terrain_sources(self) -> tuple[str, ...]:
        """The DEM-derived layers to pass in `terrain` (e.g. "elevation" for "relative_elevation"), once each."""
        return tuple(dict.fromkeys(TERRAIN_SOURCES[name] for name in self.terrain))

    @property
    def n_channels(self) -> int:
        return len(self.bands) + len(self.indices) + len(self.terrain)

    @property
    def measured_channels(self) -> list[int]:
        """The channels whose absence makes a pixel no-data: bands and terrain (an index's 0/0 does not)."""
        return [*range(len(self.bands)), *range(len(self.bands) + len(self.indices), self.n_channels)]

    def check_terrain(self, terrain: dict) -> None:
        """Refuse terrain layers that cannot give every terrain channel (each by name or from its source)."""
        missing = [n for n in self.terrain if n not in terrain and TERRAIN_SOURCES[n] not in terrain]
        if missing:
            raise KeyError(f"recipe needs terrain channels {missing}; pass {list(self.terrain_sources)} in `terrain`")

    def raw_channels(self, reflectance: np.ndarray, terrain: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Un-normalised (channel, y, x) float32, NaN where a channel has no value."""
        if reflectance.ndim != 3 or reflectance.shape[0] != len(self.bands):
            raise ValueError(f"reflectance must be (band, y, x) with bands {self.bands}, got shape {reflectance.shape}")
        reflectance = reflectance.astype(np.float32, copy=False)
        planes = [*reflectance, *(spectral_index(reflectance, self.bands, i) for i in self.indices)]
        terrain = terrain or {}
        self.check_terrain(terrain)
        for name in self.terrain:
            if name in terrain:
                planes.append(np.asarray(terrain[name], dtype=np.float32))
            else:  # derived from its source layer, e.g. relative_elevation from elevation
                planes.append(relative_elevation(terrain[TERRAIN_SOURCES[name]]))
        return np.stack(planes)  # float32: every plane is

    def build_inputs(
        self, reflectance: np.ndarray, terrain: dict[str, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Normalised (channel, y, x) float32 and a (y, x) valid mask; no-data pixels take their nearest
        valid pixel's inputs (`nearest_valid_index`; 0, the mean, where the tile has none).

        A pixel is valid where every reflectance band and terrain channel is finite; an index whose
        denominator vanishes is filled by 0 but does not invalidate the pixel.
        """
        if self.mean is None or self.std is None:
            raise ValueError("recipe has no normalisation; fit it with fit_normalisation(recipe, samples)")
        raw = self.raw_channels(reflectance, terrain)  # a fresh float32 array: normalised in place
        measured = self.measured_channels
        valid = np.isfinite(raw[measured[0]])
        for channel in measured[1:]:
            valid &= np.isfinite(raw[channel])
        # In place, plane by plane: the same float32 arithmetic as `(raw - mean) / std` without its
        # full-size temporaries (on a GPU worker this host-side preparation, not the forward,
        # bounds a tile: docs/scaling.md).
        for channel, (mean, std) in enumerate(zip(self.mean, self.std)):
            plane = raw[channel]
            plane -= np.float32(mean)
            plane /= np.float32(std)
        nearest = nearest_valid_index(valid)
        if nearest is not None:
            gaps = ~valid
            raw[:, gaps] = raw[:, nearest[0][gaps], nearest[1][gaps]]
        np.nan_to_num(raw, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        return raw, valid


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
