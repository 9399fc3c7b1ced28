"""The report's page through jinja2: the environment, the page and its two partials that are
also used alone (glacier quality, uncertainty and indices), and `write_report`, which draws the
sections and swaps the finished folder into place.

Templates live in ``templates/`` (shipped as package data): ``report.html.j2`` is the page, one
partial per section, ``macros.html.j2`` the table, figure and link markup. Autoescape is on;
``finalize`` masks credentials in every value and then escapes it with `html.escape` (redacting
must see the raw text: after escaping, ``&amp;`` hides query parameters), so the page keeps the
``&#x27;`` spelling of the single-module report. Values that are already markup (macro output,
the figures' data URIs) pass unchanged. The folder is built beside ``out_dir`` and renamed over
it, so a failed report leaves the previous one (or none), never half of one.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import geopandas as gpd
import jinja2
import pandas as pd
import xarray as xr
from markupsafe import Markup

from catalog.redact import redact
from pipeline.outputs.replace import building
from pipeline.outputs.report import sections
from pipeline.outputs.report.figures import drawing_on, finish_figures

SECTIONS = {"summary": "Summary", "outlines": "1. Glacier outlines", "total-area": "2. Total glacier area",
            "bands": "3. Area change by elevation band", "aspect": "4. Area by aspect", "retreat": "5. Terminus retreat",
            "sensors": "6. Sentinel-2 vs Landsat", "provenance": "7. Provenance"}


def escaped(value: Any) -> Markup:
    """`value` as page text: credentials masked, then HTML-escaped; markup passes unchanged."""
    if hasattr(value, "__html__"):
        return value
    return Markup(html.escape(redact(str(value))))


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.outputs.report", "templates"),
        autoescape=True,
        finalize=escaped,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["SECTIONS"] = SECTIONS
    env.tests["listlike"] = lambda value: isinstance(value, (list, tuple))
    return env


def render(template: str, **context: Any) -> str:
    """Template `template` of ``templates/`` rendered with `context`."""
    return environment().get_template(template).render(**context)


def quality_html(folder: Path, tables: Mapping[str, pd.DataFrame]) -> str:
    """The "failed glaciers and implausible years" part of section 5; writes failures.csv into `folder`/tables."""
    return render("quality.html.j2", quality=sections.quality(folder, tables))


def uncertainty_html(folder: Path, tables: Mapping[str, pd.DataFrame], provenance: Mapping[str, Any] | None = None) -> str:
    """The uncertainty terms and the index comparison of section 2; writes index_disagreement.csv if any."""
    return render("uncertainty.html.j2", uncertainty=sections.uncertainty_and_indices(folder, tables, provenance))


def _cluster_client() -> Any:
    """The distributed client this thread computes on (`Client.as_current`, or the default one), else None."""
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed comes with the package
        return None
    try:
        return Client.current()
    except ValueError:  # no client: the figures are drawn here
        return None


def write_report(
    out_dir: str | Path,
    tables: Mapping[str, pd.DataFrame],
    outlines: gpd.GeoDataFrame,
    dem: xr.DataArray,
    provenance: Mapping[str, Any],
    *,
    title: str = "glacierwatch: glacier change report",
) -> Path:
    """Write the report (`pipeline.outputs.report`) into `out_dir`, replacing it whole; return its index.html.

    With a distributed client current (as in a run), the figures are drawn as tasks on its cluster."""
    out_dir = Path(out_dir).resolve()
    tables = {name: t for name, t in tables.items() if t is not None and len(t)}
    with building(out_dir) as build:
        (build / "tables").mkdir(parents=True)
        with drawing_on(_cluster_client()) as figures:  # drawn side by side on the cluster's idle workers
            parts = {
                "summary": sections.summary_section(build, tables, provenance),
                "outlines": sections.map_section(build, outlines, dem),
                "total_area": sections.total_area_section(build, tables, provenance),
                "bands": sections.band_section(build, tables),
                "aspect": sections.aspect_section(build, tables),
                "retreat": sections.retreat_section(build, tables),
                "sensors": sections.sensor_section(build, tables, outlines, dem, provenance),
                "provenance": sections.provenance_section(provenance),
            }
            finish_figures(figures)
        page = render("report.html.j2", title=title, created=sections.created_line(provenance),
                      synthetic=sections.synthetic_area(tables, provenance), **parts)
        (build / "index.html").write_text(page, encoding="utf-8")
    return out_dir / "index.html"
