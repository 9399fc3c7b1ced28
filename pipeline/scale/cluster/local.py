"""A Dask cluster on this machine: how its cores, memory and GPUs are split, and starting it.

`plan_local` sizes the workers (one per GPU when there are GPUs); `local_cluster` starts them,
each GPU worker with its own CUDA_VISIBLE_DEVICES and the Dask resource `GPU=1`.
"""

from __future__ import annotations

import copy
import os

import dask

from pipeline.scale.cluster.specs import GPU_RESOURCE, LocalSpec
from pipeline.strict_model import StrictModel


class LocalPlan(StrictModel):
    """How this machine is split: worker i gets GPU `gpu_devices[i]` if i < len(gpu_devices)."""

    workers: int
    threads_per_worker: int
    memory_per_worker: int
    gpu_devices: tuple[str, ...] = ()


def detect_gpus() -> int:
    """CUDA GPUs torch can see (0 without torch or CUDA). Does not create a CUDA context."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def plan_local(spec: LocalSpec, *, cores: int | None = None, memory: int | None = None, gpus: int | None = None) -> LocalPlan:
    """Split `cores` and `memory` (default: this machine's) into workers: workers x threads = cores.

    With GPUs there is one worker per GPU (extra requested workers are CPU-only); without, dask's
    own split of cores into processes and threads.
    """
    from dask.utils import parse_bytes
    from distributed.deploy.utils import nprocesses_nthreads
    from distributed.system import MEMORY_LIMIT

    cores = cores or dask.system.CPU_COUNT
    memory = memory or MEMORY_LIMIT
    n_gpus = spec.gpus if spec.gpus is not None else (gpus if gpus is not None else detect_gpus())
    if spec.workers is not None:
        workers = spec.workers
    elif n_gpus:
        workers = n_gpus
    else:
        workers = nprocesses_nthreads(cores)[0]
    n_gpus = min(n_gpus, workers)
    threads = spec.threads_per_worker or max(1, cores // workers)
    per_worker = parse_bytes(spec.memory_per_worker) if spec.memory_per_worker else memory // workers
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = [d for d in visible.split(",") if d.strip()] if visible else [str(i) for i in range(n_gpus)]
    return LocalPlan(workers=workers, threads_per_worker=threads, memory_per_worker=per_worker, gpu_devices=tuple(devices[:n_gpus]))


def local_cluster(spec: LocalSpec, plan: LocalPlan):
    """A started `LocalCluster` with `plan.workers` workers, the first `len(plan.gpu_devices)` on a GPU each."""
    from distributed import LocalCluster

    # Start with no workers, then give each its own spec: LocalCluster applies one set of
    # options to all workers, but GPU workers each need their own CUDA_VISIBLE_DEVICES (and
    # CPU-only workers none at all, so torch in them never grabs a GPU).
    cluster = LocalCluster(
        n_workers=0,
        processes=True,
        threads_per_worker=plan.threads_per_worker,
        memory_limit=plan.memory_per_worker,
        dashboard_address=spec.dashboard_address,
    )
    try:
        for i in range(plan.workers):
            worker = copy.deepcopy(cluster.new_spec)
            options = worker["options"]
            if i < len(plan.gpu_devices):
                options["env"] = {"CUDA_VISIBLE_DEVICES": plan.gpu_devices[i]}
                options["resources"] = {GPU_RESOURCE: 1}
                name = f"gpu-{i}"
            else:
                if plan.gpu_devices:
                    options["env"] = {"CUDA_VISIBLE_DEVICES": ""}
                name = f"cpu-{i}"
            options["name"] = name
            cluster.worker_spec[name] = worker
        cluster.scale(plan.workers)
    except Exception:
        cluster.close()
        raise
    return cluster
