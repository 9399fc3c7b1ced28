"""Fronts far behind the inventory's: a tongue the map may not hold, flagged instead of read as no retreat.

Why: optical maps (the networks, NDSI and band ratios alike) leave a debris-covered tongue out the
same way every year, so its front stays at the clean ice's edge and the glacier reads as
stationary: on the x4 synthetic area's debris-covered tongues, glaciers none of the networks saw,
the shipped networks read retreat 0.0 m/a where the generator drew 15.9 (weights README). The
inventory's outline holds the tongue. Each retreat row carries ``inventory_gap0_m`` and
``inventory_gap1_m``, how far each year's front lies up-glacier of the inventory outline's front on
the same lines (`glacier_change.glacier_terminus`); ``flag_behind_inventory`` says that for either
year the gap is more than the glacier can have retreated since its outline was drawn:
``analysis.max_retreat_m_a`` times the years from the inventory's date (``inventory_year``,
`inventory.read_inventory`) to the front's, plus two pixels. A year whose map lost the tongue
(shadow, cloud) shows the same way. A flagged glacier is not typical (`retreat_summary.typical_glaciers`:
out of retreat by aspect and by band). Without a date for the outline the flag is left empty
(unknown): a gap alone cannot tell a tongue the map misses from retreat since the inventory.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from catalog.scenes import look_years

EDGE_PX = 2.0
"""Pixels of gap allowed beyond the retreat the rate allows: the two fronts' own pixel error."""


def front_behind_inventory(gap_m: np.ndarray, front_year: np.ndarray, inventory_year: np.ndarray, max_retreat_m_a: float,
                           pixel_size_m: float) -> np.ndarray:
    """1.0 / 0.0: each front's `gap_m` up-glacier of the inventory's exceeds what `max_retreat_m_a`
    allows over the years from `inventory_year` to `front_year` plus `EDGE_PX` pixels (NaN where
    either year or the gap is unknown)."""
    allowed = max_retreat_m_a * np.maximum(front_year - inventory_year, 0.0) + EDGE_PX * pixel_size_m
    known = np.isfinite(gap_m) & np.isfinite(front_year) & np.isfinite(inventory_year)
    return np.where(known, np.where(known, gap_m, 0.0) > allowed, np.nan)


def flag_behind_inventory(retreat: pd.DataFrame, inventory_years: Mapping[int, float], max_retreat_m_a: float,
                          pixel_size_m: float, season: tuple[str, str] | None = None) -> pd.Series:
    """``flag_behind_inventory`` of each row of one map's `retreat`: either year's front is behind the
    inventory's (`front_behind_inventory`; a nullable boolean, <NA> where neither front can be weighed:
    no date for the outline, no gap). `inventory_years`: glacier_id -> the outline's decimal year. `season`:
    the maps', by which a front's ``doy`` is dated (`catalog.scenes.look_years`)."""
    n = len(retreat)
    if not n or "inventory_gap0_m" not in retreat:
        return pd.Series(pd.array([pd.NA] * n, dtype="boolean"), index=retreat.index)
    drawn = retreat["glacier_id"].astype(int).map(inventory_years).to_numpy(float)
    verdicts = []
    for k in (0, 1):
        doy = retreat[f"doy{k}"].to_numpy(float) if f"doy{k}" in retreat else np.full(n, np.nan)
        year = retreat[f"year{k}"].to_numpy(float)
        front = np.where(np.isfinite(doy), look_years(year, doy, season) + doy / 365.25, year + 0.5)  # unknown: mid-year
        verdicts.append(front_behind_inventory(retreat[f"inventory_gap{k}_m"].to_numpy(float), front, drawn,
                                               max_retreat_m_a, pixel_size_m))
    either = np.fmax(*verdicts)  # 1 where either front is behind, 0 where the known ones are not, NaN where none is known
    flags = pd.Series(pd.array(np.where(np.isnan(either), False, either == 1), dtype="boolean"), index=retreat.index)
    return flags.mask(np.isnan(either))
