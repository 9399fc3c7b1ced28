"""Dask workers as SLURM jobs (dask-jobqueue): one worker and one GPU per job.

`slurm_job_script` builds the sbatch script without starting anything (the tests compare it
with `deploy/slurm/`); `slurm_cluster` submits the same jobs at run time.
"""

from __future__ import annotations

from typing import Any

from pipeline.scale.cluster.allocator import remote_allocator_environ
from pipeline.scale.cluster.specs import GPU_RESOURCE, ClusterError, SlurmSpec, worker_environment

# dask-jobqueue fills the real address in at submit time; job scripts shown before that use this.
PLACEHOLDER_SCHEDULER = "tcp://<insert-scheduler-address-here>:8786"


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
        # the job's worker is started by SLURM, not by us: it takes WORKER_CONFIG from the environment
        "job_script_prologue": [*(f"export {k}={v}" for k, v in worker_environment(remote_allocator_environ(spec.allocator)).items()),
                                *spec.job_script_prologue],
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


def slurm_cluster(spec: SlurmSpec):
    """A started `SLURMCluster`, scaled to `spec.jobs` jobs or adaptive between the job bounds."""
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
