"""The recipe's inputs built with torch where the network runs, for GPU predictors.

On a GPU the network is not what bounds a tile: on an H200 the shipped U-Net's forward ran at 530
Mpx/s and a tile through `TorchPredictor` at 4.5, the rest being `InputRecipe.build_inputs` in
numpy on the host (indices, relative elevation, normalisation; docs/scaling.md). This builds the
same channels from the raw bands and terrain on the predictor's device, so only the six bands and
the DEM layers cross to the GPU and only the probability comes back.

The arithmetic is `pipeline.model.inputs`'s, in float32 with relative elevation in float64 as
there; only summation order differs (a cumulative-sum box mean instead of scipy's running one),
so channels agree to float32 rounding (tests/test_model_inputs.py), not bit for bit. Training and
the CPU path keep numpy's `build_inputs`.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.model.inputs import RELIEF_WINDOW_PX, TERRAIN_SOURCES, InputRecipe, nearest_valid_index, spectral_index


def _mirror_index(n: int, before: int, after: int, device: torch.device, *, repeat_edge: bool) -> torch.Tensor:
    """Indices of a length-n axis extended by `before`/`after` samples mirrored about its edges, to
    any extent: with the edge sample repeated (scipy.ndimage's "reflect", numpy's "symmetric") or
    not (numpy's "reflect")."""
    i = torch.arange(-before, n + after, device=device)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * n if repeat_edge else 2 * n - 2
    i = i % period
    return torch.where(i < n, i, period - i - int(repeat_edge))


def _box_mean(x: torch.Tensor, window: int, dim: int) -> torch.Tensor:
    """Mean over `window` samples centred on each sample along `dim`, edges reflected as scipy's
    `uniform_filter1d(mode="reflect")` (window // 2 before, the rest after), as a cumulative sum."""
    before = window // 2
    n = x.shape[dim]
    padded = x.index_select(dim, _mirror_index(n, before, window - 1 - before, x.device, repeat_edge=True))
    zero = torch.zeros_like(padded.narrow(dim, 0, 1))
    c = torch.cat([zero, padded.cumsum(dim)], dim)
    return (c.narrow(dim, window, n) - c.narrow(dim, 0, n)) / window


def relative_elevation(elevation: torch.Tensor, window: int = RELIEF_WINDOW_PX) -> torch.Tensor:
    """`pipeline.model.inputs.relative_elevation` in torch: elevation minus its NaN-aware local mean."""
    z = elevation.double()
    finite = torch.isfinite(z)
    if not bool(finite.any()):
        return torch.full(z.shape, float("nan"), dtype=torch.float32, device=z.device)
    d = torch.where(finite, z - z[finite].median(), 0.0)
    total = _box_mean(_box_mean(d, window, -2), window, -1)
    count = _box_mean(_box_mean(finite.double(), window, -2), window, -1)
    return torch.where(finite & (count > 1e-9), d - total / count, float("nan")).float()


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    return torch.where(denominator > 0, numerator / denominator, float("nan"))


def build_inputs(
    recipe: InputRecipe, reflectance: torch.Tensor, terrain: dict[str, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, channel, y, x) normalised float32 inputs and the (n, y, x) valid mask of (n, band, y, x)
    float32 reflectance sharing one tile's (y, x) terrain layers, as `InputRecipe.build_inputs` per scene."""
    if recipe.mean is None or recipe.std is None:
        raise ValueError("recipe has no normalisation; fit it with fit_normalisation(recipe, samples)")
    if reflectance.ndim != 4 or reflectance.shape[1] != len(recipe.bands):
        raise ValueError(f"reflectance must be (scene, band, y, x) with bands {recipe.bands}, got shape {tuple(reflectance.shape)}")
    terrain = terrain or {}
    recipe.check_terrain(terrain)
    n = reflectance.shape[0]
    reflectance = reflectance.float()
    planes = [reflectance[:, i] for i in range(len(recipe.bands))]
    by_band = reflectance.transpose(0, 1)  # band first, as spectral_index takes it
    planes += [spectral_index(by_band, recipe.bands, i, ratio=_ratio) for i in recipe.indices]
    for name in recipe.terrain:
        layer = terrain[name].float() if name in terrain else relative_elevation(terrain[TERRAIN_SOURCES[name]])
        planes.append(layer.expand(n, *layer.shape))
    valid = torch.stack([torch.isfinite(planes[i]) for i in recipe.measured_channels]).all(0)
    mean = torch.tensor(recipe.mean, dtype=torch.float32, device=reflectance.device)
    std = torch.tensor(recipe.std, dtype=torch.float32, device=reflectance.device)
    inputs = (torch.stack(planes, 1) - mean[:, None, None]) / std[:, None, None]
    gaps = [i for i in range(n) if bool((~valid[i]).any()) and bool(valid[i].any())]  # judged on the device
    for i in gaps:  # no-data takes its nearest valid pixel's inputs, as numpy's build does (found on the host)
        nearest = nearest_valid_index(valid[i].cpu().numpy())
        if nearest is not None:
            flat = torch.from_numpy((nearest[0].astype(np.int64) * valid.shape[-1] + nearest[1]).ravel()).to(inputs.device)
            inputs[i] = inputs[i].flatten(1)[:, flat].view(inputs.shape[1:])
    return torch.nan_to_num(inputs, nan=0.0, posinf=0.0, neginf=0.0), valid


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """(..., y, x) padded at the bottom and right to multiples of `multiple`, mirrored without
    repeating the edge as `np.pad(mode="reflect")` does, to any extent (F.pad's reflect stops at the size)."""
    for dim in (-2, -1):
        extra = -x.shape[dim] % multiple
        if extra:
            x = x.index_select(dim, _mirror_index(x.shape[dim], 0, extra, x.device, repeat_edge=False))
    return x
