"""When the satellites pass and which products each overpass yields, on which product grids.

`plan_acquisitions` draws, from the spec's seed, every overpass of the study years (three
summer windows a year for Sentinel-2 and Landsat, one June Sentinel-2 overpass in 2019) with
its sun, snowline and clouds, and names its products as Earth Search does. `product_footprints`
gives the grid of each product: Sentinel-2 tiles split near 84°E between UTM 44N and 45N with
an overlap, Landsat paths over the whole world grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyproj import Transformer

from catalog.grid import TargetGrid
from catalog.synthetic import sensors as sn
from catalog.synthetic.area_spec import StudyAreaSpec
from catalog.synthetic.surface import Acquisition

UTM_BOUNDARY_LON = 84.0


@dataclass(frozen=True)
class Product:
    sensor: str  # "sentinel-2" | "landsat"
    item_id: str
    datetime: str
    platform: str
    zone: int
    extra: tuple  # mgrs + baseline, or WRS path/row


def _sun(date: pd.Timestamp) -> tuple[float, float]:
    """Sun at ~10:30 local solar time at 43.8°N: a good-enough declination model."""
    decl = 23.44 * math.sin(math.radians(360.0 / 365.0 * (date.dayofyear - 81)))
    lat = math.radians(43.8)
    hour = math.radians(-22.5)  # 1.5 h before noon
    d = math.radians(decl)
    elev = math.asin(math.sin(lat) * math.sin(d) + math.cos(lat) * math.cos(d) * math.cos(hour))
    az = math.atan2(-math.sin(hour), math.tan(d) * math.cos(lat) - math.sin(lat) * math.cos(hour))
    return (math.degrees(az) + 360.0) % 360.0, math.degrees(elev)


def plan_acquisitions(spec: StudyAreaSpec) -> list[tuple[Acquisition, list[Product]]]:
    rng = np.random.default_rng([spec.seed, 1])
    plan = []
    # (first day, spread in days, snowline m, its year-to-year sd): the season melts up the massif.
    windows = [("07-08", 14, 4100.0, 80.0), ("08-08", 14, 4300.0, 60.0), ("09-02", 14, 4350.0, 60.0)]
    for year in spec.years:
        dates = []
        for start, spread, snowline, sd in windows:
            s2_day = pd.Timestamp(f"{year}-{start}") + pd.Timedelta(days=int(rng.integers(0, spread)))
            ls_day = s2_day + pd.Timedelta(days=int(rng.integers(3, 9)))
            fresh = start == "09-02" and rng.uniform() < 0.15  # an early autumn snowfall
            line = 3750.0 if fresh else snowline + rng.normal(0.0, sd)
            dates += [("sentinel-2", s2_day, line), ("landsat", ls_day, line + rng.normal(0.0, 30.0))]
        if year == 2019:  # one early-summer overpass outside the Jul-Sep season
            dates.append(("sentinel-2", pd.Timestamp(f"{year}-06-20"), 3550.0))
        for k, (sensor, day, line) in enumerate(dates):
            az, elev = _sun(day)
            cloud = float(rng.choice([0.0, 0.03, 0.12, 0.3, 0.55], p=[0.35, 0.25, 0.2, 0.12, 0.08]))
            acq = Acquisition(
                date=day.strftime("%Y-%m-%d"),
                sun_azimuth=az,
                sun_elevation=elev,
                snowline_m=float(line),
                cloud_fraction=cloud,
                cirrus=bool(rng.uniform() < 0.2),
                seed=int(rng.integers(0, 2**31)),
            )
            ymd = day.strftime("%Y%m%d")
            if sensor == "sentinel-2":
                platform = "sentinel-2a" if (k // 2) % 2 == 0 or year < 2017 else "sentinel-2b"  # S2B from 2017
                baseline = "05.09" if year >= 2022 else "02.14"
                sat = "S2A" if platform.endswith("a") else "S2B"
                products = [
                    Product(sensor, f"{sat}_{mgrs}_{ymd}_0_L2A", f"{acq.date}T05:13:21Z", platform, zone, (mgrs, baseline))
                    for zone, mgrs in ((44, "44TQN"), (45, "45TTH"))
                ]
            else:
                zone = 44 if k % 4 < 2 else 45
                path = "145" if zone == 44 else "144"
                platform = "landsat-9" if year >= 2022 and k % 4 == 3 else "landsat-8"
                lc = "LC09" if platform == "landsat-9" else "LC08"
                item_id = f"{lc}_L2SP_{path}030_{ymd}_02_T1"
                products = [Product(sensor, item_id, f"{acq.date}T05:02:44Z", platform, zone, (path, "030"))]
            plan.append((acq, products))
    return plan


def product_footprints(grid: TargetGrid) -> dict[tuple[str, int], sn.Footprint]:
    """Product grids: S2 tiles split near 84°E with an overlap, Landsat paths over everything."""
    world_ll = grid.lonlat_polygon()
    w, s, e, n = world_ll.bounds
    fps = {}
    for sensor, res in (("sentinel-2", 10.0), ("sentinel-2-20m", 20.0), ("landsat", 30.0)):
        coarse = grid.with_resolution(res)
        if sensor == "landsat":
            fps[(sensor, 44)] = sn.Footprint(coarse, (slice(None), slice(None)))
            fps[(sensor, 45)] = sn.Footprint(TargetGrid.from_lonlat_bbox((w, s, e, n), res, epsg=32645), None)
            continue
        # Tile 44 is the world grid west of ~84.02°E; tile 45 starts at ~83.98°E in its own zone.
        to_world = Transformer.from_crs(4326, grid.epsg, always_xy=True)
        x_east = max(to_world.transform(UTM_BOUNDARY_LON + 0.02, lat)[0] for lat in (s, n))
        cols = min(coarse.shape[1], int(math.ceil((x_east - grid.bounds[0]) / res / 6.0) * 6))
        left, bottom, _, top = grid.bounds
        tile44 = TargetGrid(grid.epsg, res, (left, bottom, left + cols * res, top))
        fps[(sensor, 44)] = sn.Footprint(tile44, (slice(None), slice(0, cols)))
        west = max(w, UTM_BOUNDARY_LON - 0.02)
        fps[(sensor, 45)] = sn.Footprint(TargetGrid.from_lonlat_bbox((west, s, e, n), res, epsg=32645), None)
    return fps
