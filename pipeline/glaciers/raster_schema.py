"""Columns of the raster statistics' tables and the default thresholds that flag their rows.

Declared once for the per-glacier reductions (`pipeline.glaciers.statistics`), the region and change
tables built from them (`pipeline.glaciers.region_tables`) and the published schemas (`pipeline.glaciers.tables`),
so none of them imports another only for a constant.
"""

from __future__ import annotations

DEFAULT_MAX_UNOBSERVED = 0.1  # as config.Analysis.max_unobserved
DEFAULT_MAX_INDEX_DISAGREEMENT = 0.2  # as config.Analysis.max_index_disagreement (why 0.2: its description)

TABLE_COLUMNS: dict[str, list[str]] = {
    "areas": ["glacier_id", "sensor", "year", "area_km2", "perimeter_km", "area_err_perimeter_km2",
              "area_err_class_km2", "area_err_km2", "outline_km2", "unobserved_frac", "flag_unobserved",
              "index_model_km2", "ndsi_km2", "ratio_km2", "ndsi_disagreement", "ratio_disagreement",
              "index_disagreement", "flag_index_disagreement"],
    "total_area": ["sensor", "year", "area_km2", "area_err_perimeter_km2", "area_err_class_km2", "area_err_fill_km2",
                   "area_err_km2", "unobserved_frac", "flag_unobserved", "n_flagged", "filled_km2", "n_filled"],
    "area_by_band": ["sensor", "year", "band_lo_m", "band_hi_m", "area_km2", "n_flagged", "flagged_km2"],
    "glacier_area_by_band": ["glacier_id", "sensor", "year", "band_lo_m", "band_hi_m", "area_km2"],
    "area_by_aspect": ["sensor", "year", "method", "aspect_sector", "area_km2", "n_flagged", "flagged_km2"],
    "glacier_area_by_aspect": ["glacier_id", "sensor", "year", "aspect_sector", "area_km2"],
    "glacier_terrain": ["glacier_id", "sensor", "year", "zmean_m", "aspect_deg", "aspect_sector",
                        "n_dem_pixels"],
    "area_change": ["glacier_id", "sensor", "year0", "year1", "years", "area0_km2", "area1_km2",
                    "change_km2", "change_err_perimeter_km2", "change_err_class_km2", "change_err_fill_km2", "change_err_km2",
                    "change_pct", "rate_pct_a", "rate_err_pct_a",
                    "n_years", "n_flagged", "trend_km2_a", "trend_lo_km2_a", "trend_hi_km2_a",
                    "trend_theil_sen_km2_a"],
}
