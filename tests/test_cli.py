"""The command line: the main job's steps, and one-line errors that leave nothing behind."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from pipeline.cli import app

runner = CliRunner()


def _config(tmp_path, study_area, **extra) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"synthetic": {"path": str(study_area.root)}, **extra}))
    return str(path)


def test_search_lists_scenes_of_both_sensors_and_zones(tmp_path, study_area):
    result = runner.invoke(app, ["search", "--config", _config(tmp_path, study_area), "--year", "2017"])
    assert result.exit_code == 0, result.output
    assert "S2A_44TQN_2017" in result.output or "S2B_44TQN_2017" in result.output
    assert "EPSG:32645" in result.output and "LC08_L2SP" in result.output


def test_bad_inputs_fail_with_one_line_and_exit_2(tmp_path, study_area):
    cases = [
        ({"region": {"bbox": [10.0, 46.0, 10.5, 46.5]}}, "outside every item"),
        ({"years": {"start": 2020, "end": 2019}}, "empty year range"),
        ({"season": {"start": "11-01", "end": "11-30"}}, "no sentinel-2 scenes"),
        ({"sensors": {"sentinel-2": {"provider": "copernicus", "resolution": 10}}}, "unknown provider 'copernicus'"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, ["search", "--config", _config(tmp_path, study_area, **extra)])
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.output
        assert result.output.strip().startswith("error:")


def test_synth_with_a_bad_config_writes_nothing(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"synthetic": {"path": str(tmp_path / "area"), "size": 500}}))
    result = runner.invoke(app, ["synth", "--config", str(path)])
    assert result.exit_code == 2 and "synthetic.size" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_config_prints_a_usable_yaml(tmp_path):
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0
    assert yaml.safe_load(result.output)["region"]["crs"] == "auto"


def test_a_config_made_from_the_printed_one_writes_its_store_under_out(tmp_path):
    """The printed defaults leave `store` out: printed, it overrode every later --out."""
    from pipeline.config import load_config
    from pipeline.preflight import store_url_for

    printed = tmp_path / "mine.yaml"
    printed.write_text(runner.invoke(app, ["config"]).output)
    assert store_url_for(load_config(printed), tmp_path / "yh-out") == str((tmp_path / "yh-out" / "store.zarr").resolve())
    # a store the config sets is printed, and kept
    printed.write_text(yaml.safe_dump({"store": "s3://bucket/yh.zarr"}))
    again = tmp_path / "again.yaml"
    again.write_text(runner.invoke(app, ["config", "-c", str(printed)]).output)
    assert store_url_for(load_config(again), tmp_path / "yh-out") == "s3://bucket/yh.zarr"


def test_a_full_or_read_only_disk_says_where_and_what_to_do(capsys):
    import errno

    from pipeline.cli.errors import report

    report(OSError(errno.ENOSPC, "No space left on device"))
    report(OSError(errno.EROFS, "Read-only file system", "/data/out/store.zarr/run/update.lock"))
    text = " ".join(capsys.readouterr().err.split())
    assert "No space left on device: free space there" in text and "run the same command again" in text
    assert "Read-only file system: '/data/out/store.zarr/run/update.lock'" in text and "a writable folder" in text


def test_workers_killed_or_the_scheduler_lost_say_what_to_do_not_report_a_bug(capsys):
    """A worker memory limit the network's forward does not fit, or a scheduler that died: before, both
    were "internal error ... report it" with exit 1."""
    from distributed import KilledWorker
    from distributed.client import FutureCancelledError

    from pipeline.cli.errors import is_input_error, report

    from types import SimpleNamespace

    killed = KilledWorker(("predict_piece-0123456789abcdef", 1, 0, 1), SimpleNamespace(address="tcp://10.0.0.9:40000"), 3)
    lost = FutureCancelledError("write_unit_task-0123456789abcdef", "scheduler-connection-lost")
    for err in (killed, lost):
        assert is_input_error(err)
        report(err)
    text = " ".join(capsys.readouterr().err.split())
    assert "internal error" not in text
    assert "workers died one after another running predict_piece (4 workers in turn)" in text and "--memory-limit" in text
    assert "connection to the Dask scheduler was lost (scheduler-connection-lost)" in text
    assert text.count("it resumes where it stopped") == 2


def test_the_runs_warnings_count_glacier_years_in_words_that_agree():
    """The default area's run said "in 1 glacier-years"."""
    from pipeline.cli.run_commands import _glacier_years

    assert (_glacier_years(1), _glacier_years(3.0), _glacier_years(0)) == ("1 glacier-year", "3 glacier-years", "0 glacier-years")
