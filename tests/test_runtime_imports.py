"""The runtime path does not load what only synth, training or tests need (the synthetic renderer)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_the_cli_run_and_stats_do_not_import_the_synthetic_generator():
    script = (
        "import json, sys\n"
        "import pipeline.cli, pipeline.run, pipeline.config, pipeline.glaciers.outline_stats\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('catalog.synthetic'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    # what a config says about the embedded area is light; the renderer and the world are not loaded
    assert set(loaded) <= {"catalog.synthetic", "catalog.synthetic.area_spec"}, loaded


def test_the_generator_is_still_one_attribute_away():
    import catalog.synthetic as synthetic
    from catalog.synthetic.study_area import generate_study_area

    assert synthetic.generate_study_area is generate_study_area
