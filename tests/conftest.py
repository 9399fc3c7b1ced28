"""Session-wide fixtures: where the shared real data lives, and the generated study area."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

# --------------------------------------------------------------------------------------------
# layers (markers registered in pyproject.toml): `make test` runs them all, `make test-unit` the
# fast one. A test is `slow` when marked so (a pipeline run, a training, a generated area, a
# subprocess: seconds to minutes each) or when it asks for one of EXPENSIVE_FIXTURES (so a new test
# on a generated area cannot slip into the everyday layer); tests/integration/* is `integration`;
# `gpu` tests are skipped without CUDA; everything else is `unit`.

LAYERS = ("slow", "integration", "gpu")
EXPENSIVE_FIXTURES = frozenset({"study_area", "small_study_area", "small_run", "run_client"})
"""Session fixtures that generate an area (~35 s the default one) or start a run's cluster."""


def pytest_collection_modifyitems(config, items):
    integration = ROOT / "tests" / "integration"
    cuda = None
    for item in items:
        if Path(item.path).is_relative_to(integration):
            item.add_marker(pytest.mark.integration)
        elif EXPENSIVE_FIXTURES.intersection(getattr(item, "fixturenames", ())) and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("gpu") is not None:
            if cuda is None:
                import torch

                cuda = torch.cuda.is_available()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False here)"))
        if not any(item.get_closest_marker(name) for name in LAYERS):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def dask_scheduler_left_as_found():
    """A test that leaves dask's default scheduler changed fails here, and the next one starts
    clean: the config is one per process, and a leaked "dask.distributed" with no client made
    every later compute of the session fail (35 tests on CI at stop 38, far from the cause)."""
    import dask

    before = dask.config.get("scheduler", None)
    yield
    after = dask.config.get("scheduler", None)
    if after != before:
        if before is None:
            dask.config.config.pop("scheduler", None)
        else:
            dask.config.set(scheduler=before)
        pytest.fail(f"the test left dask's default scheduler at {after!r} (it was {before!r})", pytrace=False)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """`../shared/data/real/`, or skip: the real outlines and DEMs are not shipped with the project."""
    path = SHARED / "data" / "real"
    if not path.is_dir():
        pytest.skip(f"real glacier data not found at {path} (expected ../shared beside the checkout)")
    return path


@pytest.fixture(scope="session")
def study_area(tmp_path_factory):
    """The default embedded study area, generated once per test session (~35 s on 2 cores)."""
    from catalog.synthetic import StudyAreaSpec, generate_study_area

    return generate_study_area(tmp_path_factory.mktemp("synthetic") / "area", StudyAreaSpec())


@pytest.fixture(scope="session")
def small_study_area(tmp_path_factory):
    """A quarter-size area for tests that need a whole catalog but not its numbers."""
    from catalog.synthetic import StudyAreaSpec, generate_study_area

    return generate_study_area(tmp_path_factory.mktemp("synthetic-small") / "area", StudyAreaSpec(size=0.25))


@pytest.fixture(scope="session")
def stac_schemas() -> None:
    """Preload pystac's validator with the extension schemas in ../shared (it would fetch them)."""
    import json

    from pystac.validation import JsonSchemaSTACValidator, set_validator

    folder = SHARED / "data" / "stac-schemas"
    if not folder.is_dir():
        pytest.skip(f"{folder} absent: STAC extension schemas cannot be fetched offline")
    validator = JsonSchemaSTACValidator()
    for schema in folder.glob("*/v*/schema.json"):
        ext, version = schema.parts[-3], schema.parts[-2]
        validator.schema_cache[f"https://stac-extensions.github.io/{ext}/{version}/schema.json"] = json.loads(
            schema.read_text()
        )
    set_validator(validator)


# --------------------------------------------------------------------------------------------
# a whole `glacierwatch run` on the quarter-size area, shared by the run, report and notebook tests

SMALL_RUN_YEARS = {"start": 2020, "end": 2021}


def tiny_weights(sensor: str, path: Path, seed: int = 0) -> Path:
    """A base-4 U-Net with random weights for `sensor`: maps that are wrong but real, for orchestration."""
    import torch

    from catalog.providers import REFLECTANCE_BANDS
    from pipeline.model.dunet import UNet
    from pipeline.model.inputs import InputRecipe
    from pipeline.model.weights import save_weights

    torch.manual_seed(seed)
    recipe = InputRecipe(bands=REFLECTANCE_BANDS[sensor], indices=("ndsi",), terrain=("elevation", "slope"),
                         mean=(0.3,) * 6 + (0.0, 4200.0, 20.0), std=(0.2,) * 6 + (0.5, 500.0, 10.0))
    save_weights(UNet(recipe.n_channels, 4).eval(), recipe, path)
    return path


def small_run_config(area, weights: dict[str, Path], folder: Path, **extra):
    """A config file in `folder` for `area` (a generated study area) with the given weights."""
    import yaml

    from pipeline.config import load_config

    sensors = {"sentinel-2": {"resolution": 10, "weights": str(weights["sentinel-2"])},
               "landsat": {"resolution": 30, "weights": str(weights["landsat"])}}
    data = {"synthetic": {"path": str(area.root)}, "region": {"bbox": list(area.spec.bbox())},
            "years": SMALL_RUN_YEARS, "sensors": sensors, **extra}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_config(path)


@pytest.fixture(scope="session")
def run_client():
    """An in-process Dask cluster (one worker, two threads) for runs inside tests."""
    import dask
    from distributed import Client, LocalCluster

    from pipeline.scale.cluster.specs import WORKER_CONFIG

    # Not the default client: later tests that compute without a client must not land on it.
    # No memory limit: an in-process worker's "process memory" is the whole pytest session's, and
    # above 80 % of the limit Dask pauses the worker for good (a hang, not an error); the limit is
    # the machine's memory or a cgroup value, which on CI may be far below it (distributed takes
    # even cgroup v2's memory.low as a limit).
    # WORKER_CONFIG: no statistical profiler, whose sys._current_frames() deadlocked this worker
    # inside the default run's inference (CPython gh-106883; CI's 90-minute timeout of stop 28).
    with dask.config.set(WORKER_CONFIG), LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                                      memory_limit=0, dashboard_address=":0") as cluster:
        client = Client(cluster, set_as_default=False)
        try:
            yield client
        finally:
            client.close()


@pytest.fixture(scope="session")
def small_weights(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("weights")
    return {s: tiny_weights(s, folder / f"{s}.safetensors", seed=i) for i, s in enumerate(("sentinel-2", "landsat"))}


@pytest.fixture(scope="session")
def small_run(small_study_area, small_weights, run_client, tmp_path_factory):
    """(config, RunResult) of `run_study` on the quarter-size area, 2020-2021, report and STAC included."""
    from rich.console import Console

    from pipeline.run import run_study

    folder = tmp_path_factory.mktemp("run")
    cfg = small_run_config(small_study_area, small_weights, folder)
    with open(folder / "log.txt", "w") as log:
        result = run_study(cfg, folder / "out", client=run_client, console=Console(file=log, width=120))
    return cfg, result
