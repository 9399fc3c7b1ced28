"""Where the Dask workers come from: this machine, a running scheduler, SLURM or Kubernetes.

`start_cluster(spec)` is the one entry point; it yields a `distributed.Client` and closes what it
started on exit. GPU workers carry the Dask resource `GPU=1` (one GPU per worker, never shared),
so inference asks for `resources=task_resources(client)` and preprocessing runs anywhere.

One module per concept: `specs` (the settings), `local`, `slurm` and `kubernetes` (the backends;
job script and manifests are plain functions checked against `deploy/` by the tests),
`resources` (what workers offer) and `start` (`check_cluster`, `start_cluster`). This package
re-exports their public names. Tests that patch the connect timeout patch
`pipeline.scale.cluster.start.CONNECT_TIMEOUT_S`, where it is read.
"""

from pipeline.scale.cluster.kubernetes import K8S_GPU, kube_cluster, kube_config_found, kubernetes_manifests
from pipeline.scale.cluster.local import LocalPlan, detect_gpus, local_cluster, plan_local
from pipeline.scale.cluster.resources import task_resources, wait_for_workers, worker_resources
from pipeline.scale.cluster.slurm import PLACEHOLDER_SCHEDULER, slurm_cluster, slurm_job_script
from pipeline.scale.cluster.specs import (
    GPU_RESOURCE,
    IMAGE,
    KINDS,
    ClusterError,
    ClusterSpec,
    KubernetesSpec,
    LocalSpec,
    SlurmSpec,
)
from pipeline.scale.cluster.start import ADDRESS_SCHEMES, CONNECT_TIMEOUT_S, check_cluster, start_cluster

__all__ = [
    "ADDRESS_SCHEMES",
    "CONNECT_TIMEOUT_S",
    "GPU_RESOURCE",
    "IMAGE",
    "K8S_GPU",
    "KINDS",
    "PLACEHOLDER_SCHEDULER",
    "ClusterError",
    "ClusterSpec",
    "KubernetesSpec",
    "LocalPlan",
    "LocalSpec",
    "SlurmSpec",
    "check_cluster",
    "detect_gpus",
    "kube_cluster",
    "kube_config_found",
    "kubernetes_manifests",
    "local_cluster",
    "plan_local",
    "slurm_cluster",
    "slurm_job_script",
    "start_cluster",
    "task_resources",
    "wait_for_workers",
    "worker_resources",
]
