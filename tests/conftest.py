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
