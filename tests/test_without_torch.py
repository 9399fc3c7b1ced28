"""`pip install glacierwatch` without the `model` extra: stats, plan and --help run; model commands say how to get it.

torch stays installed here, so each check runs in a fresh interpreter where an import hook
refuses torch and torchvision as an uninstalled package would (ModuleNotFoundError).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.model import MODEL_EXTRA_HINT, ModelExtraMissing, missing_model_extra, require_model

BLOCK_TORCH = textwrap.dedent("""
    import sys

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoTorch())
""")

INVOKE = textwrap.dedent("""
    import json
    from typer.testing import CliRunner
    from pipeline.cli import app

    results = [
        {"args": args, "exit_code": r.exit_code, "output": r.output}
        for args in ARGS
        for r in [CliRunner().invoke(app, args)]
    ]
    print(json.dumps({"results": results, "torch_imported": [m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")]}))
""")


def _without_torch(args: list[list[str]], cwd) -> tuple[list[dict], list[str]]:
    """Invoke the CLI with each of `args` in one interpreter that cannot import torch."""
    script = BLOCK_TORCH + f"ARGS = {args!r}\n" + INVOKE
    proc = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    return answer["results"], answer["torch_imported"]


@pytest.mark.slow
def test_help_and_plan_run_without_torch(tmp_path):
    results, imported = _without_torch([["--help"], ["plan", "--help"], ["stats", "--help"], ["plan", "--offline"]], tmp_path)
    *helps, plan = results
    for result in helps:
        assert result["exit_code"] == 0, result
        assert "Usage" in result["output"]
    assert plan["exit_code"] == 0, plan["output"]
    assert "annual update" in plan["output"]
    assert imported == []
    assert list(tmp_path.iterdir()) == []  # a plan reads no pixels and writes nothing


@pytest.mark.slow
def test_stats_on_real_outlines_runs_without_torch(tmp_path, real_data):
    hef = real_data / "hintereisferner"
    taken = tmp_path / "taken"
    taken.write_text("")
    results, imported = _without_torch(
        [
            ["stats", "--outlines", str(hef / "Hintereisferner_RGI6.shp"), "--dem", str(hef / "hef_srtm.tif"),
             "--id-field", "RGIId", "--out", str(tmp_path / "tables")],
            # --out is a file: an error that reaches the CLI's one-line handler, which must not need torch either
            ["stats", "--outlines", str(hef / "Hintereisferner_RGI6.shp"), "--id-field", "RGIId", "--out", str(taken)],
        ],
        tmp_path,
    )
    ok, bad = results
    assert ok["exit_code"] == 0, ok["output"]
    assert "areas: 1 rows" in ok["output"]
    assert (tmp_path / "tables" / "areas.parquet").is_file()
    assert bad["exit_code"] == 2, bad["output"]
    assert bad["output"].startswith("error: FileExistsError") and len(bad["output"].strip().splitlines()) == 1
    assert imported == []


@pytest.mark.slow
def test_model_commands_without_torch_say_the_extra_in_one_line(tmp_path):
    commands = [["run"], ["run", "--check"], ["update", "--year", "2024"], ["train"], ["train-world"],
                ["predict", "--sensor", "landsat", "--bands", "b.tif", "--out", "p.tif"]]
    results, imported = _without_torch(commands, tmp_path)
    for result in results:
        assert result["exit_code"] == 2, result
        assert result["output"] == f"error: {MODEL_EXTRA_HINT}\n", result
    assert imported == []
    assert list(tmp_path.iterdir()) == []  # nothing written, no study area generated


def test_a_model_command_without_the_extra_prints_the_hint(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchvision" else real_find_spec(name, *a))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelExtraMissing, match="glacierwatch\\[model\\]"):
        require_model()
    result = CliRunner().invoke(app, ["train-world", "--epochs", "1"])
    assert result.exit_code == 2
    assert result.output == f"error: {MODEL_EXTRA_HINT}\n"
    assert list(tmp_path.iterdir()) == []


def test_only_a_missing_model_package_counts_as_a_missing_extra():
    assert missing_model_extra(ModuleNotFoundError("No module named 'torch'", name="torch"))
    assert missing_model_extra(ModuleNotFoundError("No module named 'torchvision.ops'", name="torchvision.ops"))
    assert not missing_model_extra(ModuleNotFoundError("No module named 'planetary_computer'", name="planetary_computer"))
    assert not missing_model_extra(ImportError("libcudnn.so.9: cannot open shared object file", name="torch"))
