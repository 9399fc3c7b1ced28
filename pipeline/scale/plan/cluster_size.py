"""The cluster a plan is timed on: workers, cores and GPUs of the configured kind, without starting it.

Slurm and Kubernetes sizes come from their specs (`pipeline.scale.cluster`); a local cluster or a
scheduler address is sized like this machine, with GPUs counted without importing torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config


@dataclass(frozen=True)
class ClusterSize:
    """The planned cluster: stages are timed on `cores` CPU cores and `gpus` GPUs; `note` says where the size comes from."""

    kind: str
    workers: int
    cores: int
    threads_per_worker: int
    gpus: int
    note: str = ""


def visible_gpus() -> int:
    """NVIDIA GPUs on this machine, from the driver's /proc entries (importing torch to ask costs seconds)."""
    # Not pipeline.scale.cluster.detect_gpus: that asks torch, which a plan must not need (stats/plan run without torch).
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else 0


def cluster_size(cfg: Config, workers: int | None = None) -> ClusterSize:
    """Workers, cores and GPUs of the configured cluster (`workers` overrides cfg.cluster.workers)."""
    from pipeline.scale.cluster import ClusterSpec, plan_local
    from pipeline.scale.cluster.slurm import effective_slurm_spec
    from pipeline.scale.cluster.specs import kubernetes_cpu

    cluster = cfg.cluster if workers is None else cfg.cluster.model_copy(update={"workers": workers})
    spec = ClusterSpec.from_config(cluster)
    if spec.kind == "slurm":
        s = effective_slurm_spec(spec.slurm)
        n = s.maximum_jobs if s.adaptive else s.jobs
        note = f"{n} jobs x {s.cores} cores" + (" (adaptive maximum)" if s.adaptive else "")
        return ClusterSize("slurm", n, n * s.cores, s.cores, n * s.gpus_per_worker, note)
    if spec.kind == "kubernetes":
        k = spec.kubernetes
        cpu, gpu_cpu = (max(1, int(kubernetes_cpu(q))) for q in (k.cpu, k.gpu_cpu))  # worker threads, as the pods run them
        note = f"{k.cpu_workers} CPU workers x {cpu} + {k.gpu_workers} GPU workers x {gpu_cpu} cores"
        cores = k.cpu_workers * cpu + k.gpu_workers * gpu_cpu
        return ClusterSize("kubernetes", k.cpu_workers + k.gpu_workers, cores, max(cpu, gpu_cpu), k.gpu_workers, note)
    local = plan_local(spec.local, gpus=visible_gpus())
    note = "this machine" if spec.kind == "local" else f"size of {spec.address} unknown before connecting: assumed like this machine"
    cores = local.workers * local.threads_per_worker
    return ClusterSize(spec.kind, local.workers, cores, local.threads_per_worker, len(local.gpu_devices), note)

