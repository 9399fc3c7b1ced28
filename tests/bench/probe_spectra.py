"""What the shipped networks call glacier on flat patches of given spectra, beside NDSI and red/SWIR16.

    .venv/bin/python tests/bench/probe_spectra.py [--sensor sentinel-2 landsat] [--weights-dir pipeline/weights]

Each surface is a 96 x 96 px patch of one reflectance spectrum (2 % multiplicative noise) on a
flat DEM, written as the sensor's DNs and mapped by `glacierwatch predict`'s own code path. Flat
patches have no glacier shape or relief, so this probes the spectral response only: a surface both
indices call ice that a network does not map is a recall risk on real scenes (issue 15), one the
indices reject that a network maps a false-alarm risk. Found with it (2026-12-07): the shipped
Landsat network maps little of dark, dirty ice (visible 0.12-0.3, SWIR16 0.05), the Sentinel-2
one all of it. Flat patches understate a network that reads context: in world scenes drawn with
dark ice the same Landsat network maps 0.93 of sunlit bare ice below green 0.15 (NDSI 0.99;
`eval_world_held_out.py --dark-ice-share 1`).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from catalog.providers import REFLECTANCE_BANDS
from pipeline.inference.predict import predict_scene

SURFACES = {  # blue, green, red, NIR, SWIR16, SWIR22 surface reflectance (typical, rounded)
    "fresh snow": (0.90, 0.90, 0.90, 0.75, 0.02, 0.02),
    "clean ice": (0.60, 0.60, 0.55, 0.45, 0.05, 0.04),
    "shadowed snow": (0.25, 0.20, 0.15, 0.10, 0.01, 0.01),
    **{f"ice, visible {v:g}, SWIR16 {s:g}": (v * 1.02, v, v * 0.95, v * 0.8, s, s * 0.8)
       for v in (0.12, 0.2, 0.3, 0.4) for s in (0.02, 0.05, 0.08)},
    "thick debris": (0.10, 0.12, 0.14, 0.18, 0.22, 0.20),
    "rock": (0.12, 0.15, 0.18, 0.22, 0.28, 0.22),
    "vegetation": (0.03, 0.06, 0.04, 0.35, 0.18, 0.09),
    "turbid water": (0.08, 0.10, 0.08, 0.04, 0.01, 0.01),
    "thick cloud": (0.75, 0.73, 0.72, 0.72, 0.55, 0.40),
    "thin cloud over rock": (0.40, 0.40, 0.42, 0.45, 0.40, 0.32),
    "salt flat": (0.45, 0.50, 0.55, 0.60, 0.60, 0.50),
}
PATCH = 96
MARGIN = 16
"""Pixels left out at each patch's edge (the network sees the neighbouring patches there)."""
DN = {"sentinel-2": (10.0, 1e-4, 0.0), "landsat": (30.0, 2.75e-5, -0.2)}
"""Pixel size (m), scale and offset of each sensor's L2 DNs."""


def probe(sensor: str, weights: Path, folder: Path) -> list[tuple[str, float, float, float, float]]:
    """(surface, mean p, share p >= 0.5, NDSI, red/SWIR16) per surface."""
    res, scale, offset = DN[sensor]
    names = list(SURFACES)
    cols = 6
    rows = -(-len(names) // cols)
    height, width = rows * PATCH, cols * PATCH
    reflectance = np.zeros((6, height, width), np.float32)
    for k, name in enumerate(names):
        r, c = divmod(k, cols)
        reflectance[:, r * PATCH:(r + 1) * PATCH, c * PATCH:(c + 1) * PATCH] = np.array(SURFACES[name], np.float32)[:, None, None]
    reflectance *= (1 + np.random.default_rng(0).normal(0, 0.02, reflectance.shape)).astype(np.float32)
    origin = (700_000.0, 4_800_000.0)
    paths = []
    for i, band in enumerate(REFLECTANCE_BANDS[sensor]):
        dn = np.clip(np.rint((reflectance[i] - offset) / scale), 1, 65535).astype(np.uint16)
        path = folder / f"{sensor}_{band}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint16", nodata=0,
                           crs="EPSG:32644", transform=from_origin(*origin, res, res)) as dst:
            dst.write(dn, 1)
        paths.append(path)
    dem = folder / f"{sensor}_dem.tif"
    with rasterio.open(dem, "w", driver="GTiff", width=width + 20, height=height + 20, count=1, dtype="float32",
                       crs="EPSG:32644", transform=from_origin(origin[0] - 10 * res, origin[1] + 10 * res, res, res)) as dst:
        dst.write(np.full((height + 20, width + 20), 4200.0, np.float32), 1)
    out = folder / f"{sensor}_probability.tif"
    predict_scene(paths, sensor, out, scale=scale, offset=offset, dem=dem, weights=weights, device="cpu", warn=lambda _: None)
    with rasterio.open(out) as src:
        p = src.read(1).astype(np.float64) / 255.0
    rows_out = []
    for k, name in enumerate(names):
        r, c = divmod(k, cols)
        patch = p[r * PATCH + MARGIN:(r + 1) * PATCH - MARGIN, c * PATCH + MARGIN:(c + 1) * PATCH - MARGIN]
        _, green, red, _, swir16, _ = SURFACES[name]
        rows_out.append((name, float(patch.mean()), float((patch >= 0.5).mean()),
                         (green - swir16) / (green + swir16), red / swir16))
    return rows_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensor", nargs="+", default=["sentinel-2", "landsat"], choices=list(DN))
    parser.add_argument("--weights-dir", type=Path, default=Path(__file__).resolve().parents[2] / "pipeline" / "weights")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="glacierwatch-probe-") as tmp:
        for sensor in args.sensor:
            weights = args.weights_dir / f"{sensor}.safetensors"
            print(f"\n{sensor} ({weights})\n| surface | mean p | share p >= 0.5 | NDSI | red/SWIR16 | both indices: ice |")
            print("|---|---|---|---|---|---|")
            for name, mean_p, share, ndsi, ratio in probe(sensor, weights, Path(tmp)):
                print(f"| {name} | {mean_p:.2f} | {share:.2f} | {ndsi:+.2f} | {ratio:.1f} | {'yes' if ndsi > 0.4 and ratio > 2 else 'no'} |")


if __name__ == "__main__":
    main()
