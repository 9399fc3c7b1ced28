"""Credentials planted in a config never leave the process: not on the console of `search`,
`plan` and `run`, not in any file under --out. And console text keeps its `[...]`."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import yaml
from conftest import small_run_config
from rich.table import Table
from test_bad_inputs import copy_area
from typer.testing import CliRunner

from catalog.redact import MASK, RedactingConsole, redact
from pipeline.cli import app

# One secret per credential form; each must vanish wherever it would be shown.
QUERY = {
    "password": "PWQUERY2222",
    "api-key": "APIKEY3333",
    "x-api-key": "XAPIKEY4444",
    "sig": "SASSIG5555",
    "se": "2031-02-03T04%3A05%3A06Z",
    "X-Amz-Signature": "AMZSIG6666",
    "X-Amz-Credential": "AKIAEXAMPLE7777",
}
USERINFO = "gwuser:USERPW1111"
SECRETS = ["USERPW1111", *QUERY.values()]
QUERY_STRING = "&".join(f"{k}={v}" for k, v in QUERY.items())
API = f"http://{USERINFO}@127.0.0.1:1/stac/v1?collections=x&{QUERY_STRING}"  # refused at once


def _leaks(texts: dict[str, str]) -> dict[str, list[str]]:
    return {where: found for where, text in texts.items() if (found := [s for s in SECRETS if s in text])}


# ---------------------------------------------------------------- the function


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:pa55@word@stac.example/api?limit=5", "https://REDACTED@stac.example/api?limit=5"),
        ("s3://AKIA:secret@bucket/store.zarr", "s3://REDACTED@bucket/store.zarr"),
        ("https://x/search?password=hunter22&passwd=a&pwd=b&limit=1",
         "https://x/search?password=REDACTED&passwd=REDACTED&pwd=REDACTED&limit=1"),
        ("https://x/?api-key=K1&apikey=K2&api_key=K3&x-api-key=K4&key=K5&subscription-key=K6",
         "https://x/?api-key=REDACTED&apikey=REDACTED&api_key=REDACTED&x-api-key=REDACTED&key=REDACTED&subscription-key=REDACTED"),
        ("https://a.blob.core.windows.net/c/b.tif?sv=2022-11-02&st=2030-01-01T00:00:00Z&se=2030-01-02T00:00:00Z&sp=r&skoid=abc&sig=s%2Fg",
         "https://a.blob.core.windows.net/c/b.tif?sv=REDACTED&st=REDACTED&se=REDACTED&sp=REDACTED&skoid=REDACTED&sig=REDACTED"),
        ("https://b.s3.amazonaws.com/k.tif?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=ab12&X-Amz-Security-Token=tok",
         "https://b.s3.amazonaws.com/k.tif?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&X-Amz-Security-Token=REDACTED"),
        ("https://x/?token=t&access_token=u&client_secret=v&Signature=w", "https://x/?token=REDACTED&access_token=REDACTED&client_secret=REDACTED&Signature=REDACTED"),
        ("cannot open /a/b.tif?sig=XYZ: No such file", "cannot open /a/b.tif?sig=REDACTED: No such file"),
        ("headers {'Authorization': 'Bearer abc.def', 'X-Api-Key': 'k123'}", "headers {'Authorization': 'Bearer REDACTED', 'X-Api-Key': 'REDACTED'}"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic REDACTED"),
        # what is not a credential stays as it is
        ("https://earth-search.aws.element84.com/v1?collections=sentinel-2-l2a&limit=100",
         "https://earth-search.aws.element84.com/v1?collections=sentinel-2-l2a&limit=100"),
        ("tcp://10.0.0.5:8786, region [83.5, 43.4, 85.0, 44.1], key [region.bbox]",
         "tcp://10.0.0.5:8786, region [83.5, 43.4, 85.0, 44.1], key [region.bbox]"),
    ],
)
def test_redact_masks_every_credential_form(text, expected):
    assert redact(text) == expected


def test_redact_masks_values_of_secret_environment_variables(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "AWSSECRET99")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "servicetoken42")
    monkeypatch.setenv("TOKEN_PATH", "/var/run/secrets/x")  # where a secret lives is not the secret
    assert redact("used AWSSECRET99 and servicetoken42 from /var/run/secrets/x") == (
        f"used {MASK} and {MASK} from /var/run/secrets/x"
    )


def test_the_console_redacts_tables_and_keeps_brackets():
    out = io.StringIO()
    console = RedactingConsole(file=out, width=200)
    console.print("error: region.bbox [83.5, 43.4, 85.0, 44.1] misses [bold]; see [red]x[/red] " + API, soft_wrap=True)
    table = Table()
    table.add_column("url")
    table.add_row(API)
    console.print(table)
    text = out.getvalue()
    assert "error: region.bbox [83.5, 43.4, 85.0, 44.1] misses [bold]; see [red]x[/red] http://REDACTED@127.0.0.1:1" in text
    assert _leaks({"console": text}) == {}
    assert text.count("password=REDACTED") == 2


# ---------------------------------------------------------------- the command line


def _config(tmp_path: Path, area, **extra) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"synthetic": {"path": str(area.root)}, "region": {"bbox": list(area.spec.bbox())},
                                    "years": {"start": 2020, "end": 2020}, **extra}))
    return str(path)


def test_search_and_plan_never_print_a_planted_credential(small_study_area, tmp_path):
    config = _config(tmp_path, small_study_area, sensors={"landsat": {"provider": "earth-search", "url": API, "resolution": 30}})
    runner = CliRunner()
    search = runner.invoke(app, ["search", "-c", config])
    assert search.exit_code == 2 and search.output.startswith("error: STAC API http://REDACTED@127.0.0.1:1/stac/v1?"), search.output
    plan = runner.invoke(app, ["plan", "-c", config])
    assert plan.exit_code == 0, plan.output
    assert "http://REDACTED@127.0.0.1:1" in plan.output and "password=REDACTED" in plan.output
    assert _leaks({"search": search.output, "plan": plan.output}) == {}


def test_a_run_with_a_credentialed_catalog_url_writes_and_prints_no_credential(small_study_area, small_weights, run_client, tmp_path):
    area = copy_area(small_study_area, tmp_path / "area")
    signed = Path(area.root) / f"catalog.json?{QUERY_STRING}"  # a file of that name: the run reads through it
    os.symlink(Path(area.root) / "catalog.json", signed)
    sensors = {"landsat": {"resolution": 30, "weights": str(small_weights["landsat"]), "url": str(signed)}}
    small_run_config(area, small_weights, tmp_path, sensors=sensors, years={"start": 2020, "end": 2020})
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", "-c", str(tmp_path / "config.yaml"), "--out", str(out),
                                      "--cluster", run_client.scheduler.address])
    assert result.exit_code == 0, result.output
    written = {str(p.relative_to(out)): p.read_text(errors="replace") for p in out.rglob("*")
               if p.is_file() and p.suffix in (".json", ".html", ".csv", ".txt", ".md", "")}
    assert {"provenance.json", "report/index.html", "stac/catalog.json", "stac/provenance.json"} <= set(written)
    provenance = json.loads(written["provenance.json"])
    assert "catalog.json?password=REDACTED&api-key=REDACTED" in provenance["config_yaml"]  # the leak path ran
    assert _leaks({**written, "console": result.output}) == {}


def test_error_messages_keep_their_brackets(small_study_area, tmp_path):
    # a bbox hint and a path with [...] in it: rich markup would read "[draft]" as a style and drop it
    folder = tmp_path / "[draft]"
    folder.mkdir()
    outside = _config(folder, small_study_area, region={"bbox": [10.0, 46.0, 10.5, 46.5]})
    result = CliRunner().invoke(app, ["search", "-c", outside])
    assert result.exit_code == 2
    line = " ".join(result.output.split())
    assert line.startswith("error: region bbox [10.0, 46.0, 10.5, 46.5] is outside every item"), line
    assert "(which covers [83." in line
    (folder / "bad.yaml").write_text("years: {start: 2020, end: 2019}\n")
    result = CliRunner().invoke(app, ["search", "-c", str(folder / "bad.yaml")])
    assert result.exit_code == 2 and f"{folder}/bad.yaml" in " ".join(result.output.split())
