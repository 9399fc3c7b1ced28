"""Relief of the training world: real DEMs resampled onto the scene grid, or procedural relief.

Real: the SRTM 3" DEMs in ../shared/data/real (Hintereisferner, Ötztal; EPSG:4326, ~63 x 93 m
pixels there) are read once, mapped to local metres by an equirectangular projection about the
DEM's centre (scale error < 0.1 % over 40 km), and sampled by cubic spline onto a rotated,
horizontally scaled frame at the render resolution. SRTM holds no relief below ~200 m, so
fractal detail with the same spectral slope is added only at wavelengths the DEM lacks (the
fine detail is synthetic). The whole surface is then stretched vertically and shifted, so the
Alps' 1,500-3,700 m become any range within ~1,500-6,500 m.

Procedural: spectral synthesis (fBm, amplitude ~ k^-beta) plus ridged noise (1 - |n|, sharp
crests and rounded troughs), raised to a power > 1 so valley floors broaden as in glacial
landscapes. No erosion model: there are no river networks or true U-shaped troughs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

EARTH_M_PER_DEG_LAT = 110_540.0
EARTH_M_PER_DEG_LON_EQUATOR = 111_320.0
ELEVATION_RANGE_M = (1500.0, 6500.0)


@dataclass(frozen=True)
class Frame:
    """How the scene's pixels sit in a real DEM's local metric frame (x east, y north, metres).

    Pixel (row, col) centre -> u = (col + 0.5 - W/2) res, v = (H/2 - row - 0.5) res, then
    (x, y) = centre + scale * R(theta) (u, v).
    """

    centre: tuple[float, float]
    theta_rad: float
    scale: float
    resolution: float
    shape: tuple[int, int]

    def to_pixels(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(col, row) fractional pixel coordinates (pixel edges at integers) of local-metre points."""
        dx, dy = (np.asarray(x) - self.centre[0]) / self.scale, (np.asarray(y) - self.centre[1]) / self.scale
        c, s = np.cos(self.theta_rad), np.sin(self.theta_rad)
        u, v = c * dx + s * dy, -s * dx + c * dy
        h, w = self.shape
        return u / self.resolution + w / 2, h / 2 - v / self.resolution

    def to_local(self) -> tuple[np.ndarray, np.ndarray]:
        """Local-metre (x, y) of every pixel centre, each (H, W)."""
        h, w = self.shape
        u = (np.arange(w) + 0.5 - w / 2) * self.resolution
        v = (h / 2 - np.arange(h) - 0.5) * self.resolution
        u, v = np.meshgrid(u, v)
        c, s = np.cos(self.theta_rad), np.sin(self.theta_rad)
        return self.centre[0] + self.scale * (c * u - s * v), self.centre[1] + self.scale * (s * u + c * v)


@dataclass(frozen=True)
class RealDem:
    """A geographic DEM and its local metric frame (origin at the DEM's centre)."""

    name: str
    elevation: np.ndarray  # (row, col) metres, row 0 north
    lon0: float
    lat0: float
    dlon: float
    dlat: float  # positive; rows go south
    lon_c: float
    lat_c: float

    @property
    def m_per_deg_lon(self) -> float:
        return EARTH_M_PER_DEG_LON_EQUATOR * float(np.cos(np.radians(self.lat_c)))

    def lonlat_to_local(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.asarray(lon) - self.lon_c) * self.m_per_deg_lon, (np.asarray(lat) - self.lat_c) * EARTH_M_PER_DEG_LAT

    def local_to_index(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (row, col) array index of local-metre points (index = pixel centre)."""
        lon = self.lon_c + x / self.m_per_deg_lon
        lat = self.lat_c + y / EARTH_M_PER_DEG_LAT
        return (self.lat0 - lat) / self.dlat - 0.5, (lon - self.lon0) / self.dlon - 0.5

    def half_extent_m(self) -> tuple[float, float]:
        h, w = self.elevation.shape
        return w * self.dlon * self.m_per_deg_lon / 2, h * self.dlat * EARTH_M_PER_DEG_LAT / 2


REAL_DEMS = {"hintereisferner": "hintereisferner/hef_srtm.tif", "oetztal": "oetztal/srtm_oetztal.tif"}


@lru_cache(maxsize=None)
def load_real_dem(root: str, name: str) -> RealDem:
    """One of REAL_DEMS under `root` (../shared/data/real), voids filled by nearest valid value."""
    import rasterio

    path = Path(root) / REAL_DEMS[name]
    if not path.is_file():
        raise FileNotFoundError(f"real DEM {path} is missing: pass real_root= the folder of ../shared/data/real, or terrain='procedural'")
    with rasterio.open(path) as src:
        z = src.read(1).astype(np.float64)
        t = src.transform
        nodata = src.nodata
    bad = ~np.isfinite(z) | (z < -500) | ((z == nodata) if nodata is not None else False)
    if bad.any():
        idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
        z = z[tuple(idx)]
    h, w = z.shape
    return RealDem(name, z, t.c, t.f, t.a, -t.e, t.c + w * t.a / 2, t.f + h * t.e / 2)


def spectral_noise(
    shape: tuple[int, int], beta: float, rng: np.random.Generator, high_pass_px: float | None = None,
    low_pass_px: float | None = None,
) -> np.ndarray:
    """Gaussian random field with amplitude spectrum ~ k^-beta, zero mean, unit std.

    `high_pass_px`: keep only wavelengths shorter than this (to add detail a coarse DEM lacks);
    `low_pass_px`: damp wavelengths shorter than this (Gaussian).
    """
    h, w = shape
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = 1.0
    amp = k**-beta
    amp[0, 0] = 0.0
    if high_pass_px is not None:
        amp *= 1.0 / (1.0 + (1.0 / (k * high_pass_px)) ** 8)  # smooth high-pass at k = 1/high_pass_px
    if low_pass_px is not None:
        amp *= np.exp(-2.0 * (np.pi * low_pass_px / 6.0) ** 2 * k**2)
    white = np.fft.rfft2(rng.standard_normal(shape))
    field = np.fft.irfft2(white * amp, s=shape)
    field -= field.mean()
    return field / (field.std() + 1e-12)


def procedural_relief(shape: tuple[int, int], resolution: float, rng: np.random.Generator) -> np.ndarray:
    """Unit relief 0..1 (float64): fBm + ridges, valleys broadened by a power law."""
    beta = rng.uniform(1.9, 2.4)
    base = spectral_noise(shape, beta, rng)
    # Ridges from band-limited noise: 1 - |n| peaks where n crosses zero -> crest lines.
    ridge_scale_px = rng.uniform(1500.0, 5000.0) / resolution
    n = spectral_noise(shape, 1.0, rng, low_pass_px=ridge_scale_px)
    ridged = (1.0 - np.minimum(np.abs(n), 2.0) / 2.0) ** 1.5
    z = base + rng.uniform(0.3, 1.0) * (ridged - ridged.mean()) / (ridged.std() + 1e-12)
    z = (z - z.min()) / (np.ptp(z) + 1e-12)
    return z ** rng.uniform(1.2, 1.9)


def real_relief(
    dem: RealDem, shape: tuple[int, int], resolution: float, rng: np.random.Generator, focus: tuple[float, float] | None = None
) -> tuple[np.ndarray, Frame]:
    """The DEM (m, float64) sampled on a random rotated/scaled frame, and the frame.

    `focus`: a local-metre point (e.g. a glacier centroid) the frame should contain.
    """
    hx, hy = dem.half_extent_m()
    half_diag = 0.5 * resolution * float(np.hypot(*shape))
    scale = float(np.clip(rng.uniform(0.8, 1.25), 0.5, 0.98 * min(hx, hy) / half_diag))
    reach = scale * half_diag  # any rotation stays inside the DEM while the centre is this far from its edges
    lo_x, hi_x = -hx + reach, hx - reach
    lo_y, hi_y = -hy + reach, hy - reach
    if lo_x > hi_x or lo_y > hi_y:  # frame larger than the DEM: centre it, edges are mirrored
        cx, cy = 0.0, 0.0
    elif focus is not None:
        jitter = 0.3 * reach
        cx = float(np.clip(focus[0] + rng.uniform(-jitter, jitter), lo_x, hi_x))
        cy = float(np.clip(focus[1] + rng.uniform(-jitter, jitter), lo_y, hi_y))
    else:
        cx, cy = float(rng.uniform(lo_x, hi_x)), float(rng.uniform(lo_y, hi_y))
    frame = Frame((cx, cy), float(rng.uniform(0, 2 * np.pi)), scale, resolution, shape)
    x, y = frame.to_local()
    r, c = dem.local_to_index(x, y)
    z = ndimage.map_coordinates(dem.elevation, [r, c], order=3, mode="mirror", prefilter=True)
    # Sub-DEM detail: SRTM 3" resolves ~2-3 pixels; add what it lacks, ~4-12 m rms.
    lacking_px = 2.5 * 90.0 / (resolution * scale)
    if lacking_px > 2:
        detail = spectral_noise(shape, 1.8, rng, high_pass_px=lacking_px)
        z = z + rng.uniform(4.0, 12.0) * detail
    return z, frame


def stretch_to_range(z: np.ndarray, rng: np.random.Generator, relief_m: float) -> tuple[np.ndarray, float, float]:
    """`z` linearly mapped to a drawn [floor, floor + relief] inside ELEVATION_RANGE_M; (z, floor, relief)."""
    lo, hi = ELEVATION_RANGE_M
    relief_m = float(min(relief_m, hi - lo))
    floor = float(rng.uniform(lo, hi - relief_m))
    span = float(np.ptp(z)) or 1.0
    return (floor + (z - z.min()) * (relief_m / span)).astype(np.float64), floor, relief_m
