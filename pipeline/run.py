"""`glacierwatch run` and `glacierwatch update`: the whole study, one command.

search -> cubes -> inference -> store -> statistics -> report -> STAC, for every configured
sensor and year (`run`) or for one new year appended to an existing store (`update`, which then
recomputes every table from the store). Both are the same function: inference only computes
what the store's manifest does not already hold, so a rerun is a no-op and an interrupted run
resumes.

Before anything is written the run checks what would make it fail half-way: each sensor's
STAC source answers and covers the region, each sensor's weights exist and match their card,
and an existing store was made with the same grids and weights (`IncompatibleStoreError` says
how to start a new one). The store's update lock is held from the first write to the last
table, so a second update on the same store refuses at once.

Outputs under `out` (default ``glacierwatch-out``)::

    store.zarr/            the region store (unless the config's `store:` puts it elsewhere)
    tables/NAME.parquet    + NAME.csv: pipeline.analysis.TABLES
    outlines.parquet       glacier outlines per sensor and year (GeoParquet)
    provenance.json        config and its hash, weights, scenes per year, skipped scenes, timings
    report/index.html      the report, PNGs and tables beside it
    masks/SENSOR/*.tif     yearly glacier masks (COG)
    stac/catalog.json      the outputs as a STAC catalog
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
from rich.console import Console

from catalog.providers import get_profile
from catalog.redact import redact
from catalog.scenes import check_region_covered
from catalog.search import open_source
from pipeline.analysis import TRUTH, analyse_store
from pipeline.config import Config
from pipeline.model.weights import WeightsError, card_path, sha256
from pipeline.outline_stats import write_tables
from pipeline.replace import replace_dir
from pipeline.store import DEFAULT_CHUNK, RegionStore, check_compatible

DEFAULT_OUT = "glacierwatch-out"


class RunError(RuntimeError):
    """A run that cannot start: the message names the input and what to do."""


@dataclass
class RunResult:
    out: Path
    store_url: str
    tables: dict[str, pd.DataFrame]
    outlines: gpd.GeoDataFrame
    provenance: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


class _Stages:
    """Wall time per stage, printed as the run goes."""

    def __init__(self, console: Console) -> None:
        self.console, self.seconds = console, {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.console.rule(f"[bold]{name}")
        started = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
        self.console.print(f"{name}: {self.seconds[name]:.1f} s", style="dim")


def store_url_for(cfg: Config, out: Path) -> str:
    """The config's `store:` when the config sets one, else ``out/store.zarr``."""
    return cfg.path(cfg.store) if "store" in cfg.model_fields_set else str((out / "store.zarr").resolve())


def ensure_study_area(cfg: Config, console: Console) -> None:
    """Generate the embedded synthetic study area when a local source points at it and it is missing."""
    from catalog.synthetic import generate_study_area

    local = [s for s in (*cfg.sensors.values(), cfg.dem) if s.provider == "local" and not s.url]
    target = Path(cfg.path(cfg.synthetic.path))
    if local and not (target / "catalog.json").exists():
        console.print(f"generating the embedded study area in {target} ...")
        generate_study_area(target, cfg.synthetic.spec())


def check_sources(cfg: Config, sensors: Sequence[str]) -> None:
    """Every sensor's STAC source answers and covers the region (SearchError names it otherwise)."""
    for sensor in sensors:
        sensor_cfg = cfg.sensors[sensor]
        profile = get_profile(sensor_cfg.provider)
        source = open_source(cfg.source_url(sensor_cfg), profile.signer())
        check_region_covered(source, profile.collection(sensor), cfg.region.bbox)


def resolve_weights(cfg: Config, sensors: Sequence[str]) -> dict[str, dict[str, str]]:
    """Per sensor: weights file, its sha256 and architecture, checked against the card."""
    from pipeline.inference import read_card

    weights = {}
    for sensor in sensors:
        path = Path(cfg.weights_path(sensor))
        if not path.is_file():
            raise RunError(
                f"no {sensor} weights at {path}: set sensors.{sensor}.weights in the config to a .safetensors "
                f"file, or train them: glacierwatch train --sensor {sensor}"
            )
        card = read_card(path)
        digest = sha256(path)
        if digest != card.weights_sha256:
            raise WeightsError(f"{path} has sha256 {digest}, its card {card_path(path)} records {card.weights_sha256}")
        weights[sensor] = {"file": str(path), "sha256": digest, "architecture": card.architecture}
    return weights


def truth_dir_for(cfg: Config, sensors: Sequence[str]) -> Path | None:
    """The synthetic area's truth, when every sensor reads the synthetic area's own catalog."""
    truth = Path(cfg.path(cfg.synthetic.path)) / "truth"
    local = all(cfg.sensors[s].provider == "local" and not cfg.sensors[s].url for s in sensors)
    return truth if local and truth.is_dir() else None


def _write_outputs(out: Path, tables: dict[str, pd.DataFrame], outlines: gpd.GeoDataFrame, provenance: dict) -> None:
    build = out / f".tables-incomplete-{os.getpid()}"
    shutil.rmtree(build, ignore_errors=True)
    write_tables({k: v for k, v in tables.items() if len(v)}, build)
    replace_dir(build, out / "tables")
    tmp = out / f".outlines-incomplete-{os.getpid()}.parquet"
    outlines.to_parquet(tmp)
    tmp.replace(out / "outlines.parquet")
    tmp = out / f".provenance-incomplete-{os.getpid()}.json"
    tmp.write_text(json.dumps(provenance, indent=1, default=str))
    tmp.replace(out / "provenance.json")


def _provenance(
    cfg: Config, weights: dict, store: RegionStore, sensors: Sequence[str], skipped: dict, tiles: dict, timings: dict
) -> dict:
    from pipeline.store import _version

    records = {s: store.year_records(s) for s in sensors}
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "version": _version(),
        "config_hash": cfg.digest(),
        "config_yaml": redact(cfg.to_yaml()),
        "store": redact(store.url),
        "season": {"start": cfg.season.start, "end": cfg.season.end},
        "weights": weights,
        "scenes": {s: {str(y): r["scene_ids"] for y, r in sorted(records[s].items())} for s in sensors},
        "config_hash_per_year": {s: {str(y): r["config_hash"] for y, r in sorted(records[s].items())} for s in sensors},
        "skipped_scenes": skipped,
        "tiles": tiles,
        "timings_s": timings,
    }


def run_study(
    cfg: Config,
    out: str | Path = DEFAULT_OUT,
    *,
    years: Sequence[int] | None = None,
    sensors: Sequence[str] | None = None,
    client: Any = None,
    console: Console | None = None,
    publish: bool = True,
) -> RunResult:
    """Run (or update) the study described by `cfg` into `out`; see the module docstring.

    `years`: the years to infer (default: all configured); tables always cover every year in
    the store. `client`: a distributed Client to run on (default: start `cfg.cluster`).
    """
    from pipeline.cluster import start_cluster
    from pipeline.inference import infer_to_store

    console = console or Console()
    out = Path(out).resolve()
    sensors = list(sensors or cfg.sensors)
    years = [int(y) for y in (years if years is not None else cfg.years)]
    stage = _Stages(console)

    with stage("inputs"):
        ensure_study_area(cfg, console)
        check_sources(cfg, sensors)
        weights = resolve_weights(cfg, sensors)
        from pipeline.inference import check_inputs

        for sensor in sensors:  # DEM coverage, inventory, weights vs the sensor's bands: before any store exists
            check_inputs(cfg, sensor, weights[sensor]["file"])
        url = store_url_for(cfg, out)
        grids = {s: cfg.grid(s) for s in sensors}
        digests = {s: w["sha256"] for s, w in weights.items()}
        store = RegionStore(url)
        if store.exists():
            check_compatible(RegionStore.open(url), grids, digests)
    out.mkdir(parents=True, exist_ok=True)
    if not store.exists():
        RegionStore.create(url, grids, weights_sha256=digests, chunk_size=DEFAULT_CHUNK)
    skipped: dict[str, list] = {}
    tiles: dict[str, dict] = {}
    cluster = contextlib.nullcontext(client) if client is not None else start_cluster(cfg.cluster, console=console)
    with (
        store.lock(f"glacierwatch {'run' if years == list(cfg.years) else 'update'} {years[0]}-{years[-1]}"),
        cluster as client,
        client.as_current(),  # every compute below (statistics, outlines, masks) runs on this client
    ):
        store = RegionStore.create(url, grids, weights_sha256=digests)
        for sensor in sensors:
            with stage(f"search, composite and infer {sensor}"):
                summary = infer_to_store(cfg, sensor, weights[sensor]["file"], url, years, client, take_lock=False)
                written = sum(summary["years"].values())
                console.print(f"{sensor}: {written} new units written, years {sorted(summary['years'])}")
                skipped[sensor] = summary.get("skipped_scenes", [])
                tiles[sensor] = summary["tiles"]
                console.print(
                    f"{sensor}: inferred {tiles[sensor]['inferred']} of {tiles[sensor]['total']} store chunks "
                    f"({tiles[sensor]['fraction_of_pixels']:.0%} of the pixels; the rest is > "
                    f"{tiles[sensor]['buffer_m']} m from every inventory outline)" if tiles[sensor]["buffer_m"] is not None
                    else f"{sensor}: inferred every store chunk (tiling.buffer_m is null or there is no inventory)"
                )
        with stage("statistics"):
            truth = truth_dir_for(cfg, sensors)
            tables, outlines = analyse_store(
                store, cfg.analysis, sensors=sensors, truth_dir=truth, models={s: w["architecture"] for s, w in weights.items()}
            )
        provenance = _provenance(cfg, weights, store, sensors, skipped, tiles, stage.seconds)
        _write_outputs(out, tables, outlines, provenance)
        if publish:
            with stage("report"):
                from pipeline.report import write_report

                dem = store.open_dataset(min(sensors, key=lambda s: grids[s].resolution)).dem
                write_report(out / "report", tables, outlines, dem, provenance, title=f"glacierwatch: {cfg.region.name}")
            with stage("STAC catalog of outputs"):
                from pipeline.publish import publish_catalog, write_glacier_masks

                masks = write_glacier_masks(url, out / "masks", threshold=cfg.analysis.threshold)
                publish_catalog(
                    out / "stac",
                    store_url=url,
                    masks=masks,
                    outlines=out / "outlines.parquet",
                    tables={p.stem: p for p in sorted((out / "tables").glob("*.parquet"))},
                    report=out / "report" / "index.html",
                    provenance=provenance,
                )
        provenance["timings_s"] = dict(stage.seconds)
        (out / "provenance.json").write_text(json.dumps(provenance, indent=1, default=str))
    return RunResult(out, url, tables, outlines, provenance, dict(stage.seconds))


def summary_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per sensor (and the truth): total area first and last year, trend, mean first-to-last
    terminus retreat rate (main-axis method), mean accuracy over the years (all pixels)."""
    rows = []
    total = tables.get("total_area", pd.DataFrame())
    change = tables.get("area_change", pd.DataFrame())
    retreat = tables.get("retreat", pd.DataFrame())
    accuracy = tables.get("accuracy", pd.DataFrame())
    order = {name: i for i, name in enumerate(("sentinel-2", "landsat", TRUTH))}
    for sensor, t in sorted(total.groupby("sensor"), key=lambda item: order.get(item[0], len(order))):
        t = t.sort_values("year")
        row = {
            "sensor": sensor,
            "years": f"{int(t.year.iloc[0])}-{int(t.year.iloc[-1])}",
            "area0_km2": t.area_km2.iloc[0],
            "area0_err_km2": t.area_err_km2.iloc[0],
            "area1_km2": t.area_km2.iloc[-1],
            "area1_err_km2": t.area_err_km2.iloc[-1],
        }
        region = change[(change.sensor == sensor) & change.glacier_id.isna()] if len(change) else change
        if len(region):
            r = region.iloc[0]
            row |= {"rate_pct_a": r.rate_pct_a, "rate_err_pct_a": r.rate_err_pct_a, "trend_km2_a": r.trend_km2_a,
                    "trend_lo_km2_a": r.trend_lo_km2_a, "trend_hi_km2_a": r.trend_hi_km2_a}
        if len(retreat):
            first_to_last = (retreat.year0 == t.year.min()) & (retreat.year1 == t.year.max())
            overall = retreat[(retreat.sensor == sensor) & (retreat.method == "main_axis") & first_to_last]
            row |= {"mean_retreat_m_a": overall.rate_m_a.mean(), "n_glaciers": int(overall.glacier_id.nunique())}
        if len(accuracy) and sensor != TRUTH:
            acc = accuracy[(accuracy.sensor == sensor) & (accuracy.zone == "all")]
            row |= {"IoU": acc.IoU.mean(), "OA": acc.OA.mean()}
        rows.append(row)
    return pd.DataFrame(rows)
