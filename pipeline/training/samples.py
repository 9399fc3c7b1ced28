"""Training samples cut from the yearly cube, as in the paper: large samples, later cut into crops.

Samples are `sample_size` squares (1024 in the paper) tiling each training year's composite;
the last row/column of samples is shifted inwards so the whole region is used (those samples
overlap their neighbours). On a region smaller than a sample, the sample shrinks to the largest
multiple of the crop size that fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr

TERRAIN_CHANNELS = ("elevation", "slope")


@dataclass
class Samples:
    reflectance: list[np.ndarray]  # (band, s, s) float32, NaN = no data
    terrain: list[dict[str, np.ndarray]]
    labels: list[np.ndarray]  # (s, s) 0/1
    origins: list[tuple[int, int, int]]  # (year, row, col)

    def __len__(self) -> int:
        return len(self.labels)


def _starts(length: int, size: int) -> list[int]:
    starts = list(range(0, length - size + 1, size))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def sample_size_for(shape: tuple[int, int], sample_size: int, crop_size: int) -> int:
    fits = min(sample_size, min(shape) // crop_size * crop_size)
    if fits < crop_size:
        raise ValueError(f"the region ({shape[0]} x {shape[1]} px) is smaller than one {crop_size} px crop: lower crop_size")
    return fits


def cut_samples(
    cube: xr.Dataset, labels: xr.DataArray, years: Sequence[int], sample_size: int = 1024, crop_size: int = 256
) -> Samples:
    """Samples of every year in `years` from a computed cube (reflectance, elevation, slope) and labels."""
    shape = (cube.sizes["y"], cube.sizes["x"])
    size = sample_size_for(shape, sample_size, crop_size)
    terrain = {name: cube[name].values.astype(np.float32) for name in TERRAIN_CHANNELS}
    out = Samples([], [], [], [])
    for year in years:
        refl = cube.reflectance.sel(year=year).values
        label = labels.sel(year=year).values
        for r in _starts(shape[0], size):
            for c in _starts(shape[1], size):
                window = (slice(r, r + size), slice(c, c + size))
                out.reflectance.append(refl[(slice(None), *window)])
                out.terrain.append({k: v[window] for k, v in terrain.items()})
                out.labels.append(label[window])
                out.origins.append((int(year), r, c))
    return out
