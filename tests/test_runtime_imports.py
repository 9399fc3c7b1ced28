"""The runtime path does not load what only synth, training or tests need (the synthetic renderer),
and a worker's event loop does not import torch."""

from __future__ import annotations

import functools
import json
import pickle
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


def test_a_tile_task_unpickles_without_torch_and_a_unet_runs_without_torchvision():
    """A worker unpickles each task in its event loop: torch's import there (2-4 s) stalled the
    worker's comms and its neighbours' transfers. The task's function must unpickle without torch
    (numba, which a thread must not import first, comes with it), and the plain U-Net (what ships)
    must not pull in torchvision (and torch._dynamo)."""
    from pipeline.inference import region

    task = functools.partial(region.predict_piece, path="w.safetensors", weights_sha256="0" * 64, device="cpu",
                             half=False)
    code = (
        "import pickle, sys\n"
        f"pickle.loads({pickle.dumps(task)!r})\n"
        "assert 'torch' not in sys.modules, 'unpickling a tile task imported torch'\n"
        "assert 'numba' in sys.modules, 'numba must come with the task, not first in its thread'\n"
        "import torch\n"
        "from pipeline.model.dunet import UNet\n"
        "UNet(in_channels=8, base=4)(torch.zeros(1, 8, 32, 32))\n"
        "assert 'torchvision' not in sys.modules, 'a plain U-Net imported torchvision'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
