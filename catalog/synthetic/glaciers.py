"""Glaciers of the synthetic massif: where they are, how big, how fast their termini retreat.

Each glacier flows straight down its trough from a cirque below a peak. Its length follows
from its equilibrium-line altitude (ELA) and an accumulation-area ratio of 0.6 on the
carved surface; its terminus then retreats every year at a known rate that depends on
aspect and terminus elevation, following the paper's pattern (fastest on W, NE and S faces
and at low termini). Geometry is analytic in along-axis (s) / across-axis (d) coordinates,
so the true terminus position of every year is known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from catalog.aspect import aspect_sector_name
from catalog.synthetic.terrain import VALLEY_FLOOR_M, Massif

REFERENCE_YEAR = 2016  # L(t) = length_m at this year
AAR = 0.6
# Paper (Li et al. 2024, Sect. 3.2.2): W 15.49, S 13.14, NE 13.95, N 10.52 m/a, the others < 10.
SECTOR_RETREAT_M_A = {"N": 10.5, "NE": 14.0, "E": 7.5, "SE": 8.0, "S": 13.1, "SW": 9.0, "W": 15.5, "NW": 8.5}
LATERAL_THINNING_M_A = 1.0  # margin retreat of the tongue below the ELA


def aspect_sector(azimuth_deg: float) -> str:
    return str(aspect_sector_name(azimuth_deg)[0])


@dataclass(frozen=True)
class Glacier:
    glacier_id: int
    massif: int
    x0: float  # head of the axis (world CRS, m)
    y0: float
    azimuth_deg: float  # flow direction = aspect, clockwise from north
    width_m: float  # maximum full width
    length_m: float  # axis length in REFERENCE_YEAR
    ela_m: float
    retreat_m_a: float
    debris_from_m: float | None  # along-axis start of the debris cover, None = clean
    lake_radius_m: float | None  # proglacial lake in front of the terminus

    @property
    def sector(self) -> str:
        return aspect_sector(self.azimuth_deg)

    @property
    def unit(self) -> tuple[float, float]:
        a = np.radians(self.azimuth_deg)
        return float(np.sin(a)), float(np.cos(a))

    def length_in(self, year: int) -> float:
        return self.length_m - self.retreat_m_a * (year - REFERENCE_YEAR)

    def point_at(self, s: float) -> tuple[float, float]:
        ux, uy = self.unit
        return self.x0 + s * ux, self.y0 + s * uy

    def axis_coords(self, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Along-axis distance s (downstream positive) and across-axis offset d (right positive)."""
        ux, uy = self.unit
        dx, dy = X - self.x0, Y - self.y0
        return dx * ux + dy * uy, dx * uy - dy * ux

    def half_width(self, s: np.ndarray) -> np.ndarray:
        """Planform half-width at the reference length: a wide basin narrowing into a tongue."""
        u = np.clip(s / self.length_m, 0.0, None)
        rise = 0.7 + 0.3 * np.sin(0.5 * np.pi * np.clip(u / 0.35, 0.0, 1.0))
        taper = 1.0 - 0.55 * np.clip((u - 0.35) / 0.65, 0.0, None)
        return 0.5 * self.width_m * np.where(u <= 0.35, rise, taper)

    def mask(self, s: np.ndarray, d: np.ndarray, z: np.ndarray, year: int) -> np.ndarray:
        """Pixels covered by the glacier in `year` (s, d from axis_coords, z the DEM there)."""
        length = self.length_in(year)
        years = max(year - REFERENCE_YEAR, 0) + 1  # the inventory year is one before the reference
        below_ela = np.clip((self.ela_m - z) / 300.0, 0.0, 1.0)
        hw = self.half_width(s) - LATERAL_THINNING_M_A * years * below_ela
        tip = min(0.9 * float(self.half_width(np.array(self.length_m))), 200.0)
        t = np.clip((s - (length - tip)) / tip, 0.0, 1.0)
        hw = hw * np.sqrt(1.0 - t**2)
        return (s >= 0.0) & (s <= length) & (np.abs(d) <= hw)


def valley_half_width(g_width_m: float, s: np.ndarray) -> np.ndarray:
    """Trough half-width: a little wider than the ice, so the glacier sits inside its valley."""
    return 0.65 * g_width_m * (0.75 + 0.25 * np.clip(s / 800.0, 0.0, 1.0))


def carve_troughs(dem: np.ndarray, X: np.ndarray, Y: np.ndarray, axes: list[dict]) -> np.ndarray:
    """Lower the DEM along each axis: a parabolic U-trough plus a cirque bowl at the head."""
    carve = np.zeros(dem.shape, np.float32)
    for ax in axes:
        ux, uy = np.sin(np.radians(ax["azimuth"])), np.cos(np.radians(ax["azimuth"]))
        dx, dy = X - ax["x0"], Y - ax["y0"]
        s, d = dx * ux + dy * uy, dx * uy - dy * ux
        wv = valley_half_width(ax["width"], s)
        inside = (s > -300.0) & (s < ax["max_length"] + 800.0)
        depth = 140.0 * np.clip((s + 300.0) / 700.0, 0.0, 1.0) * np.clip(1.0 - (d / wv) ** 2, 0.0, None)
        bowl = 90.0 * np.exp(-(((s - 200.0) / 350.0) ** 2) - (d / (0.8 * ax["width"])) ** 2)
        np.maximum(carve, np.where(inside, depth + bowl, 0.0).astype(np.float32), out=carve)
    return dem - carve


def layout_axes(massifs: list[Massif], rng: np.random.Generator, spacing_m: float) -> list[dict]:
    """Radiating axes with widths small enough that neighbours never touch."""
    axes = []
    for mi, m in enumerate(massifs):
        n = int(rng.integers(4, 8))
        start = rng.uniform(0.0, 360.0)
        step = 360.0 / n
        r0 = rng.uniform(750.0, 1000.0)
        for k in range(n):
            az = (start + k * step + rng.uniform(-0.12, 0.12) * step) % 360.0
            # Heads sit on a circle of radius r0: neighbours (angle >= 0.76 step) stay apart.
            gap = 2.0 * r0 * np.sin(np.radians(0.76 * step) / 2.0)
            width = min(rng.uniform(0.45, 1.0) * (gap - 120.0) / 0.7, 1800.0)
            x0 = m.x + r0 * np.sin(np.radians(az))
            y0 = m.y + r0 * np.cos(np.radians(az))
            max_length = max(0.5 * spacing_m - r0 - 250.0, 600.0)
            axes.append({"massif": mi, "x0": x0, "y0": y0, "azimuth": az, "width": width, "max_length": max_length})
    return axes


def _profile(dem: np.ndarray, transform, x0, y0, az, s: np.ndarray) -> np.ndarray:
    """DEM sampled (nearest) along an axis; NaN outside the grid."""
    ux, uy = np.sin(np.radians(az)), np.cos(np.radians(az))
    col = np.floor((x0 + s * ux - transform.c) / transform.a).astype(int)
    row = np.floor((y0 + s * uy - transform.f) / transform.e).astype(int)
    ok = (row >= 0) & (row < dem.shape[0]) & (col >= 0) & (col < dem.shape[1])
    out = np.full(s.shape, np.nan, np.float32)
    out[ok] = dem[row[ok], col[ok]]
    return out


def grow_glaciers(
    massifs: list[Massif], axes: list[dict], dem: np.ndarray, transform, rng: np.random.Generator
) -> list[Glacier]:
    """Give each axis an ELA, a length from the accumulation-area ratio, a retreat rate, debris, lakes."""
    glaciers: list[Glacier] = []
    for ax in axes:
        m = massifs[ax["massif"]]
        az = ax["azimuth"]
        ela = 4060.0 - 110.0 * np.cos(np.radians(az)) + m.ela_offset_m + rng.normal(0.0, 30.0)
        s = np.arange(0.0, ax["max_length"], 10.0)
        z = _profile(dem, transform, ax["x0"], ax["y0"], az, s)
        if not np.isfinite(z[0]) or z[0] <= ela + 40.0:
            continue  # head below the ELA: no glacier can form here
        probe = Glacier(0, ax["massif"], ax["x0"], ax["y0"], az, ax["width"], 1.0, ela, 0.0, None, None)
        length = float(s[-1])
        for candidate in np.arange(300.0, ax["max_length"], 20.0):
            g = replace(probe, length_m=float(candidate))
            inside = s <= candidate
            w = g.half_width(s[inside])
            acc = w[np.nan_to_num(z[inside], nan=-1.0) >= ela].sum()
            if acc / w.sum() <= AAR:
                length = float(candidate)
                break
        z_term = float(np.interp(length, s, np.nan_to_num(z, nan=VALLEY_FLOOR_M)))
        elevation_factor = float(np.clip(1.0 + 0.6 * (3800.0 - z_term) / 400.0, 0.6, 1.5))
        sector = aspect_sector(az)
        rate = float(np.clip(SECTOR_RETREAT_M_A[sector] * elevation_factor * rng.normal(1.0, 0.08), 5.0, 20.0))
        s_ela = float(np.interp(ela, z[::-1], s[::-1])) if np.nanmin(z[: int(length / 10)]) < ela else length
        debris = None
        if length > 1500.0 and rng.uniform() < 0.55:
            debris = s_ela + 0.45 * (length - s_ela)
        lake = float(rng.uniform(60.0, 120.0)) if rng.uniform() < 0.15 else None
        glaciers.append(
            Glacier(
                glacier_id=len(glaciers) + 1,
                massif=ax["massif"],
                x0=float(ax["x0"]),
                y0=float(ax["y0"]),
                azimuth_deg=float(az),
                width_m=float(ax["width"]),
                length_m=length,
                ela_m=float(ela),
                retreat_m_a=rate,
                debris_from_m=debris,
                lake_radius_m=lake,
            )
        )
    return glaciers

