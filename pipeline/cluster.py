"""Where the Dask workers come from: this machine, a running scheduler, SLURM or Kubernetes.

`start_cluster(spec)` is the one entry point; it yields a `distributed.Client` and closes what it
started on exit. GPU workers carry the Dask resource `GPU=1` (one GPU per worker, never shared),
so inference asks for `resources=task_resources(client)` and preprocessing runs anywhere.

The SLURM job script and the Kubernetes manifests are built by plain functions
(`slurm_job_script`, `kubernetes_manifests`) that start nothing: the same dictionaries are
handed to dask-jobqueue / dask-kubernetes at run time and are checked against the files in
`deploy/` by the tests, so the deployed YAML and the code cannot drift apart silently.

Config: `pipeline.config.Cluster` carries kind/address/workers; the per-backend details
(`local`, `slurm`, `kubernetes` below) are plain dicts until Config grows those sections.

Start-up fails fast and in one line (`ClusterError`): `check_cluster` - run by the run's
pre-flight before anything is written, and again by `start_cluster` - refuses an unknown kind,
SLURM without ``sbatch``, Kubernetes without credentials and a scheduler address that does not
answer within CONNECT_TIMEOUT_S; once started, each backend has a deadline for its first worker.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Literal

import dask
from pydantic import Field, model_validator
from rich.console import Console
from rich.markup import escape

from catalog.redact import redact
from pipeline.config import StrictModel

# The container image the deploy/ files name; its tag follows the package version.
IMAGE = "ghcr.io/glacierwatch/glacierwatch:0.1.0"
GPU_RESOURCE = "GPU"
K8S_GPU = "nvidia.com/gpu"
# dask-jobqueue fills the real address in at submit time; job scripts shown before that use this.
PLACEHOLDER_SCHEDULER = "tcp://<insert-scheduler-address-here>:8786"
# How long a scheduler address may take to accept a connection before the run gives up.
CONNECT_TIMEOUT_S = 10.0
# Schemes `distributed` connects with; inproc:// is an in-process scheduler (tests, notebooks).
ADDRESS_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")
KINDS = ("local", "slurm", "kubernetes", "address")


class ClusterError(RuntimeError):
    """A cluster that cannot be started; the message says what to install or change."""


class LocalSpec(StrictModel):
    """This machine. Unset values are sized from the machine (cores, memory, GPUs)."""

    workers: int | None = Field(None, ge=1, description="worker processes; default: one per GPU, else dask's split")
    threads_per_worker: int | None = Field(None, ge=1, description="default: cores / workers")
    memory_per_worker: str | None = Field(None, description='e.g. "4GB"; default: machine memory / workers')
    gpus: int | None = Field(None, ge=0, description="GPUs to use; default: torch.cuda.device_count()")
    dashboard_address: str = ":8787"


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
    local_directory: str | None = Field("$TMPDIR", description="node-local scratch for spilling")
    log_directory: str | None = None
    job_script_prologue: list[str] = Field(default_factory=list, description='e.g. ["module load cuda", "source .venv/bin/activate"]')
    interface: str | None = Field(None, description='network interface for workers, e.g. "ib0"')
    python: str | None = Field(None, description="python on the compute nodes; default: this one (shared filesystem)")
    dashboard_address: str = ":8787"
    start_timeout_s: float = Field(3600.0, gt=0, description="deadline for the first worker job to start (queue wait included)")

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
    start_timeout_s: float = Field(600.0, gt=0, description="deadline for the scheduler and the first worker pod")


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
        return self

    @classmethod
    def from_config(cls, cluster: Any, details: Mapping[str, Any] | None = None) -> ClusterSpec:
        """From `pipeline.config.Cluster` (kind, address, workers) plus optional backend sections.

        `workers` means: local worker processes, SLURM jobs (the maximum when adaptive), or
        Kubernetes GPU workers.
        """
        base = cluster.model_dump() if hasattr(cluster, "model_dump") else dict(cluster)
        data: dict[str, Any] = {k: dict(v) for k, v in (details or {}).items()}
        workers = base.pop("workers", None)
        if workers is not None:
            key = {"local": ("local", "workers"), "kubernetes": ("kubernetes", "gpu_workers")}.get(base["kind"])
            if base["kind"] == "slurm":
                adaptive = data.get("slurm", {}).get("adaptive", False)
                key = ("slurm", "maximum_jobs" if adaptive else "jobs")
            if key:
                data.setdefault(key[0], {}).setdefault(key[1], workers)
        return cls(**base, **data)


# ---------------------------------------------------------------- local

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


def _local_cluster(spec: LocalSpec, plan: LocalPlan):
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


# ---------------------------------------------------------------- SLURM

def _slurm_job_kwargs(spec: SlurmSpec) -> dict[str, Any]:
    gpu = spec.gpus_per_worker > 0
    return {
        "queue": spec.partition,
        "account": spec.account,
        "cores": spec.cores,
        "processes": 1,  # one worker per job: it owns the job's GPU
        "memory": spec.memory,
        "walltime": spec.walltime,
        "job_name": "glacierwatch-worker",
        "job_extra_directives": [f"--gres=gpu:{spec.gpus_per_worker}"] if gpu else [],
        "worker_extra_args": ["--resources", f"{GPU_RESOURCE}={spec.gpus_per_worker}"] if gpu else [],
        "local_directory": spec.local_directory,
        "log_directory": spec.log_directory,
        "job_script_prologue": list(spec.job_script_prologue),
        "interface": spec.interface,
        "python": spec.python,
    }


def slurm_job_script(spec: SlurmSpec, scheduler_address: str = PLACEHOLDER_SCHEDULER) -> str:
    """The sbatch script each worker job runs, built without starting a scheduler.

    `SLURMCluster(...).job_script()` would start a scheduler first; its job class builds the
    same script from the same keywords, so this is what `start_cluster` will submit.
    """
    from dask_jobqueue.slurm import SLURMJob

    return SLURMJob(scheduler=scheduler_address, name="dummy-name", **_slurm_job_kwargs(spec)).job_script()


def _slurm_cluster(spec: SlurmSpec):
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as err:
        raise ClusterError('cluster.kind "slurm" needs dask-jobqueue: pip install "glacierwatch[slurm]"') from err
    cluster = SLURMCluster(**_slurm_job_kwargs(spec), scheduler_options={"dashboard_address": spec.dashboard_address})
    if spec.adaptive:
        cluster.adapt(minimum_jobs=spec.minimum_jobs, maximum_jobs=spec.maximum_jobs)
    else:
        cluster.scale(jobs=spec.jobs)
    return cluster


# ---------------------------------------------------------------- Kubernetes

def _drop_none(value):
    # make_cluster_spec leaves env/resources as null; the operator iterates env, so omit them.
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _use_dask_cli(container: dict) -> None:
    # The image's ENTRYPOINT is `glacierwatch`, so Dask pods name their command explicitly;
    # `dask scheduler` / `dask worker` replace the removed dask-scheduler / dask-worker scripts.
    args = container["args"]
    first = args[0].removeprefix("dask-")
    container["command"] = ["dask"]
    container["args"] = [first, *args[1:]]


def _limits(cpu: str, memory: str, gpus: int = 0) -> dict[str, dict[str, str]]:
    limits = {"cpu": cpu, "memory": memory} | ({K8S_GPU: str(gpus)} if gpus else {})
    return {"requests": dict(limits), "limits": limits}


def kubernetes_manifests(spec: KubernetesSpec) -> tuple[dict, dict | None]:
    """The DaskCluster (scheduler + CPU worker group) and the GPU DaskWorkerGroup, as dicts.

    Built with dask-kubernetes' `make_cluster_spec` / `make_worker_spec`; `deploy/kubernetes/
    daskcluster.yaml` holds exactly these for the default spec.
    """
    from dask_kubernetes.operator import make_cluster_spec, make_worker_spec

    cluster = make_cluster_spec(
        name=spec.name,
        image=spec.image,
        n_workers=spec.cpu_workers,
        resources=_limits(spec.cpu, spec.memory),
        worker_command="dask-worker --nthreads " + spec.cpu,
    )
    cluster = _drop_none(cluster)
    _use_dask_cli(cluster["spec"]["worker"]["spec"]["containers"][0])
    scheduler = cluster["spec"]["scheduler"]["spec"]["containers"][0]
    _use_dask_cli(scheduler)
    scheduler["resources"] = _limits(spec.scheduler_cpu, spec.scheduler_memory)  # it schedules, not computes
    if spec.namespace:
        cluster["metadata"]["namespace"] = spec.namespace
    if not spec.gpu_workers:
        return cluster, None

    worker = make_worker_spec(
        image=spec.image,
        n_workers=spec.gpu_workers,
        resources=_limits(spec.gpu_cpu, spec.gpu_memory, gpus=1),
        worker_command=["dask-worker", "--nthreads", spec.gpu_cpu, "--resources", f"{GPU_RESOURCE}=1"],
    )
    worker = _drop_none(worker)
    _use_dask_cli(worker["spec"]["containers"][0])
    # GPU nodes are usually tainted so that only pods asking for GPUs land there.
    worker["spec"]["tolerations"] = [{"key": K8S_GPU, "operator": "Exists", "effect": "NoSchedule"}]
    if spec.gpu_node_selector:
        worker["spec"]["nodeSelector"] = dict(spec.gpu_node_selector)
    group = {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskWorkerGroup",
        "metadata": {"name": f"{spec.name}-gpu"} | ({"namespace": spec.namespace} if spec.namespace else {}),
        "spec": {"cluster": spec.name, "worker": worker},
    }
    return cluster, group


def _kube_cluster(spec: KubernetesSpec, stack: ExitStack):
    try:
        from dask_kubernetes.operator import KubeCluster
    except ImportError as err:
        raise ClusterError('cluster.kind "kubernetes" needs dask-kubernetes: pip install "glacierwatch[kubernetes]"') from err
    manifest, gpu_group = kubernetes_manifests(spec)
    cluster = stack.enter_context(KubeCluster(
        custom_cluster_spec=manifest, namespace=spec.namespace, resource_timeout=int(spec.start_timeout_s)
    ))
    if gpu_group is not None:
        cluster.add_worker_group("gpu", custom_spec=gpu_group["spec"]["worker"])
        stack.callback(cluster.delete_worker_group, "gpu")  # LIFO: runs before the cluster closes
    return cluster


# ---------------------------------------------------------------- entry point

def _wait_for_workers(client, n: int, timeout: float, what: str) -> None:
    """Wait up to `timeout` s for `n` workers: a cluster that never gets any must not hang the run."""
    try:
        client.wait_for_workers(n, timeout=timeout)
    except (TimeoutError, OSError) as err:
        raise ClusterError(
            f"{what}: no worker connected within {timeout:g} s ({type(err).__name__}): check the queue or pods "
            "(squeue / kubectl get pods), raise the start_timeout_s, or use --cluster local"
        ) from None


def worker_resources(client) -> dict[str, dict[str, float]]:
    """Resources each connected worker offers, by worker name."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return {str(w.get("name", addr)): dict(w.get("resources") or {}) for addr, w in workers.items()}


def task_resources(client) -> dict[str, float] | None:
    """`{"GPU": 1}` when some worker has a GPU, else None (a resource no worker has would wait forever)."""
    has_gpu = any(r.get(GPU_RESOURCE) for r in worker_resources(client).values())
    return {GPU_RESOURCE: 1} if has_gpu else None


def _coerce(spec: ClusterSpec | Mapping[str, Any] | Any) -> ClusterSpec:
    if isinstance(spec, ClusterSpec):
        return spec
    try:
        if isinstance(spec, Mapping):
            return ClusterSpec(**spec)
        return ClusterSpec.from_config(spec)
    except (ValueError, TypeError) as err:
        kind = spec.get("kind") if isinstance(spec, Mapping) else getattr(spec, "kind", None)
        if kind is not None and kind not in KINDS:
            raise ClusterError(_unknown_kind(kind)) from None
        first = err.errors()[0] if hasattr(err, "errors") else None
        where = "cluster." + ".".join(str(k) for k in first["loc"]) if first and first["loc"] else "cluster"
        raise ClusterError(f"{where}: {first['msg'] if first else err}: fix the cluster section of the config") from None


def _unknown_kind(kind: str) -> str:
    return (
        f"--cluster / cluster.kind {kind!r} is not a cluster: use local, slurm, kubernetes or a running "
        "scheduler's address (tcp://host:8786)"
    )


def _check_address(address: str, timeout: float) -> None:
    """The address parses and, unless in-process, a Dask scheduler there answers within `timeout` s."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "tcp", address
    if scheme not in ADDRESS_SCHEMES:
        raise ClusterError(f"scheduler address {redact(address)}: unknown scheme {scheme!r}; use tcp://host:8786")
    if scheme in ("inproc", "ucx"):
        return
    host, colon, port = rest.rstrip("/").rpartition(":")
    if not colon or not port.isdigit() or not host or "@" in host or "?" in rest:
        if not sep and ":" not in address:  # a bare word: most likely a mistyped kind
            raise ClusterError(_unknown_kind(address))
        raise ClusterError(f"scheduler address {redact(address)} is not host:port: use e.g. tcp://scheduler:8786")
    try:
        reply = _identity(f"{scheme}://{rest}", timeout)
        if not isinstance(reply, dict) or reply.get("type") != "Scheduler":
            raise ValueError("it answered, but not as a Dask scheduler")
    except Exception as err:  # noqa: BLE001 - refused, timed out, or something else listening: one line
        if isinstance(err, TimeoutError | asyncio.TimeoutError):
            why = "timed out"
        elif isinstance(err, OSError):
            why = err.strerror or "connection failed"
        else:
            why = "something answered there, but not a Dask scheduler"
        raise ClusterError(
            f"no Dask scheduler answered at {redact(address)} within {timeout:g} s ({why}): "
            "start one (`dask scheduler`), check the address, or use --cluster local"
        ) from None


def _identity(address: str, timeout: float) -> dict:
    """The scheduler's reply to Dask's `identity` call: a TCP port that merely accepts is not enough
    (a firewall or proxy may accept and never answer). Runs its own event loop in a thread, so it
    also works where one is running (notebooks)."""
    from concurrent.futures import ThreadPoolExecutor

    from distributed.comm import connect

    async def ask() -> dict:
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    async def bounded() -> dict:
        return await asyncio.wait_for(ask(), timeout)

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, bounded()).result()


def _kube_config_found() -> str | None:
    """Where Kubernetes credentials would come from: in-cluster service account or a kubeconfig file."""
    if os.environ.get("KUBERNETES_SERVICE_HOST") and Path("/var/run/secrets/kubernetes.io/serviceaccount/token").is_file():
        return "in-cluster service account"
    configs = os.environ.get("KUBECONFIG")
    paths = [Path(p).expanduser() for p in configs.split(os.pathsep) if p] if configs else [Path("~/.kube/config").expanduser()]
    found = [p for p in paths if p.is_file()]
    return str(found[0]) if found else None


def check_cluster(spec: ClusterSpec | Mapping[str, Any] | Any = None, *, timeout: float | None = None) -> ClusterSpec:
    """The cluster `spec` describes can be started from here, checked in seconds: else ClusterError.

    Run before anything is written (the run's pre-flight), and again by `start_cluster`: an
    unknown kind, SLURM without ``sbatch`` (dask-jobqueue would retry the submission for ever),
    Kubernetes without credentials or dask-kubernetes, and an address that does not answer
    within `timeout` seconds (default CONNECT_TIMEOUT_S) each fail with one line that says what to do.
    """
    spec = _coerce(spec if spec is not None else ClusterSpec())
    if spec.kind == "address":
        _check_address(spec.address, timeout or CONNECT_TIMEOUT_S)
    elif spec.kind == "slurm":
        if importlib.util.find_spec("dask_jobqueue") is None:
            raise ClusterError('cluster.kind "slurm" needs dask-jobqueue: pip install "glacierwatch[slurm]"')
        if shutil.which("sbatch") is None:
            raise ClusterError(
                'cluster.kind "slurm": sbatch is not on PATH on this machine: run glacierwatch on a SLURM login '
                "node (where sbatch works), or use --cluster local"
            )
    elif spec.kind == "kubernetes":
        if importlib.util.find_spec("dask_kubernetes") is None:
            raise ClusterError('cluster.kind "kubernetes" needs dask-kubernetes: pip install "glacierwatch[kubernetes]"')
        if _kube_config_found() is None:
            raise ClusterError(
                'cluster.kind "kubernetes": no Kubernetes credentials here (no $KUBECONFIG file, no ~/.kube/config, '
                "not inside a pod with a service account): set KUBECONFIG, run from a machine that can use kubectl, "
                "or use --cluster local"
            )
    return spec


def _started(what: str, start):
    """`start()`'s result, or ClusterError naming `what` when it raises."""
    try:
        return start()
    except ClusterError:
        raise
    except Exception as err:  # noqa: BLE001 - any start-up failure of a backend is one line to the user
        raise ClusterError(redact(f"{what} could not be started ({type(err).__name__}: {err})")) from None


@contextmanager
def start_cluster(spec: ClusterSpec | Mapping[str, Any] | Any = None, *, console: Console | None = None) -> Iterator:
    """A `distributed.Client` on the cluster `spec` describes; what was started is closed on exit.

    `spec`: a `ClusterSpec`, a plain dict of one, or `pipeline.config.Cluster`; None = local.
    """
    from distributed import Client

    spec = check_cluster(spec)
    console = console or Console(stderr=True)
    with ExitStack() as stack:
        if spec.kind == "address":
            try:
                client = stack.enter_context(Client(spec.address, timeout=f"{CONNECT_TIMEOUT_S}s"))
            except (OSError, TimeoutError) as err:
                raise ClusterError(
                    f"no Dask scheduler answered at {redact(spec.address)} ({type(err).__name__}): start one "
                    "(`dask scheduler`), check the address, or use --cluster local"
                ) from None
            where = f"scheduler at {redact(spec.address)}"
        elif spec.kind == "local":
            plan = plan_local(spec.local)
            # Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which makes glibc hand
            # torch's large activation buffers back to the OS after every block and fault them in
            # again: inference ran 2.3x slower under it (tests/bench/bench_inference.py). Workers
            # here hold one tile at a time, so the default trim threshold is safe.
            stack.enter_context(dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}))
            cluster = stack.enter_context(_started("local Dask cluster", lambda: _local_cluster(spec.local, plan)))
            client = stack.enter_context(Client(cluster))
            _wait_for_workers(client, plan.workers, 60.0, "local Dask workers")
            gpus = f"{len(plan.gpu_devices)} with a GPU" if plan.gpu_devices else "no GPU: inference runs on CPU threads"
            where = (
                f"local cluster: {plan.workers} workers x {plan.threads_per_worker} threads, "
                f"{dask.utils.format_bytes(plan.memory_per_worker)} each, {gpus}"
            )
        elif spec.kind == "slurm":
            cluster = stack.enter_context(_started("SLURM cluster", lambda: _slurm_cluster(spec.slurm)))
            client = stack.enter_context(Client(cluster))
            _wait_for_workers(client, 1, spec.slurm.start_timeout_s, f"a SLURM worker job (partition {spec.slurm.partition})")
            s = spec.slurm
            jobs = f"adaptive {s.minimum_jobs}-{s.maximum_jobs} jobs" if s.adaptive else f"{s.jobs} jobs"
            where = f"SLURM partition {s.partition}: {jobs} of {s.cores} cores, {s.memory}, {s.gpus_per_worker} GPU"
        else:
            cluster = _started("Kubernetes DaskCluster", lambda: _kube_cluster(spec.kubernetes, stack))
            client = stack.enter_context(Client(cluster))
            _wait_for_workers(client, 1, spec.kubernetes.start_timeout_s, "a Kubernetes worker pod")
            k = spec.kubernetes
            where = f"Kubernetes DaskCluster {k.name}: {k.cpu_workers} CPU + {k.gpu_workers} GPU workers ({k.image})"
        console.print(f"[bold]Dask[/] {escape(where)}", markup=True, highlight=False)
        hint = "" if importlib.util.find_spec("bokeh") else "  (pip install bokeh to see it)"
        console.print(f"[bold]Dask dashboard:[/] {escape(client.dashboard_link + hint)}", markup=True, highlight=False, soft_wrap=True)
        yield client
