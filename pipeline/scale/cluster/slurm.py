"""Dask workers as SLURM jobs (dask-jobqueue): one worker and one GPU per job.

`slurm_job_script` builds the sbatch script without starting anything (the tests compare it
with `deploy/slurm/`); `slurm_cluster` submits the same jobs at run time, after `check_submission`
has asked SLURM (`sbatch --test-only`) whether it would take them.

Settings, in order: the glacierwatch config's `cluster.slurm` keys, then dask-jobqueue's own
configuration (`~/.config/dask/jobqueue.yaml`, where a site keeps its partition, account and
prologue) where it differs from dask-jobqueue's defaults, then `SlurmSpec`'s defaults
(`effective_slurm_spec`).

Walltime: every job ends at its walltime, and dask-jobqueue submits no new one for a fixed-size
cluster (dask/dask-jobqueue#122). So each worker retires itself before its walltime (`--lifetime`,
staggered so the jobs do not all leave at once; its tasks move to the others) and the cluster is
always adaptive, at a fixed size when `adaptive` is off: adaptive scaling submits a new job for
each that left. A run longer than a walltime goes on with fresh jobs.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Mapping
from typing import Any

import dask
from pydantic import ValidationError

from pipeline.scale.cluster.allocator import remote_allocator_environ
from pipeline.scale.cluster.specs import GPU_RESOURCE, ClusterError, SlurmSpec, walltime_seconds, worker_environment

# dask-jobqueue fills the real address in at submit time; job scripts shown before that use this.
PLACEHOLDER_SCHEDULER = "tcp://<insert-scheduler-address-here>:8786"
# Field of SlurmSpec -> key of dask-jobqueue's jobqueue.slurm configuration.
SITE_KEYS = {"partition": "queue", "account": "account", "cores": "cores", "memory": "memory", "walltime": "walltime",
             "local_directory": "local-directory", "log_directory": "log-directory", "interface": "interface",
             "python": "python", "job_script_prologue": "job-script-prologue", "job_extra_directives": "job-extra-directives"}
# How long before its walltime a worker retires (at most), and the spread of those retirements.
RETIRE_MARGIN_S = 600.0
MIN_RETIRE_MARGIN_S = 120.0


def site_slurm_settings() -> dict[str, Any]:
    """What dask-jobqueue's configuration sets for SLURM beyond dask-jobqueue's own defaults:
    the keys a site's ~/.config/dask/jobqueue.yaml (or DASK_CONFIG) gives. Empty without dask-jobqueue."""
    try:
        from importlib.resources import files

        import dask_jobqueue  # noqa: F401 - loads its defaults into dask.config
        import yaml

        shipped = yaml.safe_load(files("dask_jobqueue").joinpath("jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    except ImportError:
        return {}
    current = dask.config.get("jobqueue.slurm", default={}) or {}
    return {k: v for k, v in current.items() if v is not None and v != shipped.get(k)}


def effective_slurm_spec(spec: SlurmSpec, site: Mapping[str, Any] | None = None) -> SlurmSpec:
    """`spec` with each key the glacierwatch config left out taken from `site` (`site_slurm_settings`).

    The GPU lines (``--gres``, ``--resources``) stay `gpus_per_worker`'s: a site file copied from
    deploy/slurm/ carries them, and a CPU-only partition must not get them."""
    site = site_slurm_settings() if site is None else site
    given = spec.model_dump(exclude_unset=True)
    taken = {field: site[key] for field, key in SITE_KEYS.items() if field not in given and key in site}
    if "job_extra_directives" in taken:
        taken["job_extra_directives"] = [d for d in taken["job_extra_directives"] if not str(d).startswith("--gres")]
    try:
        return SlurmSpec(**given, **taken)
    except ValidationError as err:
        first = err.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        where = f"jobqueue.slurm.{SITE_KEYS[field]} (dask-jobqueue's configuration)" if field in taken else f"cluster.slurm.{field}"
        raise ClusterError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None


def _lifetime_args(walltime: str) -> list[str]:
    """``--lifetime`` and ``--lifetime-stagger`` so that the last worker retires a margin before `walltime`: a tenth
    of it, at least MIN_RETIRE_MARGIN_S (the worker's clock starts after its prologue and imports) and at most
    RETIRE_MARGIN_S; the stagger (half the margin) spreads the retirements before that."""
    seconds = walltime_seconds(walltime)
    margin = min(RETIRE_MARGIN_S, max(MIN_RETIRE_MARGIN_S, seconds / 10))
    stagger = margin / 2
    return ["--lifetime", f"{int(max(seconds - margin - stagger, stagger))}s", "--lifetime-stagger", f"{int(stagger)}s"]


def _slurm_job_kwargs(spec: SlurmSpec) -> dict[str, Any]:
    gpu = spec.gpus_per_worker > 0
    # the job's worker is started by SLURM, not by us: it takes WORKER_CONFIG from the environment. These
    # variables are ours: a site prologue copied from deploy/slurm/ exports them too, without the allocator's
    # preload, and after ours it would undo cluster.slurm.allocator
    ours = worker_environment(remote_allocator_environ(spec.allocator))
    theirs = [line for line in spec.job_script_prologue if not any(line.startswith(f"export {k}=") for k in ours)]
    return {
        "queue": spec.partition,
        "account": spec.account,
        "cores": spec.cores,
        "processes": 1,  # one worker per job: it owns the job's GPU
        "memory": spec.memory,
        "walltime": spec.walltime,
        "job_name": "glacierwatch-worker",
        "job_extra_directives": list(dict.fromkeys([*([f"--gres=gpu:{spec.gpus_per_worker}"] if gpu else []), *spec.job_extra_directives])),
        "worker_extra_args": [*(["--resources", f"{GPU_RESOURCE}={spec.gpus_per_worker}"] if gpu else []),
                              *_lifetime_args(spec.walltime)],
        "local_directory": spec.local_directory,
        "log_directory": spec.log_directory,
        "job_script_prologue": list(dict.fromkeys([*(f"export {k}={v}" for k, v in ours.items()), *theirs])),
        "interface": spec.interface,
        "python": spec.python,
    }


def slurm_job_script(spec: SlurmSpec, scheduler_address: str = PLACEHOLDER_SCHEDULER, site: Mapping[str, Any] | None = None) -> str:
    """The sbatch script each worker job runs, built without starting a scheduler.

    `SLURMCluster(...).job_script()` would start a scheduler first; its job class builds the
    same script from the same keywords, so this is what `start_cluster` will submit.
    """
    from dask_jobqueue.slurm import SLURMJob

    kwargs = _slurm_job_kwargs(effective_slurm_spec(spec, site))
    return SLURMJob(scheduler=scheduler_address, name="dummy-name", **kwargs).job_script()


def check_submission(spec: SlurmSpec) -> None:
    """SLURM would take the worker jobs (`sbatch --test-only`: validates partition, account, gres, time
    and memory, submits nothing), else ClusterError with SLURM's own words. A refused job otherwise
    failed in the background and the run waited `start_timeout_s` for a worker that never came."""
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="glacierwatch-worker-") as script:
        script.write(slurm_job_script(spec))
        script.flush()
        try:
            done = subprocess.run(["sbatch", "--test-only", script.name], capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ClusterError(f"sbatch --test-only could not be run ({type(err).__name__}: {err})") from None
    if done.returncode != 0:
        said = " ".join(re.sub(r"^sbatch: (error: )?", "", line) for line in (done.stderr or done.stdout).splitlines() if line.strip())
        s = effective_slurm_spec(spec)
        raise ClusterError(
            f"SLURM refuses the worker job (partition {s.partition}, account {s.account or 'default'}, {s.cores} cores, "
            f"{s.memory}, {s.walltime}, {s.gpus_per_worker} GPU): {said or f'sbatch exit {done.returncode}'}; "
            "set cluster.slurm (partition, account, memory, walltime) or your jobqueue.yaml to what the site allows"
        )


def slurm_cluster(spec: SlurmSpec):
    """A started `SLURMCluster`: adaptive between the job bounds, or held at `spec.jobs` jobs (adaptive
    between that and itself, so a job that reached its walltime is replaced)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as err:
        raise ClusterError('cluster.kind "slurm" needs dask-jobqueue: pip install "glacierwatch[slurm]"') from err
    spec = effective_slurm_spec(spec)
    cluster = SLURMCluster(**_slurm_job_kwargs(spec), scheduler_options={"dashboard_address": spec.dashboard_address})
    if spec.adaptive:
        cluster.adapt(minimum_jobs=spec.minimum_jobs, maximum_jobs=spec.maximum_jobs)
    else:
        cluster.adapt(minimum_jobs=spec.jobs, maximum_jobs=spec.jobs)
    return cluster
