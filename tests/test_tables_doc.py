"""docs/tables.md, the column dictionary of the output tables, documents every column of every table.

The columns come from the code, not from a list kept here: the declared schemas
(`pipeline.glaciers.tables.TABLE_COLUMNS`, `pipeline.glaciers.raster_schema.TABLE_COLUMNS`,
`region_tables.INDEX_AGREEMENT_COLUMNS`, `outlines.OUTLINE_COLUMNS`), the columns the summaries and
the accuracy table make (their functions called on a row or two), and what ``run`` adds
(``inventory_id``, ``scenes_skipped``, ``sensor`` on the terminus summaries). A column added to any of
them fails `test_every_column_is_documented` until docs/tables.md has a row for it in its table's
section (``## `name` `` heading, a ``| `column` | unit | meaning |`` row); a row for a column the
code no longer makes fails `test_no_stale_rows`. No run: a few seconds.

With ``GLACIERWATCH_TABLES`` set to a run's (or ``stats``') tables folder, `test_real_tables_are_documented`
also checks every column of every ``*.parquet`` there.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "tables.md"

HEADING = re.compile(r"^## `([A-Za-z0-9_]+)`\s*$")
ROW = re.compile(r"^\|\s*`([A-Za-z0-9_]+)`\s*\|")

# The input `store_terminus.terminus_tables` gives `retreat_summary.typical_glaciers` (its `glaciers` frame);
# the function adds `typical` and `reason`.
TYPICAL_INPUT = ["glacier_id", "area_km2", "n_lines", "touches_edge", "front_at_edge", "behind_inventory", "front_too_fast"]
# `analysis.map_tables` merges these from ``areas`` onto the outlines it publishes.
OUTLINE_EXTRAS = ["unobserved_frac", "flag_unobserved"]
# `store_terminus._with_sensor`: ``run`` puts a ``sensor`` column on these.
WITH_SENSOR = ("typical_glaciers", "retreat_by_aspect", "retreat_by_band")


def documented() -> dict[str, list[str]]:
    """table -> the columns its section of docs/tables.md has a row for."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            match = HEADING.match(line)
            current = match.group(1) if match else None
            if current is not None:
                assert current not in sections, f"docs/tables.md has two sections for `{current}`"
                sections[current] = []
        elif current is not None and (row := ROW.match(line)):
            sections[current].append(row.group(1))
    return sections


def _retreat_row() -> pd.DataFrame:
    from pipeline.glaciers.tables import TABLE_COLUMNS

    row = {c: np.nan for c in TABLE_COLUMNS["retreat"]}
    row |= {"glacier_id": 1, "sensor": "s", "aspect_sector": "N", "method": "main_axis", "year0": 2016, "year1": 2017,
            "retreat_m": 10.0, "rate_m_a": 10.0, "rate_err_m_a": 2.0, "dz_m": 1.0, "n_lines": 3}
    return pd.DataFrame([row])


def _accuracy_columns() -> list[str]:
    from pipeline.glaciers.accuracy import AccuracyMetrics, accuracy_by_model

    mask = xr.DataArray(np.ones((1, 2, 2), bool), dims=("year", "y", "x"), coords={"year": [2016]})
    table = accuracy_by_model({"model": mask}, mask, {"all": None}, sensor="s")
    return list(table.columns) + [f.name for f in dataclasses.fields(AccuracyMetrics)]


def expected() -> dict[str, list[str]]:
    """table -> every column the code can give it (declared, made by its function, or added by ``run``)."""
    from pipeline.glaciers.analysis import TABLES as RUN_TABLES
    from pipeline.glaciers.inventory import attach_inventory_ids
    from pipeline.glaciers.outlines import OUTLINE_COLUMNS
    from pipeline.glaciers.raster_schema import TABLE_COLUMNS as RASTER_COLUMNS
    from pipeline.glaciers.region_tables import INDEX_AGREEMENT_COLUMNS
    from pipeline.glaciers.retreat_summary import (
        retreat_by_aspect,
        retreat_by_elevation_band,
        typical_glaciers,
    )
    from pipeline.glaciers.tables import TABLE_COLUMNS
    from pipeline.run import count_skipped_scenes

    tables: dict[str, list[str]] = {}

    def add(name: str, columns) -> None:
        tables[name] = list(dict.fromkeys([*tables.get(name, []), *columns]))

    for schema in (RASTER_COLUMNS, TABLE_COLUMNS):
        for name, columns in schema.items():
            add(name, columns)
    add("index_agreement", INDEX_AGREEMENT_COLUMNS)
    add("outlines", [*OUTLINE_COLUMNS, *OUTLINE_EXTRAS])
    add("accuracy", _accuracy_columns())
    glaciers = pd.DataFrame([{"glacier_id": 1, "area_km2": 1.0, "n_lines": 3, "touches_edge": False, "front_at_edge": False,
                              "behind_inventory": False, "front_too_fast": False}], columns=TYPICAL_INPUT)
    add("typical_glaciers", typical_glaciers(glaciers).columns)
    retreat = _retreat_row()
    add("retreat_by_aspect", retreat_by_aspect(retreat, [1]).columns)
    add("retreat_by_band", retreat_by_elevation_band(retreat, pd.Series({1: 3650.0}), [1], edges_m=None).columns)
    for name in WITH_SENSOR:
        add(name, ["sensor"])
    # run's own tables (and outlines): `scenes_skipped` where `count_skipped_scenes` puts it, `inventory_id`
    # beside every `glacier_id` (`attach_inventory_ids`); `stats` adds neither
    published = [name for name in tables if name in {*RUN_TABLES, "generator_check", "outlines"}]
    probes = {name: pd.DataFrame({"sensor": ["s"], "year": [2016]}) for name in published}
    for name, table in count_skipped_scenes(probes, {}).items():
        add(name, [c for c in table.columns if c not in ("sensor", "year")])
    for name in published:
        add(name, attach_inventory_ids(pd.DataFrame({c: [1] for c in tables[name]}), {}).columns)
    return tables


def test_every_published_table_has_a_section():
    from pipeline.glaciers.analysis import TABLES

    sections = documented()
    missing = [name for name in [*TABLES, "generator_check", *expected()] if name not in sections]
    assert not missing, f"docs/tables.md has no '## `NAME`' section for {sorted(set(missing))}"


def test_every_column_is_documented():
    sections = documented()
    missing = {name: [c for c in columns if c not in sections.get(name, [])] for name, columns in expected().items()}
    missing = {name: columns for name, columns in missing.items() if columns}
    assert not missing, (f"columns without a row in their table's section of docs/tables.md: {missing}; "
                         "add a '| `column` | unit | meaning |' row (what a row is, unit, meaning, where it is made)")


def test_no_stale_rows():
    want = expected()
    stale = {name: [c for c in columns if c not in want.get(name, [])] for name, columns in documented().items()}
    stale = {name: columns for name, columns in stale.items() if columns}
    assert not stale, f"docs/tables.md documents columns no code makes (removed or renamed?): {stale}"


def test_rows_are_not_repeated():
    repeated = {name: sorted({c for c in columns if columns.count(c) > 1}) for name, columns in documented().items()}
    repeated = {name: columns for name, columns in repeated.items() if columns}
    assert not repeated, f"docs/tables.md documents these columns twice in one section: {repeated}"


@pytest.mark.skipif(not os.environ.get("GLACIERWATCH_TABLES"), reason="set GLACIERWATCH_TABLES to a tables folder")
def test_real_tables_are_documented():
    folder = Path(os.environ["GLACIERWATCH_TABLES"])
    paths = sorted(folder.glob("*.parquet"))
    assert paths, f"no *.parquet in {folder}"
    sections = documented()
    missing = {}
    for path in paths:
        columns = pd.read_parquet(path).columns
        if path.stem not in sections:
            missing[path.stem] = "no section"
        elif gaps := [c for c in columns if c not in sections[path.stem]]:
            missing[path.stem] = gaps
    assert not missing, f"columns of {folder} that docs/tables.md does not document: {missing}"
