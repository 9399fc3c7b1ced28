"""The glacier-change report of ``glacierwatch run``: one HTML page a glaciologist can read, check
and cite without the store - every number with its uncertainty, every figure beside the table it
comes from, and the provenance (config, weights, scenes) that makes the run reproducible.

``write_report`` writes into ``out_dir``::

    index.html                  self-contained: inline CSS, figures as PNG data URIs, no scripts
    outline_map.png             1. outlines per year over a hillshade (first sensor, Sentinel-2 if any)
    total_area.png              2. region area per year with error bars and the OLS trend
    area_change_by_band.png     3. area change first -> last year per elevation band
    area_by_aspect.png          4. area per aspect sector (rose), pixel and glacier method
    retreat_per_glacier.png     5. terminus retreat rate per glacier, coloured by aspect sector
    retreat_by_aspect.png          mean retreat rate per aspect sector (rose)
    retreat_by_band.png            mean retreat rate per terminus elevation band
    sensor_difference.png       6. the tongue where the two sensors' outlines differ most
    tables/*.csv                the summary and every table the report draws on

with a summary box on top (areas first and last year, change rate, mean retreat, accuracy), the
Sentinel-2 vs Landsat accuracy table in 6 and the provenance in 7. Inputs are the tables of
``pipeline.glaciers.analysis.TABLES``; a missing or empty table makes its section say "not available".

The package, in the order a page is made: `selection` (which rows the report speaks about),
`maps` (hillshade, contours and outlines on map axes), `figures` (one function per figure, and
their embedding), `sections` (what each section shows: tables, figures, CSV files), `render`
(jinja2, the templates in ``templates/``, and `write_report`).
"""

from pipeline.outputs.report.figures import (
    DPI,
    MAX_LABELLED,
    SECTOR_COLORS,
    SENSOR_COLORS,
    aspect_rose_figure,
    band_change_figure,
    outline_map_figure,
    retreat_by_aspect_figure,
    retreat_by_band_figure,
    retreat_per_glacier_figure,
    sensor_difference_figure,
    total_area_figure,
)
from pipeline.outputs.report.maps import MAX_TERRAIN_PX, hillshade
from pipeline.outputs.report.render import SECTIONS, quality_html, uncertainty_html, write_report
from pipeline.outputs.report.sections import FLAG_NAMES, METRICS
from pipeline.outputs.report.selection import (
    BASELINE_MODELS,
    SENSOR_ORDER,
    first_to_last_retreat,
    most_different_glacier,
    network_model,
    ordered_sensors,
    summary_table,
)

__all__ = [
    "BASELINE_MODELS", "DPI", "FLAG_NAMES", "MAX_LABELLED", "MAX_TERRAIN_PX", "METRICS", "SECTIONS", "SECTOR_COLORS",
    "SENSOR_COLORS", "SENSOR_ORDER", "aspect_rose_figure", "band_change_figure", "first_to_last_retreat", "hillshade",
    "most_different_glacier", "network_model", "ordered_sensors", "outline_map_figure", "quality_html",
    "retreat_by_aspect_figure", "retreat_by_band_figure", "retreat_per_glacier_figure", "sensor_difference_figure",
    "summary_table", "total_area_figure", "uncertainty_html", "write_report",
]
