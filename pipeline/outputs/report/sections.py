"""What each section of the report shows: its figure, its tables (rows selected and numbers
formatted here, text escaped by the template) and the CSV files written beside the page.

Each ``*_section`` returns the context its partial template (``templates/<section>.html.j2``) renders,
or None where the section has nothing to show ("not available"); the prose around the numbers
lives in the templates. Numbers are formatted here so the page and the tests agree on digits:
areas 3 decimals, rates 2, retreat 1; "n/a" for a missing value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import xarray as xr

from pipeline.glaciers.summary import inventory_names
from pipeline.glaciers.tasks import failure_kind
from pipeline.outputs.report.figures import draw, embed
from pipeline.outputs.report.selection import most_different_glacier, ordered_sensors, summary_table

METRICS = ("PA", "UA", "OA", "F1", "IoU")
FLAG_NAMES = {"flag_area_jump": "area jump", "flag_front_jump": "front jump", "flag_snow": "likely snow"}
PROVENANCE_TABLES = ("weights", "scenes", "skipped_scenes", "config_yaml")  # shown in their own tables
RETREAT_FIGURES = (  # table, PNG name, figure function, missing text, caption
    ("retreat", "retreat_per_glacier", "retreat_per_glacier_figure", "no main-axis retreat per glacier",
     "Terminus retreat rate per glacier, first to last year, main-axis method: the mean over the lines "
     "parallel to the main axis that cut both fronts, by default the three at the centre of the front "
     "(config analysis.terminus_lines); positive: the front moved up-glacier; error bars: the rate's uncertainty "
     "(rate_err_m_a: the pixel and front terms in quadrature, section 2); colour: the glacier's aspect sector."),
    ("retreat_by_aspect", "retreat_by_aspect", "retreat_by_aspect_figure", "no retreat by aspect",
     "Mean retreat rate of the typical glaciers per aspect sector, first to last year; n: glaciers per sector. "
     "Typical: at least 0.1 km² in the first year, at least three terminus lines cutting both fronts, inside the region, "
     "no front flagged (see the lists below; tables/typical_glaciers says why each other glacier is left out), so "
     "sectors can lack glaciers the per-glacier figure shows; error bars: the largest per-glacier uncertainty of the "
     "sector (systematic, not reduced by n)."),
    ("retreat_by_band", "retreat_by_band", "retreat_by_band_figure", "no retreat by terminus elevation band",
     "Mean retreat rate of the typical glaciers (as above) per elevation band of their first-year terminus; "
     "error bars: the largest per-glacier uncertainty of the band (systematic, not reduced by n); n: glaciers per band."),
)


@dataclass(frozen=True)
class Cell:
    text: Any  # escaped (and credentials masked) by the template
    numeric: bool = False  # right-aligned
    bold: bool = False


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[Cell]]


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], bold: set[tuple[int, int]] = frozenset(),
          numeric: Sequence[bool] | None = None) -> Table:
    """A table for the template; `bold` holds (row, column) positions, `numeric` right-aligns columns."""
    numeric = numeric or [False] * len(header)
    return Table(list(header), [[Cell(cell, numeric[j], (i, j) in bold) for j, cell in enumerate(row)]
                                for i, row in enumerate(rows)])


def num(value: Any, digits: int) -> str:
    """`value` with `digits` decimals; "n/a" when missing."""
    return "n/a" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def plus_minus(value: Any, err: Any, digits: int) -> str:
    """"12.345 ± 0.120"; without an error just the value."""
    if value is None or pd.isna(value):
        return "n/a"
    return f"{value:.{digits}f} ± {err:.{digits}f}" if err is not None and pd.notna(err) else f"{value:.{digits}f}"


def trend_ci(slope: Any, lo: Any, hi: Any, digits: int = 3) -> str:
    """"-0.095 [-0.100, -0.090]"; without an interval just the slope."""
    if slope is None or pd.isna(slope):
        return "n/a"
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return num(slope, digits)
    return f"{num(slope, digits)} [{num(lo, digits)}, {num(hi, digits)}]"


def created_line(provenance: Mapping[str, Any]) -> str:
    parts = [f"{key}: {provenance[key]}" for key in ("created", "version", "config_hash") if key in provenance]
    return "; ".join(parts) or "no provenance given"


def write_csv(folder: Path, name: str, frame: pd.DataFrame) -> str:
    """Write `frame` as tables/NAME.csv in `folder`; return NAME for the page's link."""
    frame.to_csv(folder / "tables" / f"{name}.csv", index=False)
    return name


def run_region(provenance: Mapping[str, Any]) -> str | None:
    """The run's region name, from the config it recorded (``config_yaml``: ``region.name``); None without one."""
    import yaml

    try:
        config = yaml.safe_load(provenance.get("config_yaml") or "")
    except yaml.YAMLError:
        return None
    region = config.get("region") if isinstance(config, Mapping) else None
    name = region.get("name") if isinstance(region, Mapping) else None
    return str(name) if name else None


def synthetic_area(tables: Mapping[str, pd.DataFrame], provenance: Mapping[str, Any]) -> dict | None:
    """For the Summary's banner, where the run is on a synthetic area (a ``generator_check`` table, or
    rows of the generator's truth, sensor ``truth``): the region's name; None on real scenes."""
    check = tables.get("generator_check")
    truth = any("sensor" in t and t["sensor"].eq("truth").any() for t in tables.values() if isinstance(t, pd.DataFrame))
    if (check is None or not len(check)) and not truth:
        return None
    return {"region": run_region(provenance)}


def in_sample(provenance: Mapping[str, Any]) -> dict | None:
    """Where the run's region is among the regions its weights were trained on (the cards' domains,
    ``weights_domain``): the sensors so trained, the years the card's training data names for the
    region (``weights_card``; None where it names none), the cards' held-out scores as a table (None
    where the provenance has none) and the cards' files. None where no weights were trained here."""
    region = run_region(provenance)
    if not region:
        return None
    sensors = [s for s, domain in (provenance.get("weights_domain") or {}).items()
               if any(str(r) == region or str(r).startswith(f"{region} (") for r in ((domain or {}).get("regions") or []))]
    if not sensors:
        return None
    cards = provenance.get("weights_card") or {}
    years = {s: re.search(rf"{re.escape(region)} \((\d{{4}}-\d{{4}})", str((cards.get(s) or {}).get("training_data", "")))
             for s in sensors}
    held_out = {s: (cards.get(s) or {}).get("held_out") or {} for s in sensors}
    keys = list(dict.fromkeys(k for h in held_out.values() for k in h))
    files = [Path(f).with_suffix(".json").name for s in sensors
             if (f := str((provenance.get("weights") or {}).get(s, {}).get("file") or ""))]  # a weights file's card
    return {"region": region, "sensors": " and ".join(sensors), "plural": len(sensors) > 1,
            "years": "; ".join(f"{s}: {m.group(1)}" for s, m in years.items() if m) or None,
            "held_out": table(["Sensor", *(k.removeprefix("held_out_") for k in keys)],
                              [[s, *(num(held_out[s].get(k), 3) for k in keys)] for s in sensors],
                              numeric=[False] + [True] * len(keys)) if keys else None,
            "cards": ", ".join(files) or None}


# --------------------------------------------------------------------------------------------
# the sections, in page order


def summary_section(folder: Path, tables: Mapping[str, pd.DataFrame], provenance: Mapping[str, Any]) -> dict | None:
    if "total_area" not in tables:
        return None
    summary = summary_table(tables, provenance)
    header = ["Sensor", "Years", "Area first year (km²)", "Area last year (km²)",
              "Area change (%/a), ± first and last years in quadrature", "OLS trend (km²/a) [95 % CI]",
              "Mean retreat, all glaciers (m/a)", "Glaciers", "Mean retreat, typical glaciers (m/a)", "Flagged",
              "Network IoU", "Network OA"]
    rows = [[r.sensor, r.years, plus_minus(r.area0_km2, r.area0_err_km2, 3),
             plus_minus(r.area1_km2, r.area1_err_km2, 3), plus_minus(r.get("rate_pct_a"), r.get("rate_err_pct_a"), 2),
             trend_ci(r.get("trend_km2_a"), r.get("trend_lo_km2_a"), r.get("trend_hi_km2_a")),
             num(r.get("mean_retreat_m_a"), 1), num(r.get("n_glaciers"), 0),
             f"{num(r.get('mean_retreat_typical_m_a'), 1)} (n={int(r['n_typical'])})" if pd.notna(r.get("n_typical")) else "n/a",
             flagged_counts(r, int(r.get("n_failures") or 0)), num(r.get("IoU"), 3), num(r.get("OA"), 3)]
            for _, r in summary.iterrows()]
    return {"table": table(header, rows, numeric=[False, False] + [True] * 7 + [False, True, True]),
            "csv": write_csv(folder, "summary", summary)}


def flagged_counts(row: pd.Series, failed: int) -> str:
    """The Summary's flagged counts: glaciers with fronts flagged, glaciers with failures rows, glacier-years not seen."""
    fronts, unobserved = (int(row[c]) if pd.notna(row.get(c)) else 0 for c in ("n_front_flagged", "n_unobserved"))
    return f"fronts: {fronts} glaciers; failures: {failed} glaciers; unobserved: {unobserved} glacier-years"


def map_section(folder: Path, outlines: gpd.GeoDataFrame, dem: xr.DataArray) -> dict | None:
    if outlines is None or not len(outlines):
        return None
    sensor = ordered_sensors(outlines.sensor)[0]
    caption = (f"{sensor} glacier outlines coloured by year over a hillshade of the DEM (Horn gradient, sun from "
               f"azimuth 315°, altitude 45°) with elevation contours; labels are glacier ids.")
    return {"figure": embed(folder, "outline_map", draw("outline_map_figure", outlines, dem, sensor), caption)}


def total_area_section(folder: Path, tables: Mapping[str, pd.DataFrame], provenance: Mapping[str, Any] | None = None) -> dict | None:
    if "total_area" not in tables:
        return None
    caption = ("Total glacier area per year and sensor; error bars: area uncertainty (perimeter term, "
               "classification term and, for glacier-years filled in, the gap fill's term, each summed over glaciers, "
               "in quadrature: see the table below). Dashed: ordinary least-squares trend; its slope's 95 % confidence "
               "interval is in the legend. Glacier-years not seen (cloud, no scene) count with the area of their own observed years: see "
               "'Glacier-years not seen' below.")
    section = {"figure": embed(folder, "total_area", draw("total_area_figure", tables), caption),
               "csv": write_csv(folder, "total_area", tables["total_area"]),
               "uncertainty": uncertainty_and_indices(folder, tables, provenance), "region": None}
    change = tables.get("area_change")
    if change is None or not change.glacier_id.isna().any():
        return section
    region = change[change.glacier_id.isna()]
    header = ["Sensor", "Period", "Area first (km²)", "Area last (km²)", "Change (km²)", "Change (%)",
              "Rate (%/a)", "OLS trend (km²/a) [95 % CI]", "Theil-Sen (km²/a)"]
    rows = [[r.sensor, f"{int(r.year0)}-{int(r.year1)}", num(r.area0_km2, 3), num(r.area1_km2, 3),
             plus_minus(r.change_km2, r.change_err_km2, 3), num(r.change_pct, 2),
             plus_minus(r.rate_pct_a, r.rate_err_pct_a, 2),
             trend_ci(r.trend_km2_a, r.trend_lo_km2_a, r.trend_hi_km2_a),
             num(r.trend_theil_sen_km2_a, 3)]
            for _, r in region.set_index("sensor", drop=False).loc[ordered_sensors(region.sensor)].iterrows()]
    section["region"] = {"table": table(header, rows, numeric=[False, False] + [True] * 7),
                         "csv": write_csv(folder, "area_change", change)}
    return section


def uncertainty_and_indices(folder: Path, tables: Mapping[str, pd.DataFrame], provenance: Mapping[str, Any] | None = None) -> dict:
    """The two area-uncertainty terms per sensor-year, the two retreat-uncertainty terms, and where
    the model disagrees with NDSI and red/SWIR (each None where its columns are missing); the
    generator check, with `in_sample` where the weights were trained on this area."""
    from pipeline.glaciers.region_tables import index_agreement

    out = {"area_terms": None, "retreat_terms": None, "indices": None, "generator": None, "unobserved": None,
           "inventory_rules": None, "in_sample": in_sample(provenance or {})}
    check = tables.get("generator_check")
    if check is not None and len(check):  # a synthetic area: the numbers against what its generator set
        rows = [[r.sensor, r.check, num(r.value, 2), r.target, "yes" if r.met else "no", r.detail]
                for r in check.itertuples(index=False)]
        out["generator"] = table(["Sensor", "Check", "Value", "Target", "Met", "Detail"], rows,
                                 numeric=[False, False, True, False, False, False])
    total = tables.get("total_area")
    if total is not None and {"area_err_perimeter_km2", "area_err_class_km2"} <= set(total.columns):
        fill = "area_err_fill_km2" in total.columns  # tables made before the gap fill's own term have none
        rows = [[r.sensor, int(r.year), num(r.area_km2, 3), num(r.area_err_perimeter_km2, 3), num(r.area_err_class_km2, 3)]
                + ([num(r.area_err_fill_km2, 3)] if fill else []) + [num(r.area_err_km2, 3)]
                for r in total.sort_values(["sensor", "year"]).itertuples(index=False)]
        out["area_terms"] = table(["Sensor", "Year", "Area (km²)", "± perimeter (km²)", "± classification (km²)"]
                                  + (["± gap fill (km²)"] if fill else []) + ["± total (km²)"], rows,
                                  numeric=[False, False] + [True] * (5 if fill else 4))
    retreat = tables.get("retreat")
    if retreat is not None and len(retreat) and {"rate_err_pixel_m_a", "rate_err_front_m_a"} <= set(retreat.columns):
        overall = retreat[(retreat["method"] == "main_axis") & (retreat["period"] == "overall")]
        rows = [[sensor, str(len(g)), num(g.rate_err_pixel_m_a.median(), 2), num(g.rate_err_front_m_a.median(), 2),
                 num(g.rate_err_m_a.median(), 2)] for sensor, g in overall.groupby("sensor")]
        out["retreat_terms"] = table(["Sensor", "Glaciers", "± pixel (m/a)", "± front (m/a)", "± total (m/a)"], rows,
                                     numeric=[False] + [True] * 4)
    areas = tables.get("areas")
    if areas is not None and "flag_unobserved" in areas.columns and areas["flag_unobserved"].fillna(False).astype(bool).any():
        out["unobserved"] = unobserved_table(folder, areas)
    out["inventory_rules"] = inventory_rules_table(areas)
    if areas is not None and "flag_index_disagreement" in areas.columns and areas["index_disagreement"].notna().any():
        rows = [[r.sensor, num(r.index_model_km2, 3), num(r.ndsi_km2, 3), num(r.ratio_km2, 3),
                 num(r.model_to_ndsi, 2), f"{r.n_flagged} of {r.n_compared}", "yes" if r.extreme else "no"]
                for r in index_agreement(areas).itertuples(index=False)]
        indices = {"region": table(["Sensor", "Model, summed over glacier-years (km²)", "NDSI (km²)", "Red/SWIR (km²)", "Model / NDSI",
                                    "Glacier-years flagged", "Extreme"], rows, numeric=[False] + [True] * 5 + [False]),
                   "flagged": None}
        flagged = areas[areas["flag_index_disagreement"].fillna(False).astype(bool)].sort_values(["sensor", "glacier_id", "year"])
        if len(flagged):
            rows = [[r.sensor, int(r.glacier_id), int(r.year), num(r.area_km2, 3), num(r.index_model_km2, 3),
                     num(r.ndsi_km2, 3), num(r.ratio_km2, 3), num(r.index_disagreement, 2)]
                    for r in flagged.itertuples(index=False)]
            indices["flagged"] = {"table": table(["Sensor", "Glacier", "Year", "Area (km²)", "Model, compared (km²)",
                                                  "NDSI (km²)", "Red/SWIR (km²)", "Disagreement"], rows,
                                                 numeric=[False] + [True] * 7),
                                  "csv": write_csv(folder, "index_disagreement", flagged)}
        out["indices"] = indices
    return out


def inventory_rules_table(areas: pd.DataFrame | None) -> Table | None:
    """Per sensor, what the inventory decided rather than the image (`pipeline.glaciers.accumulation`): the
    area the snow rule added inside the outlines and the area the upper-boundary rule left out beyond them,
    each a year on average and at most, against the mapped area. None where neither rule changed anything."""
    columns = [c for c in ("snow_kept_km2", "upper_excluded_km2") if areas is not None and c in areas.columns]
    if not columns:
        return None
    rows = []
    for sensor, group in areas[areas["sensor"] != "truth"].groupby("sensor"):
        by_year = group.groupby("year")[[*columns, "area_km2"]].sum()
        if not (by_year[columns].to_numpy() > 0).any():
            continue
        rows.append([sensor, *(f"{num(by_year[c].mean(), 3)} / {num(by_year[c].max(), 3)}" if c in by_year else "n/a"
                               for c in ("snow_kept_km2", "upper_excluded_km2")),
                     num(100 * (by_year[columns].sum(axis=1) / by_year["area_km2"]).max(), 2)])
    if not rows:
        return None
    return table(["Sensor", "Snow kept inside the outlines, a year: mean / most (km²)",
                  "Ice left out beyond the upper boundary, a year: mean / most (km²)", "Most of a year's area (%)"],
                 rows, numeric=[False, True, True, True])


def unobserved_table(folder: Path, areas: pd.DataFrame) -> dict:
    """The glacier-years flagged unobserved, with what was measured and what the region total counts:
    the filled area, its error (``counted_err_km2``: its filled terms and the fill's in quadrature) and
    the fill's own (``counted_err_fill_km2``, `region_tables.fill_errors`)."""
    from pipeline.glaciers.region_tables import gap_filled

    a = areas.assign(flag_unobserved=areas["flag_unobserved"].fillna(False).astype(bool))
    counted, filled = gap_filled(a)
    seen = a.flag_unobserved.to_numpy()
    flagged = a[seen].assign(counted_km2=counted["area_km2"].to_numpy()[seen],
                             counted_err_km2=counted["area_err_km2"].to_numpy()[seen],
                             counted_err_fill_km2=counted["area_err_fill_km2"].to_numpy()[seen],
                             filled=filled.to_numpy()[seen]).sort_values(["sensor", "glacier_id", "year"])
    rows = [[r.sensor, int(r.glacier_id), int(r.year), num(r.unobserved_frac, 2), num(r.area_km2, 3)]
            + ([num(r.counted_km2, 3), num(r.counted_err_km2, 3), num(r.counted_err_fill_km2, 3)] if r.filled
               else ["as measured (never observed)", "", ""]) for r in flagged.itertuples(index=False)]
    return {"table": table(["Sensor", "Glacier", "Year", "Unobserved share", "Area mapped (km²)", "In the region total (km²)",
                            "± (km²)", "of which gap fill (km²)"], rows, numeric=[False] + [True] * 7),
            "csv": write_csv(folder, "unobserved", flagged)}


def band_section(folder: Path, tables: Mapping[str, pd.DataFrame]) -> dict | None:
    if "area_by_band" not in tables:
        return None
    from pipeline.outputs.report.figures import BAND_LABEL_MIN_KM2, BAND_LABEL_MIN_SHARE

    caption = ("Change of glacier area per elevation band from the first to the last year (red: loss); bands "
               "are [low, high) in m a.s.l., pixels without DEM are left out. Labels: the change in % of the band's "
               f"first-year area, left off bands under {BAND_LABEL_MIN_KM2:g} km² or under {100 * BAND_LABEL_MIN_SHARE:g} % "
               "of the sensor's largest band in the first year (a few pixels' change in % says nothing; the table has them).")
    bands = tables["area_by_band"]
    return {"figure": embed(folder, "area_change_by_band", draw("band_change_figure", bands), caption),
            "csv": write_csv(folder, "area_by_band", bands)}


def aspect_section(folder: Path, tables: Mapping[str, pd.DataFrame]) -> dict | None:
    if "area_by_aspect" not in tables:
        return None
    caption = ("Glacier area per aspect sector, first year (black outline) and last year (filled). Pixel method: "
               "each pixel's area to its own sector (flat pixels left out); glacier method: a glacier's whole "
               "area to the sector of its mean aspect.")
    aspect = tables["area_by_aspect"]
    return {"figure": embed(folder, "area_by_aspect", draw("aspect_rose_figure", aspect), caption),
            "csv": write_csv(folder, "area_by_aspect", aspect)}


def retreat_section(folder: Path, tables: Mapping[str, pd.DataFrame]) -> dict:
    """Each retreat figure with its table (or what is missing), then the glacier-quality lists."""
    parts = []
    for name, png, figure, missing, caption in RETREAT_FIGURES:
        if name in tables and (tables[name].method == "main_axis").any():
            if name == "retreat":
                caption += few_lines(tables[name])
            parts.append({"figure": embed(folder, png, draw(figure, tables[name]), caption),
                          "csv": write_csv(folder, name, tables[name])})
        else:
            parts.append({"missing": missing})
    return {"parts": parts, "quality": quality(folder, tables)}


def few_lines(retreat: pd.DataFrame) -> str:
    """The per-glacier figure's word on the glaciers measured with fewer than `MIN_LINES` lines (hatched there)."""
    from pipeline.outputs.report.figures import MIN_LINES
    from pipeline.outputs.report.selection import first_to_last_retreat

    rows = first_to_last_retreat(retreat)
    if "n_lines" not in rows:
        return ""
    few = rows[rows.n_lines.notna() & (rows.n_lines < MIN_LINES)]
    if not len(few):
        return f" Every glacier is measured with at least {MIN_LINES} lines."
    per_sensor = "; ".join(f"{sensor}: {(few.sensor == sensor).sum()}" for sensor in ordered_sensors(few.sensor))
    return (f" Hatched: glaciers measured with fewer than {MIN_LINES} lines (n_lines < {MIN_LINES}; {per_sensor}), "
            "their rate from the lines that cut both fronts, fewer than the centre's three.")


def glacier_name(names: Mapping[int, str], glacier_id):
    """A glacier as the inventory names it (`names`, `summary.inventory_names`), else its glacier_id as given."""
    return names.get(int(glacier_id), glacier_id) if pd.notna(glacier_id) else glacier_id


def flagged_fronts(retreat: pd.DataFrame, flag: str, largest: str, measure, names: Mapping[int, str] | None = None) -> dict | None:
    """One row per sensor and glacier with main-axis pairs under `flag`: the pairs, `largest`
    (`measure` of its flagged rows, m) and the first-to-last rate read; None where none is flagged.
    Glaciers by `names` (`summary.inventory_names`), else their glacier_id."""
    names = names or {}
    if flag not in retreat:
        return None
    axis = retreat[retreat["method"].eq("main_axis")]
    overall = axis[axis["period"].eq("overall")].set_index(["sensor", "glacier_id"])["rate_m_a"]
    flagged = axis[axis[flag].eq(True)].sort_values(["year0", "year1"])
    rows = [[glacier_name(names, gid), sensor, ", ".join(f"{int(a)}-{int(b)}" for a, b in zip(g["year0"], g["year1"])), num(measure(g), 0),
             num(overall.get((sensor, gid), np.nan), 1)] for (sensor, gid), g in flagged.groupby(["sensor", "glacier_id"], sort=True)]
    return table(["Glacier", "Sensor", "Pairs of years", largest, "Retreat read, first to last year (m/a)"], rows,
                 numeric=[False, False, False, True, True]) if rows else None


# what a failures row means, by its kind (`tasks.failure_kind`, which reads the words `tasks.Failures` writes),
# in the order the page lists them
FAILURE_KINDS = (
    ("task", ("the glacier's task failed with an error (its rows of that task are missing: a failed terminus "
              "task has no terminus or retreat rows, a failed area_change task no change rows)")),
    ("unmeasured", ("no terminus line cuts both fronts in some pairs (those pairs' retreat is empty; the glacier's "
                    "other pairs are measured)")),
    ("hidden", ("a front under cloud or outside the scenes (that year is left out of the glacier's pairs; its "
                "retreat between the other years is measured)")),
)


def failure_groups(failures: pd.DataFrame, names: Mapping[int, str]) -> list[dict]:
    """The failures rows by kind: what they mean and the glaciers ("23 (landsat: 2021)"), kinds in `FAILURE_KINDS` order."""
    kinds = [failure_kind(r) for r in failures["reason"]]
    rows = failures.assign(_kind=[k for k, _ in kinds], _what=[w for _, w in kinds])
    rows = rows.assign(_what=[f"{t}: {w}" if k == "task" else w for k, t, w in zip(rows._kind, rows.task, rows._what)])
    groups = []
    for kind, meaning in FAILURE_KINDS:
        g = rows[rows._kind == kind]
        if len(g):
            glaciers = []
            for gid, sub in g.groupby("glacier_id", sort=True):
                per_sensor = ["{}: {}".format(sensor, ", ".join(dict.fromkeys(sg._what))) for sensor, sg in sub.groupby("sensor", sort=False)]
                glaciers.append(f"{glacier_name(names, gid)} ({'; '.join(per_sensor)})")
            groups.append({"meaning": meaning, "glaciers": ", ".join(glaciers), "count": len(glaciers)})
    return groups


def quality(folder: Path, tables: Mapping[str, pd.DataFrame]) -> dict:
    """Glaciers whose terminus or change could not be measured (``failures``), glacier-years
    off their own series (``areas`` plausibility flags, `pipeline.glaciers.plausibility`),
    fronts on the edge of what their glacier is measured in (``retreat.flag_front_at_edge``),
    first fronts far behind the inventory's (``retreat.flag_behind_inventory``,
    `pipeline.glaciers.inventory_front`), and fronts that moved between two years further than a
    glacier does (``retreat.flag_front_too_fast``, `pipeline.glaciers.plausibility`)."""
    out = {"failures": None, "flagged": None, "fronts_at_edge": None, "behind_inventory": None, "too_fast": None}
    names = inventory_names(tables["areas"]) if "areas" in tables else {}  # glaciers as the inventory names them
    retreat = tables.get("retreat")
    if retreat is not None and "flag_front_at_edge" in retreat:
        edge = retreat[retreat["flag_front_at_edge"].eq(True) & retreat["period"].eq("consecutive")]
        pairs = edge.drop_duplicates(["sensor", "glacier_id", "year0", "year1"]).sort_values(["sensor", "glacier_id", "year0"])
        rows = [[glacier_name(names, gid), sensor, ", ".join(f"{int(a)}-{int(b)}" for a, b in zip(g["year0"], g["year1"]))]
                for (sensor, gid), g in pairs.groupby(["sensor", "glacier_id"], sort=True)]
        if rows:
            out["fronts_at_edge"] = table(["Glacier", "Sensor", "Pairs of years"], rows)
    if retreat is not None:
        out["behind_inventory"] = flagged_fronts(retreat, "flag_behind_inventory", "Largest gap to the inventory's front (m)",
                                                 lambda g: np.nanmax(g[["inventory_gap0_m", "inventory_gap1_m"]].to_numpy(float)), names)
        out["too_fast"] = flagged_fronts(retreat, "flag_front_too_fast", "Largest move (m)",
                                         lambda g: g["retreat_m"].abs().max(), names)
    failures = tables.get("failures")
    if failures is not None and len(failures):
        out["failures"] = {"count": int(failures.glacier_id.nunique()), "groups": failure_groups(failures, names),
                           "csv": write_csv(folder, "failures", failures),
                           "table": table(["Glacier", "Sensor", "Task", "Reason"],
                                          [[glacier_name(names, r.glacier_id), r.sensor, r.task, r.reason]
                                           for r in failures.itertuples()])}
    areas = tables.get("areas")
    cols = [c for c in FLAG_NAMES if areas is not None and c in areas]
    flagged = areas[areas[cols].eq(True).any(axis=1)] if cols else pd.DataFrame()
    if len(flagged):
        rows = [[glacier_name(names, r["glacier_id"]), r["sensor"], int(r["year"]), num(r["area_km2"], 3),
                 ", ".join(flag_reason(r, c) for c in cols if r[c] == True),  # noqa: E712 (True, not NaN)
                 "yes" if any(pd.notna(r.get(c)) and bool(r.get(c)) for c in IMPLAUSIBLE_FLAGS) else "no"]
                for _, r in flagged.iterrows()]
        out["flagged"] = table(["Glacier", "Sensor", "Year", "Area (km²)", "Reasons", "Retreat rows flag_implausible"], rows,
                               numeric=[False, False, False, True, False, False])
    return out


IMPLAUSIBLE_FLAGS = ("flag_area_jump", "flag_front_jump")  # what retreat.flag_implausible carries (docs/tables.md)


def flag_reason(row: pd.Series, flag: str) -> str:
    """`FLAG_NAMES` of `flag`; for snow with the snow kept at the inventory's extent (km² and share of the area)."""
    kept = row.get("snow_kept_km2")
    if flag != "flag_snow" or kept is None or pd.isna(kept) or not kept > 0:
        return FLAG_NAMES[flag]
    share = f", {100 * kept / row['area_km2']:.1f} % of the area" if row.get("area_km2", 0) > 0 else ""
    return f"{FLAG_NAMES[flag]} (snow kept {kept:.3f} km²{share})"


def accuracy_table(accuracy: pd.DataFrame) -> Table:
    """Every row, 3 decimals; the best value of each metric within a zone and year in bold."""
    rank = {s: i for i, s in enumerate(ordered_sensors(accuracy.sensor))}
    acc = accuracy.assign(_zone=accuracy.zone != "all", _sensor=accuracy.sensor.map(rank))
    acc = acc.sort_values(["_zone", "zone", "year", "_sensor", "model"]).reset_index(drop=True)
    header = ["Zone", "Year", "Sensor", "Model", *METRICS, "Pixels"]
    rows = [[r.zone, int(r.year), r.sensor, r.model, *(num(r[m], 3) for m in METRICS), f"{int(r.n_pixels):,}"]
            for _, r in acc.iterrows()]
    bold = set()
    for _, group in acc.groupby(["zone", "year"]):
        for j, metric in enumerate(METRICS):
            best = group[metric].max()
            bold |= {(i, 4 + j) for i in group.index[group[metric] == best]} if pd.notna(best) else set()
    return table(header, rows, bold=bold, numeric=[False] * 4 + [True] * 6)


def sensor_section(folder: Path, tables: Mapping[str, pd.DataFrame], outlines: gpd.GeoDataFrame,
                   dem: xr.DataArray, provenance: Mapping[str, Any] | None = None) -> dict:
    """The accuracy table (None without a truth), `in_sample` where the weights were trained on this
    area, and the glacier whose outlines differ most (None without two sensors' outlines of one
    glacier and year)."""
    out = {"accuracy": None, "difference": None, "in_sample": in_sample(provenance or {})}
    if "accuracy" in tables:
        out["accuracy"] = {"table": accuracy_table(tables["accuracy"]),
                           "csv": write_csv(folder, "accuracy", tables["accuracy"]),
                           "persistence": bool(tables["accuracy"].model.eq("persistence").any())}
    sensors = ordered_sensors(outlines.sensor)[:2] if outlines is not None and len(outlines) else []
    row = most_different_glacier(outlines, sensors) if len(sensors) == 2 else None
    if row is not None:
        caption = (f"Glacier {row.glacier_id} in {row.year}, the largest symmetric difference between the {sensors[0]} "
                   f"and {sensors[1]} outlines ({row.difference_km2:.3f} km²), zoomed on its tongue (its lowest 15 %).")
        out["difference"] = embed(folder, "sensor_difference",
                                  draw("sensor_difference_figure", outlines, dem, sensors), caption)
    return out


def scene_rows(scenes: Mapping[str, Any]) -> list[list[Any]]:
    return [[sensor, year, len(ids), ", ".join(map(str, ids))]
            for sensor, per_year in scenes.items() for year, ids in sorted(per_year.items())]


def skipped_rows(skipped: Mapping[str, Any]) -> list[list[Any]]:
    """Skipped scenes as (sensor, year, scene, reason): {year: [...]} per sensor, or a plain list."""
    rows = []
    for sensor, entries in skipped.items():
        per_year = entries.items() if isinstance(entries, Mapping) else [("", entries)]
        for year, items in per_year:
            for item in items:
                if isinstance(item, Mapping):
                    name = item.get("item_id", item.get("id", ""))
                    rows.append([sensor, year, name, item.get("reason", "")])
                else:
                    rows.append([sensor, year, item, ""])
    return rows


def provenance_section(provenance: Mapping[str, Any]) -> dict:
    """Scalars as one key/value table, weights, scenes and skipped scenes as tables, any other
    nested entry as it comes (the template nests dicts and lists), the config YAML verbatim."""
    other = {k: v for k, v in provenance.items() if k not in PROVENANCE_TABLES}
    scalars = {k: v for k, v in other.items() if not isinstance(v, (Mapping, list, tuple))}
    weights = provenance.get("weights") or {}
    keys = list(dict.fromkeys(k for w in weights.values() for k in w))
    scenes = provenance.get("scenes") or {}
    skipped = skipped_rows(provenance.get("skipped_scenes") or {})
    return {
        "scalars": table(["Key", "Value"], list(scalars.items())) if scalars else None,
        "weights": table(["Sensor", *keys], [[s, *(w.get(k, "") for k in keys)] for s, w in weights.items()])
        if weights else None,
        "scenes": table(["Sensor", "Year", "Scenes", "Scene ids"], scene_rows(scenes), numeric=[False, False, True, False])
        if scenes else None,
        "skipped": table(["Sensor", "Year", "Scene", "Reason"], skipped) if skipped else None,
        "nested": {k: v for k, v in other.items() if k not in scalars},
        "has_config": "config_yaml" in provenance,
        "config_yaml": provenance.get("config_yaml"),
    }
