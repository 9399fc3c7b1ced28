"""The pre-flight: everything a run needs, resolved once into one typed object, before anything is written.

A run that fails half-way costs hours and leaves a store to explain, so every input is
checked here first and then handed on resolved: inference and statistics take `RunInputs`
instead of re-reading the model card (once per sensor here, not five times), the inventory
(once, not four times per sensor) or re-searching the DEM tiles (once, not three times) and
each year's scenes (searched here, once, and handed to the cube).

Order: checks that need no network come first (output folder, weights and their card and
training domain, inventory, object-storage credentials, provider packages, cluster, store
compatibility), all of them, so an offline user learns at once everything that is missing
(`glacierwatch run --check`); then the ones that ask the STAC APIs (region covered, DEM tiles, and
the scenes of every year the run infers: a year without any, e.g. an update before its season's
scenes exist, is refused here, before a cluster waits in a queue to be told so).
Each problem is one line that names the input and what to do; `PreflightError` carries them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import pystac

from catalog.grid import TargetGrid
from catalog.providers import ProviderProfile, get_profile
from catalog.scenes import season_warning, seasons_not_over
from pipeline.config import Config
from pipeline.model.weights import ModelCard, WeightsError, card_path, sha256

OUTPUT_MARKER = ".glacierwatch"
"""An empty file `run` leaves in every --out folder it creates: its sign that the folder is its own."""


class PreflightError(RuntimeError):
    """Inputs a run cannot start with: one line per problem, each naming the input and what to do."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(dict.fromkeys(problems))  # one provider's problem once, not once per sensor
        super().__init__("\n".join(self.problems))


def _refuse(problems: Sequence[Exception]) -> None:
    """Raise the problems found: a single one as itself (its type says what failed), several together."""
    messages = list(dict.fromkeys(str(p) for p in problems))
    if len(messages) == 1:
        raise problems[0]
    raise PreflightError(messages)


class RunInputError(ValueError):
    """A run input refused by the pre-flight that no other error type names (output folder, region)."""


@dataclass(frozen=True)
class SensorInputs:
    """One sensor's resolved inputs: where its scenes come from, its grid and its model."""

    name: str
    profile: ProviderProfile
    source_url: str
    grid: TargetGrid
    weights: Path
    card: ModelCard
    weights_sha256: str

    def weights_record(self) -> dict[str, str]:
        return {"file": str(self.weights), "sha256": self.weights_sha256, "architecture": self.card.architecture}


@dataclass(frozen=True)
class RunInputs:
    """Everything a run needs, checked: handed to inference and statistics instead of the raw config."""

    cfg: Config
    out: Path | None
    store_url: str
    sensors: dict[str, SensorInputs]
    inventory_path: Path
    inventory: gpd.GeoDataFrame | None  # pipeline.glaciers.inventory.read_inventory's columns; None: no inventory
    dem_items: list[pystac.Item] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    scenes: dict[str, dict[int, list[pystac.Item]]] = field(default_factory=dict)
    """Per sensor and year, the scenes found for the years the run infers (`years_to_infer`): the cube takes
    them instead of searching again (`pipeline.inference.yearly_cube`)."""


def store_url_for(cfg: Config, out: Path) -> str:
    """The config's `store:` when the config sets one, else ``out/store.zarr``."""
    return cfg.path(cfg.store) if "store" in cfg.model_fields_set else str((out / "store.zarr").resolve())


def check_output_folder(out: Path) -> str | None:
    """`out` is new, empty or marked as glacierwatch's own: a run never overwrites a user's files; it is
    not inside a Zarr store (a run's outputs there grow the store's copies and syncs for good), and
    this process can write where it would (a read-only disk failed the run after its pre-flight passed)."""
    store = next((p for p in (out, *out.parents) if (p / "zarr.json").is_file() or (p / ".zgroup").is_file()), None)
    if store is not None:
        return f"--out {out} lies inside the Zarr store {store}: choose a folder outside it (e.g. beside it)"
    existing = next(p for p in (out, *out.parents) if p.exists())
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        return (f"--out {out}: {existing} cannot be written by this process (a read-only disk or no permission): "
                "choose a folder you can write")
    if not out.exists():
        return None
    if not out.is_dir():
        return f"--out {out} is a file, not a folder: choose a new folder for the outputs"
    if (out / OUTPUT_MARKER).exists():
        return None
    theirs = sorted(p.name for p in out.iterdir())
    if not theirs:
        return None
    shown = ", ".join(theirs[:5]) + (", ..." if len(theirs) > 5 else "")
    return (
        f"--out {out} already holds files glacierwatch did not write ({shown}): choose a new or empty folder; "
        f"if it holds an earlier glacierwatch run, create an empty file {out / OUTPUT_MARKER} to let the run reuse it"
    )


def claim_output_folder(out: Path) -> None:
    """Create `out` (if needed) and mark it as glacierwatch's own."""
    out.mkdir(parents=True, exist_ok=True)
    marker = out / OUTPUT_MARKER
    if not marker.exists():
        marker.write_text("This folder holds glacierwatch outputs; `glacierwatch run` may replace what it wrote here.\n")


def _uses_real_scenes(cfg: Config, sensor: str) -> bool:
    return cfg.sensors[sensor].provider != "local"


def check_weights(cfg: Config, sensor: str, path: str | Path | None = None) -> tuple[Path, ModelCard, str]:
    """The sensor's weights (`path`, default the configured or shipped ones): exist, match their card
    and the sensor's bands, and were trained for this kind of data."""
    from pipeline.inference.region import read_card

    configured = path is not None or cfg.sensors[sensor].weights is not None
    path = Path(path if path is not None else cfg.weights_path(sensor)).resolve()
    if not path.is_file():
        raise WeightsError(
            f"no {sensor} weights at {path}: set sensors.{sensor}.weights in the config to a .safetensors file "
            f"(with its .json card beside it), or train them: glacierwatch train --sensor {sensor}"
        )
    card = read_card(path, sensor)
    domain = card.domain
    if (
        _uses_real_scenes(cfg, sensor)
        and domain is not None
        and domain.kind == "synthetic"
        and not cfg.sensors[sensor].allow_synthetic_weights
    ):
        which = f"sensors.{sensor}.weights ({path.name})" if configured else f"the shipped {sensor} weights (sensors.{sensor}.weights is not set)"
        raise WeightsError(
            f"{which} were trained on {domain.describe()} only and find little or no ice in real "
            f"{cfg.sensors[sensor].provider} scenes: set sensors.{sensor}.weights to weights trained on real scenes "
            f"(see configs/train-real.yaml), or set sensors.{sensor}.allow_synthetic_weights: true to run them anyway"
        )
    digest = sha256(path)
    if digest != card.weights_sha256:
        raise WeightsError(f"{path} has sha256 {digest}, its card {card_path(path)} records {card.weights_sha256}: "
                           "pair the weights with their own card")
    return path, card, digest


def _local_checks(
    cfg: Config, out: Path | None, sensors: Sequence[str], weights: dict[str, Path] | None = None
) -> tuple[dict, Any, list[Exception], list[str]]:
    """The checks that need no network; returns (sensor parts, inventory, problems, warnings)."""
    from pipeline.glaciers.inventory import InventoryError, inventory_sha256, read_inventory
    from pipeline.store import RegionStore, StoreError, check_compatible, check_same_inventory

    problems: list[Exception] = []
    notes: list[str] = []
    if out is not None and (problem := check_output_folder(out)) is not None:
        problems.append(RunInputError(problem))
    parts: dict[str, dict] = {}
    for sensor in sensors:
        sensor_cfg = cfg.sensors[sensor]
        profile = get_profile(sensor_cfg.provider)
        part: dict[str, Any] = {"profile": profile}
        try:
            part["weights"], part["card"], part["sha256"] = check_weights(cfg, sensor, (weights or {}).get(sensor))
        except WeightsError as err:
            problems.append(err)
        try:
            profile.signer()  # e.g. Planetary Computer without its package
        except Exception as err:  # noqa: BLE001 - any failure to get the signer is a set-up problem to report
            problems.append(err)
        if not sensor_cfg.url:  # the provider's own catalog: its buckets (another URL may serve other hrefs)
            problems.extend(_storage_problems(profile, sensor))
        try:
            part["grid"] = cfg.grid(sensor)
            notes.extend(_grid_notes(cfg, part["grid"]))
        except ValueError as err:
            problems.append(RunInputError(f"region: {err}"))
        parts[sensor] = part
    dem_profile = get_profile(cfg.dem.provider)
    if not cfg.dem.url:
        problems.extend(_storage_problems(dem_profile, "dem"))
    inventory = None
    inventory_path = Path(cfg.inventory_path())
    if cfg.inventory.path is not None or inventory_path.exists():
        try:
            inventory = read_inventory(inventory_path, cfg.inventory.id_field, cfg.inventory.analysis_date(cfg.years, cfg.season),
                                       cfg.inventory.date_field)
            notes.extend(inventory.attrs.get("notes", []))
        except InventoryError as err:
            problems.append(err)
    if (note := season_warning(cfg.season.as_tuple(), cfg.region.latitude())) is not None:
        notes.append(note)  # a swapped season is a legal one across the new year, of the region's winter
    if out is None:  # inference alone (infer_to_store): no output folder, no cluster of its own
        return parts, inventory, problems, notes
    problems.extend(_cluster_problems(cfg))
    url = store_url_for(cfg, out)
    store = RegionStore(url)
    if not problems and store.exists():
        try:
            check_compatible(RegionStore.open(url), {s: p["grid"] for s, p in parts.items()},
                             {s: p["sha256"] for s, p in parts.items()})
            if inventory is not None:
                check_same_inventory(RegionStore.open(url), list(parts), inventory_sha256(inventory, cfg.analysis.glacier_buffer_m),
                                     f"inventory {inventory_path}")
        except StoreError as err:
            problems.append(err)
    return parts, inventory, problems, notes


def check_settings(cfg: Config, out: str | Path, sensors: Sequence[str] | None = None) -> None:
    """The checks that need no input data: the output folder, the weights, the cluster.

    Run before the embedded study area is generated (a minute of writing), so a wrong --out,
    missing weights or an unknown cluster are refused before anything at all is written.
    """
    embedded = any(s.provider == "local" and not s.url for s in (*cfg.sensors.values(), cfg.dem))
    if not embedded:  # nothing to generate first: every offline check now, all problems at once
        _, _, problems, _ = _local_checks(cfg, Path(out).resolve(), list(sensors or cfg.sensors))
        if problems:
            _refuse(problems)
        return
    problems: list[Exception] = []
    if (problem := check_output_folder(Path(out).resolve())) is not None:
        problems.append(RunInputError(problem))
    for sensor in sensors or cfg.sensors:
        try:
            check_weights(cfg, sensor)
        except WeightsError as err:
            problems.append(err)
    problems.extend(_cluster_problems(cfg))
    if problems:
        _refuse(problems)


def _grid_notes(cfg: Config, grid: TargetGrid) -> list[str]:
    """Warnings about a grid that spans UTM zones (catalog.grid decides what to say)."""
    try:
        from catalog.grid import grid_warnings
    except ImportError:
        return []
    return list(grid_warnings(cfg.region.bbox, grid))


def _storage_problems(profile: ProviderProfile, kind: str) -> list[Exception]:
    """Object-storage access (requester-pays buckets need credentials), checked without the network."""
    try:
        from catalog.gdal_env import check_object_storage
    except ImportError:  # pragma: no cover - older catalog without the check
        return []
    try:
        check_object_storage(profile, kind)
    except Exception as err:  # noqa: BLE001 - the check's own error type carries the message
        return [err]
    return []


def _cluster_problems(cfg: Config) -> list[Exception]:
    from pipeline.scale.cluster import ClusterError

    try:
        from pipeline.scale.cluster import check_cluster
    except ImportError:  # pragma: no cover
        return []
    try:
        check_cluster(cfg.cluster)
    except ClusterError as err:
        return [err]
    return []


def years_to_infer(cfg: Config, store_url: str | None, sensors: Sequence[str], years: Sequence[int] | None = None
                   ) -> dict[str, list[int]]:
    """Per sensor, the years a run infers: `years` (default: the config's) and, with a store (`store_url`),
    those an earlier run left unfinished there (`RegionStore.unfinished_years`), which a run finishes
    whatever it asks for (`pipeline.run.run_study`). A year the store holds finished is not among them
    unless asked for (an update of 2027 infers 2027, not 2016-2026)."""
    from pipeline.store import RegionStore

    asked = {int(y) for y in (years if years is not None else cfg.years)}
    store = RegionStore(store_url) if store_url is not None else None
    stored = set(store.sensors()) if store is not None and store.exists() else set()
    return {s: sorted(asked | (set(store.unfinished_years(s)) if s in stored else set())) for s in sensors}


def _network_checks(
    cfg: Config, parts: dict, inventory, sensors: Sequence[str], years: dict[str, list[int]]
) -> tuple[list[pystac.Item], dict[str, dict[int, list[pystac.Item]]], list[Exception]]:
    """The checks that ask the STAC APIs: each sensor's source covers the region and has scenes in every
    one of its `years` (the items found are returned, for the cube); the DEM tiles cover it."""
    from catalog.scenes import check_region_covered, find_dem_items, scenes_by_year
    from catalog.search import SearchError, open_source
    from catalog.tiling import TilingError, glacier_tiles

    problems: list[Exception] = []
    scenes: dict[str, dict[int, list[pystac.Item]]] = {}
    for sensor in sensors:
        profile = parts[sensor]["profile"]
        sensor_cfg = cfg.sensors[sensor]
        try:
            source = open_source(cfg.source_url(sensor_cfg), profile.signer())
            check_region_covered(source, profile.collection(sensor), cfg.region.bbox)
            # every year at once, all empty ones named together; before any cluster is started or waited for
            scenes[sensor] = scenes_by_year(source, profile, sensor, cfg.region.bbox, years.get(sensor, []),
                                            cfg.season.as_tuple(), sensor_cfg.max_cloud)
        except SearchError as err:
            problems.append(err)
    dem_items: list[pystac.Item] = []
    dem_profile = get_profile(cfg.dem.provider)
    try:
        dem_items = find_dem_items(open_source(cfg.source_url(cfg.dem), dem_profile.signer()), dem_profile, cfg.region.bbox)
    except SearchError as err:
        problems.append(err)
    if inventory is not None and cfg.tiling.buffer_m is not None:
        for sensor in sensors:
            try:  # an inventory of elsewhere
                glacier_tiles(parts[sensor]["grid"], inventory, cfg.tiling.buffer_m, 1 << 16,
                              source=f"inventory {cfg.inventory_path()}")
            except TilingError as err:
                problems.append(err)
                break
    return dem_items, scenes, problems


def preflight(
    cfg: Config,
    out: str | Path | None,
    sensors: Sequence[str] | None = None,
    *,
    network: bool = True,
    weights: dict[str, str | Path] | None = None,
    years: Sequence[int] | None = None,
) -> RunInputs:
    """Resolve and check everything a run of `cfg` into `out` needs; `PreflightError` lists every problem.

    `network=False` stops before the first network access (what `run --check` can tell offline).
    `out=None`: inference alone into the config's store (no output folder, no cluster checked).
    `weights`: per sensor, weights to use instead of the configured ones.
    `years`: the years the run is asked to infer (default: the config's); their scenes are searched, and with
    `out` those of the years its store holds unfinished (`years_to_infer`): a year without scenes is refused,
    and a year whose season has not ended (`catalog.scenes.seasons_not_over`), offline.
    """
    out = Path(out).resolve() if out is not None else None
    sensors = list(sensors or cfg.sensors)
    parts, inventory, problems, notes = _local_checks(cfg, out, sensors, weights)
    if (early := seasons_not_over(years if years is not None else cfg.years, cfg.season.as_tuple())) is not None:
        problems.append(early)  # a year asked before its season ended would be stored as that year's map
    if problems:
        _refuse(problems)
    dem_items: list[pystac.Item] = []
    scenes: dict[str, dict[int, list[pystac.Item]]] = {}
    if network:
        # with an output folder a run also finishes its store's unfinished years; inference alone only `years`
        inferred = years_to_infer(cfg, store_url_for(cfg, out) if out is not None else None, sensors, years)
        dem_items, scenes, problems = _network_checks(cfg, parts, inventory, sensors, inferred)
        if problems:
            _refuse(problems)
    resolved = {
        s: SensorInputs(
            name=s,
            profile=p["profile"],
            source_url=cfg.source_url(cfg.sensors[s]),
            grid=p["grid"],
            weights=p["weights"],
            card=p["card"],
            weights_sha256=p["sha256"],
        )
        for s, p in parts.items()
    }
    return RunInputs(
        cfg=cfg,
        out=out,
        store_url=store_url_for(cfg, out) if out is not None else cfg.path(cfg.store),
        sensors=resolved,
        inventory_path=Path(cfg.inventory_path()),
        inventory=inventory,
        dem_items=dem_items,
        warnings=list(dict.fromkeys(notes)),  # the same grid warning once, not once per sensor
        scenes=scenes,
    )
