"""What study area to generate (`StudyAreaSpec`) and what a generation wrote (`StudyArea`).

The spec is the whole input of the generator: the same spec (and GENERATOR_VERSION) gives the
same bytes, so its fingerprint marks a finished area on disk. Kept apart from the generator so
that configs can describe an area without importing the rendering code.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

# 2: earthsearch:boa_offset_applied now false (it meant the opposite of Earth Search's in 1); pixels unchanged.
# 3: items state the sun each scene was rendered with (view:sun_azimuth, view:sun_elevation); pixels unchanged.
GENERATOR_VERSION = "3"


@dataclass(frozen=True)
class StudyAreaSpec:
    """What to generate. `size` multiplies the area (x4 doubles both sides).

    `massif_share`: the share of the massif grid's cells (one per ~5.2 km square) that hold a
    massif; the others stay ice-free valley floor. 1 is the dense default; ~0.1 scatters a few
    glacierised massifs over mostly ice-free land, as in a real range (0.65 % of the Tian Shan's
    bbox is ice), so glacier-buffer tiling has land to skip.
    """

    seed: int = 42
    size: float = 1.0
    years: tuple[int, ...] = tuple(range(2016, 2023))
    center_lonlat: tuple[float, float] = (83.995, 43.765)
    width_km: float = 14.0
    height_km: float = 10.5
    massif_share: float = 1.0

    def __post_init__(self) -> None:
        if not 0.05 <= self.size <= 64:
            raise ValueError(f"size {self.size} is out of range: use 0.05 to 64 (x area of the default)")
        if not 0.0 < self.massif_share <= 1.0:
            raise ValueError(f"massif_share {self.massif_share} is out of range: use a share above 0 and at most 1 (1: every cell)")

    def bbox(self) -> tuple[float, float, float, float]:
        """The study region in lon/lat (what a config's region.bbox should be)."""
        lon, lat = self.center_lonlat
        k = math.sqrt(self.size)
        dlon = self.width_km * k / 2 / (111.32 * math.cos(math.radians(lat)))
        dlat = self.height_km * k / 2 / 110.95
        return (round(lon - dlon, 5), round(lat - dlat, 5), round(lon + dlon, 5), round(lat + dlat, 5))

    def world_bbox(self) -> tuple[float, float, float, float]:
        """Region plus a margin, so scenes and glaciers run past the region's edges."""
        w, s, e, n = self.bbox()
        return (w - 0.005, s - 0.004, e + 0.005, n + 0.004)

    def fingerprint(self) -> str:
        fields = asdict(self)
        if fields["massif_share"] == 1.0:  # the dense default: areas written before the option keep their fingerprint
            del fields["massif_share"]
        blob = json.dumps({**fields, "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class StudyArea:
    """Paths of what was written."""

    root: Path
    catalog: Path
    inventory: Path
    truth: Path
    spec: StudyAreaSpec
    n_glaciers: int = 0
    n_items: dict[str, int] = field(default_factory=dict)
