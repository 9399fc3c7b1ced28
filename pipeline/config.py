"""The run configuration: one YAML file, validated by pydantic, defaults = the embedded study area.

Every CLI command takes `--config`; the file enters here and travels on as typed objects.
Unknown keys and bad values are errors that name the key. Relative paths in a file are
relative to the file's folder (so a config and its data can move together).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from pyproj import CRS

from catalog.grid import TargetGrid
from catalog.halo_layout import DEFAULT_READ_PX
from catalog.providers import provider_profiles
from catalog.synthetic.area_spec import StudyAreaSpec
from catalog.tiling import DEFAULT_BUFFER_M
from pipeline.scale.cluster.specs import ClusterSpec
from pipeline.store.layout import DEFAULT_CHUNK
from pipeline.strict_model import StrictModel

_DEFAULT_SPEC = StudyAreaSpec()
DEFAULT_DATA_DIR = "glacierwatch-data"
SHIPPED_WEIGHTS = Path(__file__).parent / "weights"
"""Weights trained on the synthetic study area, shipped in the package (see weights/README.md)."""


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key and what to change."""


class Region(StrictModel):
    name: str = "yilian-habirga-synthetic"
    bbox: tuple[float, float, float, float] = Field(_DEFAULT_SPEC.bbox(), description="west, south, east, north (deg)")
    crs: str = Field("auto", description='"auto" = UTM zone of the bbox centre, or e.g. "EPSG:32644"')

    @field_validator("bbox")
    @classmethod
    def _bbox_order(cls, v):
        w, s, e, n = v
        if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
            raise ValueError(f"{list(v)} must be [west, south, east, north] in degrees with west < east and south < north")
        return v

    @field_validator("crs")
    @classmethod
    def _crs_known(cls, v):
        if v != "auto":
            try:
                crs = CRS.from_user_input(v)
            except Exception as err:
                raise ValueError(f'{v!r} is not a CRS: use "auto" or an EPSG code like "EPSG:32644"') from err
            if not crs.is_projected:
                raise ValueError(f"{v!r} is not a projected CRS: areas need metres; use \"auto\" (UTM)")
        return v

    def epsg(self) -> int | None:
        return None if self.crs == "auto" else CRS.from_user_input(self.crs).to_epsg()

    def latitude(self) -> float:
        """The bbox centre's latitude (deg): the hemisphere the networks are told of (`TrainingDomain.mirrors`)."""
        return (self.bbox[1] + self.bbox[3]) / 2.0


class Years(StrictModel):
    start: int = min(_DEFAULT_SPEC.years)
    end: int = max(_DEFAULT_SPEC.years)

    @model_validator(mode="after")
    def _range(self):
        if self.end < self.start:
            raise ValueError(f"empty year range: end ({self.end}) is before start ({self.start})")
        if self.start < 1984:
            raise ValueError(f"start ({self.start}) predates Landsat surface reflectance (1984)")
        this_year = dt.date.today().year
        if self.end > this_year:
            raise ValueError(f"end ({self.end}) is in the future: use {this_year} or earlier")
        return self

    def __iter__(self):
        return iter(range(self.start, self.end + 1))


_MMDD = re.compile(r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")


class Season(StrictModel):
    """The window of each year's scenes, "MM-DD" to "MM-DD", inclusive. An end before the start
    ("12-01".."03-31", the southern summer) crosses the new year and the season is labelled by the
    year it ends in (`catalog.scenes.season_bounds`)."""

    start: str = "07-01"
    end: str = "09-30"

    @field_validator("start", "end")
    @classmethod
    def _mmdd(cls, v):
        if not _MMDD.match(v):
            raise ValueError(f"{v!r} is not a month-day like \"07-01\"")
        try:
            dt.date.fromisoformat(f"2000-{v}")  # rejects 02-31
        except ValueError:
            raise ValueError(f"{v!r} is a month-day of no year: use a day the month has") from None
        if v == "02-29":  # three years in four would have no such day, and no season bounds
            raise ValueError("'02-29' is a day of leap years only: a season is the same days every year; use 02-28 or 03-01")
        return v

    @model_validator(mode="after")
    def _not_a_whole_year(self):
        # The store keeps a look's calendar day of year; a season across the new year that leaves no day out
        # ("04-01".."03-31") would hold a leap year's last day and the year before's first on one day number.
        from catalog.scenes import day_of_year

        if self.end < self.start and day_of_year(self.end, 2000) >= day_of_year(self.start, 2001):
            raise ValueError(f"{self.start}..{self.end} crosses the new year and leaves no day of it out: an annual map is "
                             "the glacier at the end of one ablation season; give that season (e.g. 12-01..03-31)")
        return self

    def as_tuple(self) -> tuple[str, str]:
        return (self.start, self.end)


class Source(StrictModel):
    """Where one kind of data is searched: a provider profile and, optionally, another URL."""

    provider: str = "local"
    url: str | None = Field(None, description="STAC API URL or catalog.json path; default: the provider's")

    @field_validator("provider")
    @classmethod
    def _known(cls, v):
        known = provider_profiles()
        if v not in known:
            raise ValueError(f"unknown provider {v!r}: use one of {', '.join(sorted(known))}")
        return v


class Sensor(Source):
    max_cloud: float = Field(70.0, ge=0, le=100, description="scene eo:cloud_cover limit (%)")
    resolution: float = Field(gt=0, description="target grid pixel size (m)")
    weights: str | None = Field(
        None, description="safetensors weights (card beside them); default: the shipped ones for this sensor"
    )
    allow_synthetic_weights: bool = Field(
        False,
        description="run weights whose card says they were trained on synthetic scenes only on a real provider's "
        "scenes (they find little or no real ice); refused by default",
    )


class Analysis(StrictModel):
    """How maps become numbers (`pipeline.glaciers.statistics`, `pipeline.glaciers.terminus`)."""

    threshold: int = Field(128, ge=1, le=255, description="probability (0-255) at or above which a pixel is glacier")
    glacier_buffer_m: float = Field(100.0, ge=0, description="inventory outlines grown by this much, so growth is not clipped")
    band_m: float = Field(100.0, gt=0, description="elevation band width (m)")
    snow_keeps_inventory: bool = Field(
        True, description="a pixel inside the inventory outline, at or above the glacier's mean elevation there, that the "
        "year's composite shows as snow (NDSI > 0.4) is glacier even where the network says not: under snow the "
        "accumulation area's boundary cannot be seen and keeps the inventory's (pipeline.glaciers.accumulation)",
    )
    upper_boundary_from_inventory: bool = Field(
        True, description="ice mapped outside the inventory outline (in its analysis.glacier_buffer_m) at or above the "
        "glacier's mean elevation there is not glacier: the accumulation area's upper boundary (ice divides, headwalls) "
        "keeps the inventory's, and what a network maps beyond it is snowfield or a neighbour's névé; growth at and below "
        "the mean elevation (tongues, surges) is kept (pipeline.glaciers.accumulation; areas.upper_excluded_km2)",
    )
    max_snow_kept: float = Field(
        0.05, ge=0, le=1, description="a glacier-year more than this share of whose area was kept at the inventory's "
        "extent under snow (areas.snow_kept_km2) is flagged as snow-covered (areas.flag_snow)",
    )
    terminus_spacing_m: float = Field(30.0, gt=0, description="spacing of the lines parallel to the main axis")
    terminus_error: Literal["as_printed", "variant"] = Field(
        "variant", description="as_printed: sqrt((a/2)^2+(b/2)^2)/Y; variant: sqrt(a^2+b^2)/Y (the paper's +-2.36 m/a)"
    )
    terminus_statistic: Literal["mean", "median"] = Field(
        "mean", description="main-axis retreat: mean or median over the lines that cut the front in both years"
    )
    terminus_lines: Literal["centre", "front"] = Field(
        "centre", description="which of the lines that cut both fronts measure retreat: centre, the line on the main "
        "axis and its two neighbours (length change along the centreline); front, all of them (the paper's average "
        "over the whole front, which also reads the tongue's change of shape)",
    )
    max_retreat_m_a: float = Field(
        50.0, gt=0, description="the fastest a front is taken to move (m/a). A glacier whose first mapped front lies "
        "further up-glacier of its inventory outline's than this rate over the years since the outline's date allows (+2 px) "
        "is flagged (retreat.flag_behind_inventory): likely a tongue (debris cover) the map does not hold, whose retreat "
        "then reads too small (pipeline.glaciers.inventory_front); unknown where the inventory gives no date. A pair of "
        "fronts further apart than it allows over their years (+2 px) is flagged too (retreat.flag_front_too_fast): a "
        "tongue the map lost or gained that year, or a surge (pipeline.glaciers.plausibility)",
    )
    min_mapping_unit_km2: float = Field(
        0.01, ge=0, description="detached parts of a mapped glacier smaller than this, more than 1.5 pixels from its body, are "
        "dropped (area and front); "
        "larger ones are kept in the area and reported as fragments, never used as the front"
    )
    flag_sigma: float = Field(
        3.5, gt=0, description="a glacier-year whose area or front departs from the glacier's own series by more than "
        "this many robust sigmas (1.4826 x MAD, at least the stated uncertainty) is flagged as implausible"
    )
    max_unobserved: float = Field(
        0.1, ge=0, le=1,
        description="a glacier-year (or the region's year) whose outline is unobserved (cloud in every scene, DEM void) "
        "over more than this share is flagged and left out of change rates, trends and retreat, never counted as loss; "
        "a year whose tongue (lowest fifth of the glacier's outlines) is unobserved over it gives no front",
    )
    max_index_disagreement: float = Field(
        0.2, ge=0, le=1,
        description="a glacier-year whose model mask disagrees with both NDSI > 0.4 and red/SWIR > 2 over more than this "
        "share of the pixels either maps (|model xor index| / union, over the observed pixels inside its inventory "
        "outline) is flagged in the tables and report. "
        "0.2 flags most badly mapped glaciers and few good ones (docs/tables.md, `flag_index_disagreement`); 0.5 flagged "
        "only a third of them",
    )
    allow_index_disagreement: bool = Field(
        False,
        description="run on even when, region-wide, the model maps < 1/10 or > 10x the area both indices map over the "
        "inventory outlines (weights that do not know this data); the default stops the run with an error",
    )


class Tiling(StrictModel):
    """Where a run reads and infers: only store chunks near glaciers (`catalog.tiling`)."""

    buffer_m: float | None = Field(
        DEFAULT_BUFFER_M, ge=0,
        description="read only the store chunks, and of those the pieces (read_px), within this distance (m) "
        "of an inventory outline, and where some piece lies beyond it infer only the pixels within it (at least "
        "analysis.glacier_buffer_m); the rest is stored as 0 (not glacier, observed 255: not read) without reading "
        "a pixel; null: every pixel of the bbox",
    )
    tile_px: int = Field(
        DEFAULT_CHUNK, ge=256, le=8192, multiple_of=256,
        description="the store's chunk, the unit a run reads, infers and stores (px, set when the store is made): "
        "2048 by default; smaller tiles follow scattered ice closer but each pays its halo, tasks and store "
        "chunk (a sparse x16 area, reading only each tile's pieces near ice: 1,024 px tiles took 0.95x as long as "
        "2,048 px); `glacierwatch plan` compares the sizes on the region's inventory",
    )
    read_px: int = Field(
        DEFAULT_READ_PX, ge=64, le=8192,
        description="a tile with its halo is read and composited in pieces of at most this size (px a side), "
        "so a worker holds one piece's scenes at a time, not the whole tile's, and only the pieces within "
        "buffer_m of an outline are read at all, each only over the outlines' boxes grown by buffer_m and the "
        "halo: smaller pieces hold less and skip more, but each costs its reads "
        "of every scene (a sparse x16 area: 512 px pieces read 0.6x the pixels of 1,024 px ones and took 1.18x "
        "as long); on real COGs (1,024 px internal tiles, never aligned with the grid) each piece decodes the "
        "COG tiles it touches, so pieces much under 1,024 px decode some twice",
    )


class Inference(StrictModel):
    """How the networks' forward passes run."""

    half: bool | None = Field(
        None,
        description="half precision: null = on GPUs only (fp16); true = also bf16 on CPUs with bf16 instructions "
        "(AVX512-BF16 or AMX: ~2x the fp32 forward there, about 1 in 10,000 mask pixels flips; fp32 on CPUs "
        "without them); false = fp32 everywhere",
    )


class Cluster(ClusterSpec):
    """Where the Dask workers come from (`pipeline.scale.cluster`): `kind`, the backends' sections and
    their validation are `ClusterSpec`'s; `workers` is the one number most configs set.

    A key left out of `slurm` is taken from dask-jobqueue's configuration (~/.config/dask/jobqueue.yaml)
    where that sets it, else from `SlurmSpec`'s default."""

    workers: int | None = Field(None, ge=1, description="local worker processes, SLURM jobs (the maximum when "
                                "adaptive) or Kubernetes GPU workers")


class Synthetic(StrictModel):
    """The embedded study area: where it is written and how it is generated."""

    path: str = DEFAULT_DATA_DIR
    seed: int = _DEFAULT_SPEC.seed
    size: float = Field(_DEFAULT_SPEC.size, ge=0.05, le=64)
    massif_share: float = Field(_DEFAULT_SPEC.massif_share, gt=0, le=1, description="share of the massif grid's cells that "
                                "hold a massif; ~0.1 scatters glaciers over mostly ice-free land (a sparse region)")

    def spec(self) -> StudyAreaSpec:
        return StudyAreaSpec(seed=self.seed, size=self.size, massif_share=self.massif_share)


class Training(StrictModel):
    """How `glacierwatch train` trains (paper defaults where the paper gives them)."""

    architecture: Literal["dunet", "dunet-deep", "dunet-shallow", "unet"] = "dunet"
    base: int = Field(16, gt=0, description="channels of the first level (32 in the D-UNet paper)")
    epochs: int = Field(30, ge=1, description="at most; stops earlier below loss_threshold")
    variants: int = Field(20, ge=1, description="augmented copies per crop (paper: 20)")
    sample_size: int = Field(1024, ge=16)
    crop_size: int = Field(256, ge=16, multiple_of=16)
    batch_size: int = Field(8, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    lr_decay: float = Field(0.95, gt=0, le=1)
    loss_threshold: float = Field(0.01, ge=0)
    indices: tuple[Literal["ndsi", "ndwi", "red_swir_ratio"], ...] = ("ndsi", "ndwi")
    terrain: tuple[Literal["elevation", "slope", "relative_elevation"], ...] = Field(
        ("relative_elevation", "slope"), description="relative_elevation travels (no absolute elevation: it ties weights to one region)"
    )
    labels: Literal["truth", "inventory"] = Field("truth", description="truth: the synthetic area's; inventory: outlines x band ratio")
    test_years: tuple[int, ...] = Field((2021, 2022), description="held out of training, for the accuracy table")
    seed: int = 0


class Inventory(StrictModel):
    """Glacier outlines as users have them (RGI 6: RGIId, RGI 7: rgi_id, GLIMS: glac_id, ...)."""

    path: str | None = Field(None, description="glacier outlines (any vector file or GeoParquet); default: the synthetic area's")
    id_field: str = Field("glacier_id", description="the column holding each glacier's id (RGI 6: RGIId, RGI 7: rgi_id, GLIMS: glac_id)")
    date_field: str | None = Field(
        None, description="the column holding each outline's date (how far a glacier can have retreated since: "
        "analysis.max_retreat_m_a); default: BgnDate (RGI 5/6), src_date (RGI 7, GLIMS) or ref_year, where present",
    )
    date: dt.date | None = Field(
        None,
        description="GLIMS downloads (several analyses per glacier): per glacier the analysis whose source date is nearest "
        "this date; default 1 July of years.start, or, for a season crossing the new year, its first day",
    )

    def analysis_date(self, years: Years, season: Season) -> dt.date:
        """The date GLIMS analyses are chosen by (see `pipeline.glaciers.glims`): `date`, else 1 July of the first
        year (as it always was: another date could pick other analyses, and a store refuses other outlines),
        or the first day of its season where that crosses the new year (a southern summer, begun the December before)."""
        from catalog.scenes import crosses_new_year, season_bounds

        if self.date is not None:
            return self.date
        if crosses_new_year(season.as_tuple()):
            return season_bounds(years.start, season.as_tuple())[0].date()
        return dt.date(years.start, 7, 1)


def _default_sensors() -> dict[str, Sensor]:
    return {"sentinel-2": Sensor(resolution=10.0), "landsat": Sensor(resolution=30.0)}


class Config(StrictModel):
    region: Region = Region()
    years: Years = Years()
    season: Season = Season()
    sensors: dict[Literal["sentinel-2", "landsat"], Sensor] = Field(default_factory=_default_sensors)
    dem: Source = Source()
    inventory: Inventory = Inventory()
    on_unreadable: Literal["skip", "fail"] = Field(
        "skip",
        description="a scene whose COG cannot be read, or that lacks an asset: skip it (named in the provenance and "
        "counted per glacier-year in the tables) or fail the run",
    )
    store: str = "glacierwatch-out/store.zarr"
    cluster: Cluster = Cluster()
    inference: Inference = Inference()
    analysis: Analysis = Analysis()
    tiling: Tiling = Tiling()
    synthetic: Synthetic = Synthetic()
    training: Training = Training()
    base_dir: str = Field(".", exclude=True, description="folder relative paths are resolved against")

    @field_validator("store")
    @classmethod
    def _no_parent_segments(cls, v):
        # Rule: a store path never climbs with "..". A relative store then stays inside the
        # config's folder (where `path` resolves it); a store elsewhere is written out in full
        # (absolute path or URL), so where a run writes is visible in the config itself and a
        # config from elsewhere cannot aim its writes at ../../somewhere by a relative path.
        path = v.split("://", 1)[1] if "://" in v else v
        if ".." in re.split(r"[/\\]", path.split("?", 1)[0]):
            raise ValueError(
                f"{v!r} climbs out of its folder with '..': write the store without '..', relative to the "
                "config's folder (e.g. out/store.zarr), as an absolute path (e.g. /data/glaciers/store.zarr) "
                "or as a URL (e.g. s3://bucket/store.zarr)"
            )
        return v

    @field_validator("inventory", mode="before")
    @classmethod
    def _inventory_path_alone(cls, v):
        return {"path": v} if isinstance(v, str) else v

    @field_validator("sensors")
    @classmethod
    def _some_sensor(cls, v):
        if not v:
            raise ValueError("no sensors configured: add sentinel-2 and/or landsat")
        return v

    def path(self, value: str) -> str:
        """A configured path or URL, resolved against the config file's folder when relative."""
        if "://" in value or Path(value).is_absolute():
            return value
        return str((Path(self.base_dir) / value).resolve())

    def source_url(self, source: Source) -> str:
        from catalog.providers import get_profile

        profile = get_profile(source.provider)
        if source.url:
            return self.path(source.url)
        if source.provider == "local":
            return self.path(f"{self.synthetic.path}/catalog.json")
        return profile.url

    def grid(self, sensor: str) -> TargetGrid:
        return TargetGrid.from_lonlat_bbox(self.region.bbox, self.sensors[sensor].resolution, epsg=self.region.epsg())

    def inventory_path(self) -> str:
        """The configured inventory, or the embedded study area's (written with it)."""
        return self.path(self.inventory.path or f"{self.synthetic.path}/inventory/glaciers.parquet")

    def weights_path(self, sensor: str) -> str:
        """The sensor's configured weights, or the weights shipped in the package for it (their card names the network)."""
        configured = self.sensors[sensor].weights
        if configured:
            return self.path(configured)
        return str(SHIPPED_WEIGHTS / f"{sensor}.safetensors")

    def year_method(self, sensor: str) -> dict:
        """The settings that make one year of `sensor` and are not its scenes or weights (which the store
        checks on their own): a series must be made one way (`RegionStore.add_year` compares them). The
        precision is not among them: `inference.half` says what is allowed, the device decides what runs,
        and half precision flips about 1 in 10,000 mask pixels."""
        s = self.sensors[sensor]
        return {"season": f"{self.season.start}..{self.season.end}", "max_cloud": s.max_cloud}

    def digest(self) -> str:
        """Hash of the effective config: travels with every output as provenance. The cluster and the
        years are left out: where the workers ran does not change a result, and each year of a store
        records the hash it was made with, the same for a year made by the first run or by an update."""
        blob = json.dumps(self.model_dump(mode="json", exclude={"cluster", "years"}), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_yaml(self, *, as_template: bool = False) -> str:
        """The effective config as YAML; `as_template`: what `glacierwatch config` prints for a user's own,
        without `store` unless this config set it (a printed default store would override every later
        `--out`, and two regions' configs made from it would share one store)."""
        unset_store = as_template and "store" not in self.model_fields_set
        return yaml.safe_dump(self.model_dump(mode="json", exclude={"store"} if unset_store else None), sort_keys=False)


def _describe(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key: remove it or check its spelling"
        lines.append(f"{source}: {key}: {msg}")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, **overrides) -> Config:
    """The config in `path` (or the defaults), validated; errors name the key."""
    data: dict = {}
    source = "default config"
    base = Path.cwd()
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found: pass an existing YAML file to --config")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not a text file; --config takes a YAML file (glacierwatch config prints one)") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{p}: not valid YAML ({err.__class__.__name__}): {' '.join(str(err).split())}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping of keys (region, years, ...), got {type(data).__name__}")
        base = p.resolve().parent
    data.update(overrides)
    try:
        return Config(**data, base_dir=str(base))
    except ValidationError as err:
        raise ConfigError(_describe(err, source)) from None
