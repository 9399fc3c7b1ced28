"""`glacierwatch run` and `glacierwatch update`: the whole study, one command.

search -> cubes -> inference -> store -> statistics -> report -> STAC, for every configured
sensor and year (`run`) or for one new year appended to an existing store (`update`, which then
recomputes every table from the store). Both are the same function: inference only computes
what the store's manifest does not already hold, so a rerun is a no-op and an interrupted run
resumes.

Before anything is written the pre-flight (`pipeline.preflight`) resolves and checks every
input once - output folder, weights and their card, inventory, object storage, cluster, STAC
sources, DEM tiles, an existing store's grids and weights, the scenes of every year to infer - and
refuses with one line per problem (a year without scenes before the cluster is started or queued
for; the scenes it found are the ones inferred, not searched again). `--out` must be new, empty or
a folder an earlier run marked as its own (`.glacierwatch`): a run never replaces files it did not
write. The store's update lock is held from the first write to the last table, so a second update
on the same store refuses at once.

Outputs under `out` (default ``glacierwatch-out``)::

    store.zarr/            the region store (unless the config's `store:` puts it elsewhere)
    tables/NAME.parquet    + NAME.csv: pipeline.glaciers.analysis.TABLES
    outlines.parquet       glacier outlines per sensor and year (GeoParquet)
    provenance.json        config and its hash, weights and their training domain, inventory, scenes per year,
                           skipped scenes, timings
    .glacierwatch          marks the folder as glacierwatch's own
    OUTPUTS-INCOMPLETE.txt only while (or after a run stopped while) the report, masks and catalog are replaced
    report/index.html      the report, PNGs and tables beside it
    masks/SENSOR/*.tif     yearly glacier masks (COG)
    stac/catalog.json      the outputs as a STAC catalog
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import yaml
from rich.console import Console
from rich.text import Text

from catalog.redact import redact
from pipeline.config import Config
from pipeline.glaciers.analysis import analyse_store
from pipeline.glaciers.generator_check import generator_check
from pipeline.glaciers.inventory import attach_inventory_ids, inventory_ids, inventory_years
from pipeline.glaciers.outline_stats import write_tables
from pipeline.outputs.replace import building, write_whole
from pipeline.preflight import RunInputs, check_settings, claim_output_folder, preflight
from pipeline.store import RegionStore, StoreError

DEFAULT_OUT = "glacierwatch-out"


def cpu_half_note(cfg: Config) -> str | None:
    """Said once by a local CPU run whose CPU has bf16 instructions: the default stays fp32, so that a
    run's numbers do not depend on the CPU a task lands on, but the user may want the speed."""
    from pipeline.model.predictor import default_device, half_dtype

    if cfg.inference.half is not None or cfg.cluster.kind != "local" or default_device().type != "cpu":
        return None
    if half_dtype("cpu") is None:
        return None
    return ("this CPU has bf16 instructions: `inference.half: true` runs the networks about 2x faster, with about "
            "1 in 10,000 mask pixels differing from fp32 (docs/scaling.md, 'bf16 on CPUs that have it')")


class RunError(RuntimeError):
    """A run that cannot start: the message names the input and what to do."""


class IndexDisagreementError(RunError):
    """Region-wide, the model maps almost nothing where NDSI and red/SWIR map ice (or > 10x more):
    its weights do not know this data. Raised after statistics, before any output is written;
    the store stays complete and valid, so a rerun with the opt-in only recomputes the tables."""


def check_index_agreement(areas: pd.DataFrame | None, inputs: RunInputs, allow: bool, console: Console) -> pd.DataFrame:
    """`region_tables.index_agreement` of the run's `areas`; refuse (`IndexDisagreementError`, one line
    naming each extreme sensor's weights and training domain) unless `allow`, then only warn."""
    from pipeline.glaciers.region_tables import index_agreement

    agreement = index_agreement(areas if areas is not None else pd.DataFrame())
    extreme = agreement[agreement["extreme"]]
    if not len(extreme):
        return agreement
    parts = []
    for r in extreme.itertuples(index=False):
        sensor_inputs = inputs.sensors.get(r.sensor)
        weights = sensor_inputs.weights if sensor_inputs is not None else "?"
        domain = sensor_inputs.card.domain if sensor_inputs is not None else None
        trained = domain.describe() if domain is not None else "a domain its card does not record"
        parts.append(
            f"{r.sensor}: the model maps {r.index_model_km2:.3f} km2 over the inventory outlines where NDSI > 0.4 maps "
            f"{r.ndsi_km2:.3f} km2 and red/SWIR > 2 {r.ratio_km2:.3f} km2 (all years, observed pixels); its weights "
            f"{weights} were trained on {trained}"
        )
    message = ("; ".join(parts) + ": the weights do not know this data - use weights trained for it "
               "(configs/train-real.yaml), or set analysis.allow_index_disagreement: true to keep these maps")
    if not allow:
        raise IndexDisagreementError(message)
    console.print(f"warning (analysis.allow_index_disagreement): {message}", markup=False, highlight=False)
    return agreement


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
        self.console.rule(Text(name, style="bold"))  # a Text: shown the same with markup on or off
        started = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
        self.console.print(f"{name}: {self.seconds[name]:.1f} s", style="dim")


@contextlib.contextmanager
def _progress(console: Console, what: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar of `what` (units: a tile's year), as `on_progress(done, total)` moves it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task(what, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def ensure_study_area(cfg: Config, console: Console, *, generate: bool = True) -> bool:
    """Generate the embedded synthetic study area when a local source points at it and it is missing;
    whether the area the config reads is there (with `generate` False, as the pre-flight, which
    writes nothing: False where it is missing).

    An area written by an older generator (another `version` in its synthetic.json) is refused:
    its metadata may mean other things (v1 flagged the Sentinel-2 offset the opposite way).
    """
    from catalog.synthetic import generate_study_area
    from catalog.synthetic.study_area import GENERATOR_VERSION

    local = [s for s in (*cfg.sensors.values(), cfg.dem) if s.provider == "local" and not s.url]
    target = Path(cfg.path(cfg.synthetic.path))
    if not local:
        return True
    if not (target / "catalog.json").exists():
        if not generate:
            return False
        console.print(f"generating the embedded study area in {target} ...")
        generate_study_area(target, cfg.synthetic.spec())
        return True
    meta = target / "synthetic.json"
    version = json.loads(meta.read_text()).get("version") if meta.is_file() else None
    if version is not None and str(version) != GENERATOR_VERSION:
        raise RunError(
            f"the embedded study area in {target} was written by generator version {version}, this glacierwatch "
            f"writes version {GENERATOR_VERSION}: remove that folder and rerun (it is regenerated), or run "
            f"`glacierwatch synth --out {target}` after removing it"
        )
    return True


def truth_dir_for(cfg: Config, sensors: Sequence[str]) -> Path | None:
    """The synthetic area's truth, when every sensor reads the synthetic area's own catalog."""
    truth = Path(cfg.path(cfg.synthetic.path)) / "truth"
    local = all(cfg.sensors[s].provider == "local" and not cfg.sensors[s].url for s in sensors)
    return truth if local and truth.is_dir() else None


def analysis_changed(previous: Path, cfg: Config) -> str | None:
    """What of `analysis` differs from the run whose provenance is `previous` (None: nothing, or no such run).
    Every year's tables are made again with the current settings, which keeps the series one method but
    revises what an earlier run published (a helper's threshold change moved earlier Landsat areas by up to
    0.08 km², unannounced)."""
    try:
        before = yaml.safe_load(json.loads(previous.read_text()).get("config_yaml") or "") or {}
    except (OSError, ValueError, yaml.YAMLError):
        return None
    then, now = before.get("analysis") or {}, cfg.analysis.model_dump(mode="json")
    changed = [f"{k} {then[k]!r} -> {now[k]!r}" for k in sorted(now) if k in then and then[k] != now[k]]
    if not changed:
        return None
    return (f"analysis settings differ from the last run into this folder ({', '.join(changed)}): every year's tables, "
            "outlines and masks are made with the new ones, revising what that run published")


def _write_outputs(out: Path, tables: dict[str, pd.DataFrame], outlines: gpd.GeoDataFrame, provenance: dict,
                   notice: str | None = None) -> None:
    """Tables, outlines and provenance, each built beside its target and swapped in when whole
    (`outputs.replace`). `notice`: written as OUTPUTS_INCOMPLETE just before the first output is replaced
    (the caller removes it when the report and catalog are replaced too)."""
    with building(out / "tables") as build:
        write_tables({k: v for k, v in tables.items() if len(v) or k == "failures"}, build)  # "no failures" is news too
        if notice is not None:
            write_whole(out / OUTPUTS_INCOMPLETE, lambda path: path.write_text(notice))
    write_whole(out / "outlines.parquet", outlines.to_parquet)
    # the same as a GeoPackage: GIS users' GDAL often lacks the (Arrow) Parquet driver, QGIS builds among them
    write_whole(out / "outlines.gpkg", lambda path: outlines.to_file(path, driver="GPKG", layer="outlines"))
    _write_provenance(out, provenance)


def _write_provenance(out: Path, provenance: dict) -> None:
    """provenance.json, swapped in whole: a run stopped while writing it leaves the last one."""
    write_whole(out / "provenance.json", lambda path: path.write_text(redact(json.dumps(provenance, indent=1, default=str))))


OUTPUTS_INCOMPLETE = "OUTPUTS-INCOMPLETE.txt"
"""In `out` from the moment the new tables replace the old until the report and the STAC catalog are
replaced too: a run stopped between them (a full disk, a kill) leaves tables of one run beside a
report and catalog of an earlier one, and this file says so."""


def _incomplete_notice(provenance: dict) -> str:
    return (f"The run of {provenance.get('created')} (config {provenance.get('config_hash')}) stopped after replacing "
            "tables/, outlines.* and provenance.json and before replacing report/, masks/ and stac/: those still "
            "show an earlier run and do not match the tables. Run the same glacierwatch command again: it finishes "
            "the outputs and removes this file.\n")


def _provenance(
    cfg: Config, weights: dict, store: RegionStore, sensors: Sequence[str], skipped: dict, tiles: dict, timings: dict,
    inputs: RunInputs,
) -> dict:
    from pipeline.store import glacierwatch_version

    records = {s: store.year_records(s) for s in sensors}
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "version": glacierwatch_version(),
        "config_hash": cfg.digest(),
        "config_yaml": redact(cfg.to_yaml()),
        "store": redact(store.url),
        "season": {"start": cfg.season.start, "end": cfg.season.end},
        "weights": weights,
        "weights_domain": {s: (i.card.domain.model_dump(mode="json") if i.card.domain else None) for s, i in inputs.sensors.items()},
        # a region in the other hemisphere than the weights' training: its tiles went through them mirrored north-south
        "mirrored_north_south": {s: bool(i.card.domain and i.card.domain.mirrors(cfg.region.latitude()))
                                 for s, i in inputs.sensors.items()},
        # what the weights were trained on and their held-out scores: the report says when its accuracy is in-sample
        "weights_card": {s: {"training_data": i.card.training_data,
                             "held_out": {k: v for k, v in (i.card.metrics or {}).items() if k.startswith("held_out_")}}
                         for s, i in inputs.sensors.items()},
        "inventory": {"path": redact(str(inputs.inventory_path)), "id_field": cfg.inventory.id_field,
                      "glaciers": None if inputs.inventory is None else len(inputs.inventory)},
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
    restart_workers: bool | None = None,
    redo: Sequence[int] = (),
) -> RunResult:
    """Run (or update) the study described by `cfg` into `out`; see the module docstring.

    `years`: the years to infer (default: all configured); tables always cover every year in
    the store. `client`: a distributed Client to run on (default: start `cfg.cluster`).
    `restart_workers`: give the statistics fresh worker processes, without the networks' memory
    (`pipeline.scale.cluster.memory`); default: when this run started its workers (no `client`,
    `cluster.kind` not ``address``), as others' workers may hold their data.
    `redo`: stored years made again from the scenes found now (late or reprocessed scenes, a damaged
    chunk): reset under the store's lock, then inferred as an unfinished year is.
    """
    from pipeline.inference.region import infer_to_store
    from pipeline.scale.cluster import start_cluster
    from pipeline.scale.cluster.memory import restart_worker_processes, trim_worker_memory
    from pipeline.scale.cluster.resources import check_workers_reach_store

    console = console or Console()
    out = Path(out).resolve()
    sensors = list(sensors or cfg.sensors)
    years = [int(y) for y in (years if years is not None else cfg.years)]
    stage = _Stages(console)
    if restart_workers is None:
        restart_workers = client is None and cfg.cluster.kind != "address"

    with stage("inputs"):
        check_settings(cfg, out, sensors)  # before the embedded area is generated
        ensure_study_area(cfg, console)
        inputs = preflight(cfg, out, sensors, years=years)  # PreflightError: nothing written yet, no cluster started
        for note in inputs.warnings:
            console.print(f"warning: {note}", markup=False, highlight=False)
        if (note := cpu_half_note(cfg)) is not None:
            console.print(f"note: {note}", markup=False, highlight=False)
        url = inputs.store_url
        weights = {s: i.weights_record() for s, i in inputs.sensors.items()}
        grids = {s: i.grid for s, i in inputs.sensors.items()}
        digests = {s: i.weights_sha256 for s, i in inputs.sensors.items()}
        store = RegionStore(url)
    claim_output_folder(out)
    if not store.exists():
        RegionStore.create(url, grids, weights_sha256=digests, chunk_size=cfg.tiling.tile_px)
    elif store.chunk_size != cfg.tiling.tile_px:
        console.print(f"note: the store {url} keeps the {store.chunk_size}-px tiles it was made with; "
                      f"tiling.tile_px {cfg.tiling.tile_px} applies to a new store", markup=False, highlight=False)
    skipped: dict[str, list] = {}
    tiles: dict[str, dict] = {}
    scale_offset: dict[str, dict] = {}
    cluster = contextlib.nullcontext(client) if client is not None else start_cluster(cfg.cluster, console=console)
    with (
        store.lock(f"glacierwatch {'run' if years == list(cfg.years) else 'update'} {years[0]}-{years[-1]}"),
        cluster as client,
        client.as_current(),  # every compute below (statistics, outlines, masks) runs on this client
    ):
        store = RegionStore.create(url, grids, weights_sha256=digests)
        check_workers_reach_store(client, store)  # before a chunk is written where this process never looks
        made_from: dict[tuple[str, int], int] = {}  # (sensor, year) redone -> its scenes before
        for sensor in [s for s in sensors if s in store.sensors()]:
            for year in sorted(set(redo) & set(store.years(sensor))):
                made_from[(sensor, year)] = len(store.year_records(sensor).get(year, {}).get("scene_ids") or [])
                store.reset_year(sensor, year)
                console.print(f"{sensor}: {year} is made again (--redo)", markup=False, highlight=False)
        for sensor in sensors:
            with stage(f"search, composite and infer {sensor}"):
                # a year an earlier run stopped in is finished first, whatever this run asks: left, it read as no ice
                resumed = sorted(set(store.unfinished_years(sensor) if sensor in store.sensors() else []) - set(years))
                if resumed:
                    console.print(f"{sensor}: finishing {', '.join(map(str, resumed))}, left unfinished by an earlier run",
                                  markup=False, highlight=False)
                with _progress(console, f"{sensor} units") as on_progress:
                    summary = infer_to_store(cfg, sensor, weights[sensor]["file"], url, sorted({*years, *resumed}), client,
                                             take_lock=False, inputs=inputs, on_progress=on_progress)
                written = sum(summary["years"].values())
                console.print(f"{sensor}: {written} new units written, years {sorted(summary['years'])}")
                for (redone, year), before in made_from.items():
                    if redone == sensor:
                        console.print(f"{sensor}: {year} made again from {len(summary['scenes'].get(year, []))} scenes "
                                      f"(it was made from {before})", markup=False, highlight=False)
                skipped[sensor] = summary.get("skipped_scenes", [])
                tiles[sensor] = summary["tiles"]
                scale_offset[sensor] = summary.get("scale_offset", {})
                console.print(
                    f"{sensor}: inferred {tiles[sensor]['inferred']} of {tiles[sensor]['total']} store chunks "
                    f"({tiles[sensor]['fraction_of_pixels']:.0%} of the pixels; the rest is > "
                    f"{tiles[sensor]['buffer_m']} m from every inventory outline), reading {tiles[sensor]['fraction_read']:.0%} "
                    "of the grid's pixels with the halos (only their pieces near an outline)"
                    if tiles[sensor]["buffer_m"] is not None
                    else f"{sensor}: inferred every store chunk (tiling.buffer_m is null or there is no inventory)"
                )
                if summary.get("mirrored_north_south"):
                    console.print(f"{sensor}: the region (latitude {cfg.region.latitude():.1f}) lies in the other hemisphere than "
                                  "the network's training scenes, so each tile goes through it mirrored north-south, its sun "
                                  "and shade as the network knows them (TrainingDomain.mirrors)", markup=False, highlight=False)
            trim_worker_memory(client)  # the next stage starts from what the workers hold, not their high-water mark
        with stage("statistics"):
            if restart_workers:  # fresh processes: the statistics never use torch, which a trim cannot give back
                console.print("restarting the workers: the statistics start without the networks' memory",
                              markup=False, highlight=False)
                restart_worker_processes(client)
            truth = truth_dir_for(cfg, sensors)
            try:
                tables, outlines, mask_tiles = analyse_store(  # the published masks come from the same read of the maps
                    store, cfg.analysis, sensors=sensors, truth_dir=truth, models={s: w["architecture"] for s, w in weights.items()},
                    with_masks=publish, inventory_years=inventory_years(inputs.inventory) if inputs.inventory is not None else None,
                    season=cfg.season.as_tuple(),
                )
            except Exception as err:
                if (damaged := _damaged_chunks(err, store, sensors, console)) is not None:
                    raise StoreError(damaged) from err
                raise
            tables = count_skipped_scenes(tables, skipped)
            if truth is not None and len(tables.get("areas", ())):  # the synthetic area: against the generator's parameters
                finest = grids[min(sensors, key=lambda s: grids[s].resolution)]
                tables["generator_check"] = generator_check(tables["areas"], tables.get("retreat", pd.DataFrame()), truth,
                                                            finest.crs, finest.bounds)
            if inputs.inventory is not None:  # the inventory's own ids beside glacier_id, in every table and the outlines
                ids = inventory_ids(inputs.inventory)
                tables = {name: attach_inventory_ids(table, ids) for name, table in tables.items()}
                outlines = attach_inventory_ids(outlines, ids)
            # Never guess silently: before any output, the model against NDSI and red/SWIR over the outlines.
            agreement = check_index_agreement(tables.get("areas"), inputs, cfg.analysis.allow_index_disagreement, console)
        provenance = _provenance(cfg, weights, store, sensors, skipped, tiles, stage.seconds, inputs)
        provenance["index_agreement"] = agreement.to_dict("records")
        provenance["scale_offset"] = scale_offset  # per sensor and item: reflectance = DN * scale + offset, and the rule
        if (note := analysis_changed(out / "provenance.json", cfg)) is not None:
            console.print(f"note: {note}", markup=False, highlight=False)
        # until the report and catalog match the new tables, the folder says it does not hold one run's outputs
        _write_outputs(out, tables, outlines, provenance, notice=_incomplete_notice(provenance) if publish else None)
        if publish:
            with stage("report"):
                from pipeline.outputs.report import write_report

                dem = store.open_dataset(min(sensors, key=lambda s: grids[s].resolution)).dem
                write_report(out / "report", tables, outlines, dem, provenance, title=f"glacierwatch: {cfg.region.name}")
            with stage("STAC catalog of outputs"):
                from pipeline.outputs.glacier_masks import write_glacier_masks
                from pipeline.outputs.publish import publish_catalog

                masks = write_glacier_masks(url, out / "masks", analysis=cfg.analysis, tiles=mask_tiles)
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
        _write_provenance(out, provenance)
        (out / OUTPUTS_INCOMPLETE).unlink(missing_ok=True)
    return RunResult(out, url, tables, outlines, provenance, dict(stage.seconds))


_UNDECODABLE = re.compile(r"decompress|zstd|blosc|checksum|crc32", re.IGNORECASE)


def _damaged_chunks(err: BaseException, store: RegionStore, sensors: Sequence[str], console: Console) -> str | None:
    """What to do when the statistics could not decode the store (a file damaged after it was written,
    which stopped every later run with a bare codec error): the damaged chunks, and the command that
    makes their years again. None when `err` is no decoding failure or no chunk is found damaged."""
    if not _UNDECODABLE.search(f"{type(err).__name__}: {err}"):
        return None
    console.print("the store did not decode: reading every chunk of it to find the damaged ones ...", markup=False,
                  highlight=False)
    damaged = store.undecodable_chunks(sensors)
    if not damaged:
        return None
    said = "; ".join(f"{s}/{name}{'' if year is None else f' {year}'} chunk {tuple(index)}" for s, name, year, index in damaged[:10])
    more = f" and {len(damaged) - 10} more" if len(damaged) > 10 else ""
    years = sorted({year for *_, year, _ in damaged if year is not None})
    static = any(year is None for *_, year, _ in damaged)
    todo = [f"`glacierwatch update --year {y} --redo` (with this run's --out and config)" for y in years]
    if static:
        todo.append("a new store for the terrain layers (store: ..., or move this one away): they are made once per store")
    return (f"store {store.url} holds chunks that cannot be read back ({said}{more}): a file damaged after it was written "
            f"(a disk or a copy). Make them again: {'; '.join(todo)}, or restore the store from a backup")


def count_skipped_scenes(tables: dict[str, pd.DataFrame], skipped: dict[str, list[dict]]) -> dict[str, pd.DataFrame]:
    """`scenes_skipped` per sensor and year in `areas` and `total_area`: a year with unreadable scenes
    left out has fewer observations, so its areas may be low; the tables say so beside each area.

    The count is per sensor-year over the region (a skipped scene is not attributed to the glaciers
    under its footprint); glaciers it left without any observation are flagged as unobserved too.
    """
    scenes_of: dict[tuple[str, int], set[str]] = {}
    for sensor, records in skipped.items():
        for record in records:  # one record per failing asset: count scenes (item ids), not assets
            if record.get("year") is not None:
                scenes_of.setdefault((sensor, int(record["year"])), set()).add(record["item_id"])
    counts = {key: len(ids) for key, ids in scenes_of.items()}
    out = dict(tables)
    for name in ("areas", "total_area"):
        table = tables.get(name)
        if table is None or not len(table) or "year" not in table.columns:
            continue
        keys = zip(table["sensor"], table["year"], strict=True)
        out[name] = table.assign(scenes_skipped=[counts.get((s, int(y)), 0) for s, y in keys])
    return out


