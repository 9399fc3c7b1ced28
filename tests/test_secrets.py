"""Credentials never reach logs, provenance, reports, tables, STAC outputs or error messages.

Fake object-store and Planetary Computer credentials are set in the environment, and asset
hrefs of a copied catalog are signed (``?sig=...``, ``X-Amz-Security-Token=...``): one signed
scene is readable (its files exist under the signed names), one is not (skipped, so its href
and GDAL's error quoting it go into provenance and the report), and a second run fails because
every scene of its year is unreadable (the error quotes their hrefs). Every byte written and
printed is then searched for the secrets.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
import warnings
from pathlib import Path

import pytest
from conftest import small_run_config
from test_bad_inputs import copy_area, item_json
from typer.testing import CliRunner

from catalog.redact import RedactingFilter, redact
from pipeline.cli import app

SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "AWSSECRETaaaa1111",
    "AWS_SESSION_TOKEN": "AWSSESSIONbbbb2222",
    "AZURE_STORAGE_SAS_TOKEN": "?sv=2022-11-02&sig=AZURESASSIG3333",
    "PC_SDK_SUBSCRIPTION_KEY": "PCSUBKEY4444",
}
SIGNATURE = "SECRETSIG"
FORBIDDEN = [SIGNATURE, "AWSSECRETaaaa1111", "AWSSESSIONbbbb2222", "AZURESASSIG3333", "PCSUBKEY4444"]
READABLE_QUERY = f"sig={SIGNATURE}&se=2030-01-01T00%3A00%3A00Z&sp=r&X-Amz-Security-Token={SECRETS['AWS_SESSION_TOKEN']}"
UNREADABLE_QUERY = SECRETS["AZURE_STORAGE_SAS_TOKEN"].lstrip("?")
SIGNED_OK = "LC08_L2SP_145030_20200918_02_T1"  # 2020, read through its signed hrefs
SIGNED_MISSING = "LC08_L2SP_145030_20200724_02_T1"  # 2020, signed hrefs to files that do not exist
YEAR_2021 = ("LC08_L2SP_144030_20210816_02_T1", "LC08_L2SP_145030_20210719_02_T1", "LC08_L2SP_145030_20210911_02_T1")


def _sign(area, item_id: str, query: str, *, readable: bool) -> None:
    path = item_json(area, "landsat-c2-l2", item_id)
    item = json.loads(path.read_text())
    for asset in item["assets"].values():
        name = asset["href"].removeprefix("./")
        folder = path.parent if readable else path.parent / "gone"
        asset["href"] = f"{folder}/{name}?{query}"
        if readable:  # a file under the signed name: GDAL opens the href as it is
            os.symlink(path.parent / name, folder / f"{name}?{query}")
    path.write_text(json.dumps(item))


def _leaks(texts: dict[str, bytes]) -> dict[str, list[str]]:
    return {where: found for where, data in texts.items() if (found := [s for s in FORBIDDEN if s.encode() in data])}


@pytest.fixture
def signed_area(small_study_area, tmp_path, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    area = copy_area(small_study_area, tmp_path / "area")
    _sign(area, SIGNED_OK, READABLE_QUERY, readable=True)
    _sign(area, SIGNED_MISSING, UNREADABLE_QUERY, readable=False)
    for item_id in YEAR_2021:
        _sign(area, item_id, UNREADABLE_QUERY, readable=False)
    return area


class _Tap(logging.Filter):
    """Keeps the messages of WARNING and above as logged: what a default logging setup shows."""

    def __init__(self) -> None:
        super().__init__()
        self.shown: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            self.shown.append(record.getMessage())
        return True


def _invoke(args: list[str], caplog) -> tuple[object, dict[str, bytes]]:
    """Run the CLI in process; everything it printed, warned, logged or raised, by source.

    Logs: WARNING and above as they are (what shows by default), and every record down to DEBUG
    through `RedactingFilter` (GDAL's DEBUG/INFO records quote each href they open).
    """
    tap, redacting = _Tap(), RedactingFilter()
    caplog.handler.addFilter(tap)
    caplog.handler.addFilter(redacting)
    try:
        with warnings.catch_warnings(record=True) as warned, caplog.at_level(logging.DEBUG):
            warnings.simplefilter("always")
            result = CliRunner().invoke(app, args)
    finally:
        caplog.handler.removeFilter(tap)
        caplog.handler.removeFilter(redacting)
    printed = {
        "output": result.output.encode(),
        "warnings": "\n".join(str(w.message) for w in warned).encode(),
        "logs shown by default": "\n".join(tap.shown).encode(),
        "debug logs through RedactingFilter": "\n".join(r.getMessage() for r in caplog.records).encode(),
    }
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        printed["traceback"] = "".join(traceback.format_exception(result.exception)).encode()
    return result, printed


def _landsat_config(area, weights, folder: Path, year: int) -> Path:
    folder.mkdir()
    sensors = {"landsat": {"resolution": 30, "weights": str(weights["landsat"])}}
    small_run_config(area, weights, folder, sensors=sensors, years={"start": year, "end": year})
    return folder / "config.yaml"


def test_signed_hrefs_and_secret_environment_never_reach_outputs_or_messages(signed_area, small_weights, run_client, tmp_path, caplog):
    cluster = ["--cluster", run_client.scheduler.address]

    # a run that succeeds with one scene read through signed hrefs and one skipped
    out = tmp_path / "out"
    config = _landsat_config(signed_area, small_weights, tmp_path / "ok", 2020)
    result, printed = _invoke(["run", "-c", str(config), "--out", str(out), *cluster], caplog)
    assert result.exit_code == 0, printed
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["scenes"]["landsat"]["2020"] == ["LC08_L2SP_144030_20200825_02_T1", SIGNED_OK]
    skipped = prov["skipped_scenes"]["landsat"]
    assert {s["item_id"] for s in skipped} == {SIGNED_MISSING}
    # the leak path was exercised: the hrefs are there, their signatures are not
    assert skipped[0]["href"].endswith("/gone/blue.tif?sv=REDACTED&sig=REDACTED")  # every SAS field masked
    assert "sig=REDACTED" in skipped[0]["reason"]
    written = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert {"provenance.json", "report/index.html", "stac/catalog.json", "tables/areas.csv"} <= set(written)
    assert _leaks({**written, **printed}) == {}

    # a run that fails because every scene of its year is unreadable: the error quotes the hrefs
    out = tmp_path / "out-failed"
    config = _landsat_config(signed_area, small_weights, tmp_path / "failing", 2021)
    result, printed = _invoke(["run", "-c", str(config), "--out", str(out), *cluster], caplog)
    assert result.exit_code == 2, printed  # the CLI names the error and exits 2, no traceback
    message = result.output
    assert "error: every landsat scene was unreadable: [{'item_id': " in message
    assert "sig=REDACTED" in message and "cannot open asset 'blue'" in message
    written = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} if out.exists() else {}
    assert _leaks({**written, **printed}) == {}


def test_redact_masks_signature_parameters_and_secret_environment_values(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    assert redact(f"cannot open /a/b.tif?{READABLE_QUERY}: No such file") == (
        "cannot open /a/b.tif?sig=REDACTED&se=REDACTED&sp=REDACTED&X-Amz-Security-Token=REDACTED: No such file"
    )
    assert redact("https://x.blob.core.windows.net/c/b.tif?sv=2022-11-02&sig=AZURESASSIG3333&se=1") == (
        "https://x.blob.core.windows.net/c/b.tif?sv=REDACTED&sig=REDACTED&se=REDACTED"
    )
    assert redact("key AWSSECRETaaaa1111 and PCSUBKEY4444, token sv=2022-11-02&sig=AZURESASSIG3333") == (
        "key REDACTED and REDACTED, token sv=2022-11-02&sig=REDACTED"
    )
    assert redact("https://stac.example/api?collections=s2&limit=10") == "https://stac.example/api?collections=s2&limit=10"
