"""Session-wide fixtures: where the shared real data lives, and the generated study area."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


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
