"""What a cluster is, as settings: the validated specs of each backend and `ClusterError`.

`ClusterSpec` is what `start_cluster` takes; `LocalSpec`, `SlurmSpec` and `KubernetesSpec` are
its per-backend sections. Kept apart from the backends so that reading or checking a config
needs neither dask-jobqueue nor dask-kubernetes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import dask
from pydantic import Field, field_validator, model_validator

from pipeline.strict_model import StrictModel

# The container image the deploy/ files name; its tag follows the package version.
IMAGE = "ghcr.io/glacierwatch/glacierwatch:0.1.0"
# The Dask resource a GPU worker offers (one GPU per worker, never shared).
GPU_RESOURCE = "GPU"
KINDS = ("local", "slurm", "kubernetes", "address")
Allocator = Literal["system", "jemalloc", "auto"]  # the local workers' malloc: `allocator`
RemoteAllocator = Literal["system", "jemalloc"]  # a batch system's workers: no `auto`, their nodes cannot be looked at from here

WORKER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
}
"""Dask settings every glacierwatch worker runs with (nannies hand the parent's config to their workers).

No statistical profiler: it calls sys._current_frames() every 10 ms. On CPython 3.11 before
3.11.9 that call holds the interpreter's thread-list lock while it allocates; a garbage collection
started there runs callbacks and finalizers that release the GIL (distributed's own GC diagnosis
reads /proc), and a read thread that then drops a threading.local (every GDAL dataset copy has one)
takes the GIL and waits for that lock: every thread of the worker stops, for good (CPython
gh-106883). Seen here as `glacierwatch run` hanging inside infer_to_store, with the GIL held by a
glacierwatch-read thread in local_dealloc (gdb). Without the profiler nothing takes that lock while
allocating; the dashboard loses its profile page.

No MALLOC_TRIM_THRESHOLD_ from the nannies: dask starts its workers with 65536, which makes glibc
hand torch's large activation buffers back to the OS after every block and fault them in again
(and fixes glibc's mmap threshold): the forward ran 2.3x slower under it (tests/bench/bench_inference.py).
Workers here hold one tile at a time, so glibc's default is safe."""


def worker_environment(preload: Mapping[str, str] | None = None) -> dict[str, str]:
    """`WORKER_CONFIG` as the environment SLURM job scripts export and Kubernetes worker pods carry,
    since those workers are started by the batch system, not by this process. `preload`
    (`allocator.remote_allocator_environ`): variables the nannies spawn their workers with, as a
    local cluster's do (``distributed.nanny.pre-spawn-environ``), so the restart before the
    statistics takes them out again (`allocator.drop_preloaded_allocator`).

    All of it goes in ``DASK_INTERNAL_INHERIT_CONFIG``, dask's serialized config (how distributed's
    SSHCluster hands its config to the workers it starts): it can carry the None that takes a
    variable out of the nannies' environment, which a ``DASK_*`` variable cannot (dask lower-cases
    their keys). The settings a ``DASK_*`` variable can say are also given as one, to be read."""
    nested: dict = {}
    dask.config.set(WORKER_CONFIG, config=nested)
    dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in (preload or {}).items()}, config=nested)
    readable = {
        "DASK_" + key.upper().replace(".", "__").replace("-", "_"): str(value)
        for key, value in WORKER_CONFIG.items()
        if value is not None and key == key.lower()
    }
    return {"DASK_INTERNAL_INHERIT_CONFIG": dask.config.serialize(nested), **readable}


class ClusterError(RuntimeError):
    """A cluster that cannot be started; the message says what to install or change."""


def walltime_seconds(walltime: str) -> float:
    """Seconds of a SLURM time limit: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
    days-hours:minutes or days-hours:minutes:seconds (sbatch --time)."""
    text = str(walltime).strip()
    days, dash, rest = text.partition("-")
    if not dash:
        days, rest = "0", text
    parts = rest.split(":")
    if not days.isdigit() or not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
        raise ValueError(f"walltime {walltime!r} is not a SLURM time: use e.g. \"04:00:00\" or \"2-00:00:00\"")
    values = [int(p) for p in parts]
    if dash:  # days-hours[:minutes[:seconds]]
        hours, minutes, seconds = (values + [0, 0])[:3]
    else:  # minutes, minutes:seconds or hours:minutes:seconds
        hours, minutes, seconds = [0, *values, 0][:3] if len(values) < 3 else values
    total = ((int(days) * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise ValueError(f"walltime {walltime!r} is zero")
    return float(total)


def _bytes(value: str, key: str) -> str:
    try:
        dask.utils.parse_bytes(value)
    except (ValueError, TypeError):
        raise ValueError(f"{key} {value!r} is not an amount of memory: use e.g. \"64GB\" or \"16GiB\"") from None
    return value


def kubernetes_cpu(quantity: str) -> float:
    """Cores of a Kubernetes CPU quantity ("4", "0.5", "500m")."""
    text = str(quantity).strip()
    try:
        cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        raise ValueError(f"CPU {quantity!r} is not a Kubernetes quantity: use e.g. \"4\" or \"500m\"") from None
    if cores <= 0:
        raise ValueError(f"CPU {quantity!r} must be positive")
    return cores


def _kubernetes_memory(quantity: str) -> str:
    if not re.fullmatch(r"\d+(\.\d+)?(Ki|Mi|Gi|Ti|k|M|G|T)?", str(quantity).strip()):
        raise ValueError(f"memory {quantity!r} is not a Kubernetes quantity: use e.g. \"16Gi\"")
    return quantity


class LocalSpec(StrictModel):
    """This machine. Unset values are sized from the machine (cores, memory, GPUs)."""

    workers: int | None = Field(None, ge=1, description="worker processes; default: one per GPU, else dask's split")
    threads_per_worker: int | None = Field(None, ge=1, description="default: cores / workers")
    memory_per_worker: str | None = Field(None, description='e.g. "4GB"; default: machine memory / workers')
    gpus: int | None = Field(None, ge=0, description="GPUs to use; default: torch.cuda.device_count()")
    dashboard_address: str = ":8787"
    allocator: Allocator = Field(
        "system",
        description="malloc of the workers running the networks: jemalloc gives freed memory back (a fifth to a "
        "quarter less per worker; 10-15 % slower where ice is sparse); auto: jemalloc where the machine has it. "
        "The statistics always run on the C library's",
    )


class SlurmSpec(StrictModel):
    """One worker per SLURM job, one GPU per job (`--gres=gpu:1`), scaled by jobs."""

    partition: str = "gpu"
    account: str | None = None
    cores: int = Field(8, ge=1, description="CPU cores per job (threads of its one worker)")
    memory: str = Field("64GB", description="memory per job")
    walltime: str = "04:00:00"
    gpus_per_worker: int = Field(1, ge=0, le=1, description="0 = CPU-only partition; more GPUs = more jobs, not more per job")
    jobs: int = Field(4, ge=0, description="fixed number of jobs (ignored when adaptive)")
    adaptive: bool = False
    minimum_jobs: int = Field(0, ge=0)
    maximum_jobs: int = Field(16, ge=1)
    local_directory: str | None = Field("${TMPDIR:-/tmp}", description="node-local scratch for spilling (the shell expands it "
                                        "in the job: TMPDIR where SLURM sets one, else /tmp)")
    log_directory: str | None = None
    job_script_prologue: list[str] = Field(default_factory=list, description='e.g. ["module load cuda", "source .venv/bin/activate"]')
    job_extra_directives: list[str] = Field(default_factory=list, description='more #SBATCH lines, e.g. ["--qos=long", '
                                            '"--constraint=a100"]; the GPU line comes from gpus_per_worker')
    interface: str | None = Field(None, description='network interface for workers, e.g. "ib0"')
    python: str | None = Field(None, description="python on the compute nodes; default: this one (shared filesystem)")
    dashboard_address: str = ":8787"
    start_timeout_s: float = Field(3600.0, gt=0, description="deadline for the first worker job to start (queue wait included)")
    allocator: RemoteAllocator = Field(
        "system", description="malloc of the workers (as cluster.local.allocator): jemalloc needs libjemalloc.so.2 on the "
        "compute nodes (Debian/Ubuntu libjemalloc2, RHEL jemalloc); the statistics run on the C library's",
    )

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, value: str) -> str:
        walltime_seconds(value)
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        return _bytes(value, "memory")

    @model_validator(mode="after")
    def _range(self):
        if self.adaptive and self.minimum_jobs > self.maximum_jobs:
            raise ValueError(f"minimum_jobs ({self.minimum_jobs}) exceeds maximum_jobs ({self.maximum_jobs})")
        return self


class KubernetesSpec(StrictModel):
    """A DaskCluster (dask-kubernetes operator): a CPU worker group plus a GPU worker group."""

    name: str = "glacierwatch"
    namespace: str | None = Field(None, description="default: the kubeconfig's current namespace")
    image: str = IMAGE
    cpu_workers: int = Field(1, ge=0, description="default worker group (compositing, statistics)")
    cpu: str = "4"
    memory: str = "16Gi"
    scheduler_cpu: str = "1"
    scheduler_memory: str = "4Gi"
    gpu_workers: int = Field(2, ge=0, description="GPU worker group (D-UNet inference)")
    gpu_cpu: str = "8"
    gpu_memory: str = "32Gi"
    gpu_node_selector: dict[str, str] = Field(default_factory=dict, description='e.g. {"nvidia.com/gpu.present": "true"}')
    service_account: str | None = Field(None, description="ServiceAccount of the Dask pods: cloud credentials by workload "
                                        "identity (EKS IRSA, GKE), which the workers need to read scenes and write the store")
    env_from_secret: str | None = Field(None, description="a Secret whose keys become the Dask pods' environment, e.g. "
                                        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for requester-pays scenes and an s3:// store")
    volume_claim: str | None = Field(None, description="a ReadWriteMany PersistentVolumeClaim mounted on every Dask pod at "
                                     "mount_path: a store and inventory on a shared volume (else use object storage)")
    mount_path: str = "/data"
    start_timeout_s: float = Field(600.0, gt=0, description="deadline for the scheduler and the first worker pod")
    allocator: RemoteAllocator = Field(
        "system", description="malloc of the workers (as cluster.local.allocator): jemalloc is in the image "
        "(deploy/Dockerfile); the statistics run on the C library's",
    )

    @field_validator("cpu", "gpu_cpu", "scheduler_cpu")
    @classmethod
    def _cpu(cls, value: str) -> str:
        kubernetes_cpu(value)
        return value

    @field_validator("memory", "gpu_memory", "scheduler_memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        return _kubernetes_memory(value)


class ClusterSpec(StrictModel):
    kind: Literal["local", "slurm", "kubernetes", "address"] = "local"
    address: str | None = None
    local: LocalSpec = LocalSpec()
    slurm: SlurmSpec = SlurmSpec()
    kubernetes: KubernetesSpec = KubernetesSpec()

    @model_validator(mode="after")
    def _address(self):
        if self.kind == "address" and not self.address:
            raise ValueError('cluster.kind "address" needs cluster.address, e.g. "tcp://scheduler:8786"')
        if self.address and self.kind != "address":
            raise ValueError(f"cluster.address is given but cluster.kind is {self.kind!r}: set kind: address to use "
                             "a running scheduler, or remove the address")
        return self

    @classmethod
    def from_config(cls, cluster: Any, details: Mapping[str, Any] | None = None) -> ClusterSpec:
        """From `pipeline.config.Cluster` (kind, address, workers and its backend sections, the keys
        it was given), `details` (backend sections) on top.

        `workers` means: local worker processes, SLURM jobs (the maximum when adaptive), or
        Kubernetes GPU workers; a section's own key for it wins.
        """
        base = cluster.model_dump(exclude_unset=True) if hasattr(cluster, "model_dump") else dict(cluster)
        base.setdefault("kind", "local")
        data: dict[str, Any] = {k: dict(base.pop(k, None) or {}) for k in ("local", "slurm", "kubernetes")}
        for k, v in (details or {}).items():
            data[k] = {**data.get(k, {}), **dict(v)}
        workers = base.pop("workers", None)
        if workers is not None:
            key = {"local": ("local", "workers"), "kubernetes": ("kubernetes", "gpu_workers")}.get(base["kind"])
            if base["kind"] == "slurm":
                adaptive = data.get("slurm", {}).get("adaptive", False)
                key = ("slurm", "maximum_jobs" if adaptive else "jobs")
            if key:
                data.setdefault(key[0], {}).setdefault(key[1], workers)
        return cls(**base, **{k: v for k, v in data.items() if v})
