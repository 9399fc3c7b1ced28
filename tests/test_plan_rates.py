"""`glacierwatch plan --rates FILE`: a broken rates file is one line naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.scale.plan import Rates, RatesError

SHIPPED = yaml.safe_load((Path(__file__).resolve().parents[1] / "pipeline" / "scale" / "plan" / "rates.yaml").read_text())


def _without(data: dict, *path: str) -> dict:
    data = yaml.safe_load(yaml.safe_dump(data))
    node = data
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return data


CASES = {
    "malformed YAML": ("read_mb_s_per_core: {value: 313, source: x\n", "not valid YAML at line 2, column 1"),
    "a list, not a mapping": ("- 1\n- 2\n", "holds list, not a mapping of rates"),
    "empty file": ("", "holds NoneType, not a mapping of rates"),
    "misspelt key": (yaml.safe_dump({**SHIPPED, "read_mb_s_per_cor": SHIPPED["read_mb_s_per_core"]}),
                     "read_mb_s_per_cor: Extra inputs are not permitted"),
    "missing key": (yaml.safe_dump(_without(SHIPPED, "statistics_mpx_s_per_core")), "statistics_mpx_s_per_core: Field required"),
    "nested key missing": (yaml.safe_dump(_without(SHIPPED, "inference", "dunet", "gpu_mpx_s", "source")),
                           "inference.dunet.gpu_mpx_s.source: Field required"),
    "wrong type": (yaml.safe_dump({**SHIPPED, "read_mb_s_per_core": {"value": "fast", "source": "x"}}),
                   "read_mb_s_per_core.value: Input should be a valid number"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_broken_rates_file_is_one_line_naming_file_and_key(name, tmp_path):
    text, expected = CASES[name]
    path = tmp_path / "rates.yaml"
    path.write_text(text)
    with pytest.raises(RatesError) as err:
        Rates.load(path)
    assert str(err.value).startswith(f"rates file {path}: ") and expected in str(err.value)
    result = CliRunner().invoke(app, ["plan", "--offline", "--rates", str(path)])
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert line.startswith(f"error: rates file {path}: ") and expected in line
    assert "Traceback" not in result.output


def test_a_missing_or_folder_rates_path_is_named(tmp_path):
    for path, why in ((tmp_path / "nope.yaml", "No such file or directory"), (tmp_path, "Is a directory")):
        result = CliRunner().invoke(app, ["plan", "--offline", "--rates", str(path)])
        assert result.exit_code == 2 and f"error: rates file {path}: cannot be read ({why})" in " ".join(result.output.split())


def test_the_shipped_rates_still_load():
    assert Rates.load().inference["dunet"].cpu_mpx_s_per_core.figure()[0] > 0
