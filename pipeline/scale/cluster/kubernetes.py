"""Dask workers as Kubernetes pods (dask-kubernetes operator): the manifests and starting them.

`kubernetes_manifests` builds the DaskCluster and the GPU DaskWorkerGroup without starting
anything (`deploy/kubernetes/daskcluster.yaml` holds exactly these); `kube_cluster` applies
them at run time; `kube_config_found` says whether there are credentials to do so.
"""

from __future__ import annotations

import os
import secrets
from contextlib import ExitStack
from pathlib import Path

from pipeline.scale.cluster.allocator import remote_allocator_environ
from pipeline.scale.cluster.specs import GPU_RESOURCE, ClusterError, KubernetesSpec, kubernetes_cpu, worker_environment

K8S_GPU = "nvidia.com/gpu"
RUN_IDLE_TIMEOUT_S = 3600
"""A run's own DaskCluster is deleted by the operator after this long without work (a run killed
before it could delete it would otherwise hold its GPUs for good)."""


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


def _threads(cpu: str) -> int:
    """Worker threads for a pod's CPU quantity: its whole cores, at least one ("500m": 1)."""
    return max(1, int(kubernetes_cpu(cpu)))


def _limits(cpu: str, memory: str, gpus: int = 0) -> dict[str, dict[str, str]]:
    limits = {"cpu": cpu, "memory": memory} | ({K8S_GPU: str(gpus)} if gpus else {})
    return {"requests": dict(limits), "limits": limits}


def _reach(pod: dict, spec: KubernetesSpec) -> None:
    """What a Dask pod needs to reach the data: its ServiceAccount (workload identity), a Secret as its
    environment (credentials) and the shared volume, where `spec` names them. Workers read the scenes
    and write the store themselves: credentials on the driver pod alone had every worker's read refused."""
    if spec.service_account:
        pod["serviceAccountName"] = spec.service_account
    for container in pod["containers"]:
        if spec.env_from_secret:
            container["envFrom"] = [{"secretRef": {"name": spec.env_from_secret}}]
        if spec.volume_claim:
            container["volumeMounts"] = [{"name": "data", "mountPath": spec.mount_path}]
    if spec.volume_claim:
        pod["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": spec.volume_claim}}]


def kubernetes_manifests(spec: KubernetesSpec) -> tuple[dict, dict | None]:
    """The DaskCluster (scheduler + CPU worker group) and the GPU DaskWorkerGroup, as dicts.

    Built with dask-kubernetes' `make_cluster_spec` / `make_worker_spec`; `deploy/kubernetes/
    daskcluster.yaml` holds exactly these for the default spec.
    """
    from dask_kubernetes.operator import make_cluster_spec, make_worker_spec

    env = worker_environment(remote_allocator_environ(spec.allocator))  # pods start their workers: WORKER_CONFIG in the env
    cluster = make_cluster_spec(
        name=spec.name,
        image=spec.image,
        n_workers=spec.cpu_workers,
        resources=_limits(spec.cpu, spec.memory),
        env=env,
        worker_command=f"dask-worker --nthreads {_threads(spec.cpu)}",
    )
    cluster = _drop_none(cluster)
    _use_dask_cli(cluster["spec"]["worker"]["spec"]["containers"][0])
    scheduler = cluster["spec"]["scheduler"]["spec"]["containers"][0]
    _use_dask_cli(scheduler)
    scheduler["resources"] = _limits(spec.scheduler_cpu, spec.scheduler_memory)  # it schedules, not computes
    if spec.namespace:
        cluster["metadata"]["namespace"] = spec.namespace
    for pod in (cluster["spec"]["worker"]["spec"], cluster["spec"]["scheduler"]["spec"]):
        _reach(pod, spec)
    if not spec.gpu_workers:
        return cluster, None

    worker = make_worker_spec(
        image=spec.image,
        n_workers=spec.gpu_workers,
        resources=_limits(spec.gpu_cpu, spec.gpu_memory, gpus=1),
        env=env,
        worker_command=["dask-worker", "--nthreads", str(_threads(spec.gpu_cpu)), "--resources", f"{GPU_RESOURCE}=1"],
    )
    worker = _drop_none(worker)
    _use_dask_cli(worker["spec"]["containers"][0])
    # GPU nodes are usually tainted so that only pods asking for GPUs land there.
    worker["spec"]["tolerations"] = [{"key": K8S_GPU, "operator": "Exists", "effect": "NoSchedule"}]
    if spec.gpu_node_selector:
        worker["spec"]["nodeSelector"] = dict(spec.gpu_node_selector)
    _reach(worker["spec"], spec)
    group = {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskWorkerGroup",
        "metadata": {"name": f"{spec.name}-gpu"} | ({"namespace": spec.namespace} if spec.namespace else {}),
        "spec": {"cluster": spec.name, "worker": worker},
    }
    return cluster, group


def kube_cluster(spec: KubernetesSpec, stack: ExitStack):
    """A started `KubeCluster` plus its GPU worker group, both closed by `stack`."""
    try:
        from dask_kubernetes.operator import KubeCluster
    except ImportError as err:
        raise ClusterError('cluster.kind "kubernetes" needs dask-kubernetes: pip install "glacierwatch[kubernetes]"') from err
    # A cluster of its own: the standing one (deploy/kubernetes/daskcluster.yaml, named `spec.name`) and other
    # runs (one per UTM zone) are left alone, and an orphan of a killed run goes once idle for RUN_IDLE_TIMEOUT_S.
    own = spec.model_copy(update={"name": f"{spec.name}-{secrets.token_hex(3)}"})
    manifest, gpu_group = kubernetes_manifests(own)
    manifest["spec"]["idleTimeout"] = RUN_IDLE_TIMEOUT_S
    cluster = stack.enter_context(KubeCluster(
        custom_cluster_spec=manifest, namespace=spec.namespace, resource_timeout=int(spec.start_timeout_s)
    ))
    if gpu_group is not None:
        cluster.add_worker_group("gpu", custom_spec=gpu_group["spec"]["worker"])
        stack.callback(cluster.delete_worker_group, "gpu")  # LIFO: runs before the cluster closes
    return cluster


def kube_config_found() -> str | None:
    """Where Kubernetes credentials would come from: in-cluster service account or a kubeconfig file."""
    if os.environ.get("KUBERNETES_SERVICE_HOST") and Path("/var/run/secrets/kubernetes.io/serviceaccount/token").is_file():
        return "in-cluster service account"
    configs = os.environ.get("KUBECONFIG")
    paths = [Path(p).expanduser() for p in configs.split(os.pathsep) if p] if configs else [Path("~/.kube/config").expanduser()]
    found = [p for p in paths if p.is_file()]
    return str(found[0]) if found else None
