"""Cluster set-up: generated SLURM/Kubernetes specs, the deploy/ files, and small local clusters."""

from __future__ import annotations

import io
import os
import re
import tomllib
from pathlib import Path

import dask
import pytest
import yaml
from rich.console import Console

from pipeline.scale.cluster import (
    IMAGE,
    ClusterError,
    ClusterSpec,
    KubernetesSpec,
    LocalSpec,
    SlurmSpec,
    check_cluster,
    kubernetes_manifests,
    plan_local,
    slurm_job_script,
    start_cluster,
    task_resources,
    worker_resources,
)
from pipeline.scale.cluster.allocator import remote_allocator_environ
from pipeline.scale.cluster.slurm import _slurm_job_kwargs
from pipeline.scale.cluster.specs import walltime_seconds, worker_environment

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200), out


# ---------------------------------------------------------------- SLURM


@pytest.fixture(autouse=True)
def _no_site_jobqueue_yaml(monkeypatch):
    """The tests' job scripts are SlurmSpec's alone: a developer's ~/.config/dask/jobqueue.yaml would reach them."""
    from pipeline.scale.cluster import slurm

    monkeypatch.setattr(slurm, "site_slurm_settings", lambda: {})

def test_slurm_job_script_asks_for_a_gpu_and_offers_it_to_dask():
    script = slurm_job_script(SlurmSpec(partition="gpu-a100", cores=12, memory="48GB", walltime="08:00:00"))
    assert "#SBATCH --gres=gpu:1" in script
    assert "#SBATCH -p gpu-a100" in script
    assert "#SBATCH --cpus-per-task=12" in script
    assert re.search(r"#SBATCH --mem=4\dG", script)
    assert "#SBATCH -t 08:00:00" in script
    assert "--resources GPU=1" in script
    assert "--nthreads 12" in script


def test_slurm_and_kubernetes_workers_run_without_the_profiler():
    """Workers the batch system starts take WORKER_CONFIG from their environment (CPython gh-106883)."""
    import os

    script = slurm_job_script(SlurmSpec(job_script_prologue=["module load cuda"]))
    export = "export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False"
    assert script.index(export) < script.index("module load cuda") < script.index("dask_worker")
    cluster, group = kubernetes_manifests(KubernetesSpec())
    for container in (cluster["spec"]["worker"]["spec"]["containers"][0], group["spec"]["worker"]["spec"]["containers"][0]):
        assert {"name": "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED", "value": "False"} in container["env"]
    # Dask itself reads the variable back as the setting
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "environ", {"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"})
        assert dask.config.collect_env()["distributed"]["worker"]["profile"]["enabled"] is False
    config = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    assert export in config["job-script-prologue"]
    inherit = f"export DASK_INTERNAL_INHERIT_CONFIG={worker_environment()['DASK_INTERNAL_INHERIT_CONFIG']}"
    assert inherit in script and inherit in config["job-script-prologue"]


def test_workers_started_elsewhere_take_the_worker_config_from_their_environment():
    """A `dask worker` started as a SLURM job or a pod starts it (with its nanny, as there) under
    `worker_environment()`: its worker runs without the profiler and without the nannies'
    MALLOC_TRIM_THRESHOLD_=65536 (the forward ran 2.3x slower under it); without that
    environment it has both."""
    import os
    import subprocess
    import sys

    from distributed import Client, LocalCluster

    def worker_settings(env: dict[str, str]) -> list:
        with LocalCluster(n_workers=0, protocol="tcp", dashboard_address=":0") as cluster, Client(cluster) as client:
            clean = {k: v for k, v in os.environ.items() if not k.startswith("DASK_") and k != "MALLOC_TRIM_THRESHOLD_"}
            worker = subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address, "--nthreads", "1",
                 "--no-dashboard"],
                env={**clean, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            try:
                client.wait_for_workers(1, timeout=60)
                return list(client.run(lambda dask_worker: (
                    os.environ.get("MALLOC_TRIM_THRESHOLD_"), "profile" in dask_worker.periodic_callbacks
                )).values())
            finally:
                worker.terminate()
                worker.wait(30)

    assert worker_settings({}) == [("65536", True)]  # dask's defaults: what the fix is for
    assert worker_settings(worker_environment()) == [(None, False)]


def test_workers_started_elsewhere_run_on_jemalloc_when_asked_and_restart_on_the_c_library(monkeypatch):
    """`cluster.slurm.allocator` / `cluster.kubernetes.allocator: jemalloc`: the job script and the
    pods carry it in the nannies' configuration, so a `dask worker` started from that environment
    (as SLURM and the pods start theirs) runs on jemalloc, and the restart before the statistics
    brings it back on the C library's, as a local cluster's. The default carries nothing."""
    import base64
    import json
    import os
    import subprocess
    import sys

    from distributed import Client, LocalCluster

    from pipeline.scale.cluster.allocator import find_jemalloc, remote_allocator_environ
    from pipeline.scale.cluster.memory import restart_worker_processes

    env = worker_environment(remote_allocator_environ("jemalloc"))
    spawned = json.loads(base64.b64decode(env["DASK_INTERNAL_INHERIT_CONFIG"]))["distributed"]["nanny"]["pre-spawn-environ"]
    assert spawned["LD_PRELOAD"] == "libjemalloc.so.2" and "dirty_decay_ms" in spawned["MALLOC_CONF"]
    assert f"export DASK_INTERNAL_INHERIT_CONFIG={env['DASK_INTERNAL_INHERIT_CONFIG']}" in slurm_job_script(
        SlurmSpec(allocator="jemalloc"))
    cluster, group = kubernetes_manifests(KubernetesSpec(allocator="jemalloc"))
    for container in (cluster["spec"]["worker"]["spec"]["containers"][0], group["spec"]["worker"]["spec"]["containers"][0]):
        assert {"name": "DASK_INTERNAL_INHERIT_CONFIG", "value": env["DASK_INTERNAL_INHERIT_CONFIG"]} in container["env"]
    assert worker_environment(remote_allocator_environ("system")) == worker_environment()
    if find_jemalloc() is None:
        pytest.skip("no libjemalloc on this machine: the worker's side is not tried")

    def allocator():
        with open("/proc/self/maps") as maps:
            return "jemalloc" in maps.read(), os.environ.get("LD_PRELOAD")

    monkeypatch.delenv("LD_PRELOAD", raising=False)
    with LocalCluster(n_workers=0, protocol="tcp", dashboard_address=":0") as local, Client(local) as client:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("DASK_") and k not in ("LD_PRELOAD", "MALLOC_CONF")}
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", local.scheduler_address, "--nthreads",
                                   "1", "--no-dashboard"], env={**clean, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client.wait_for_workers(1, timeout=60)
            assert list(client.run(allocator).values()) == [(True, "libjemalloc.so.2")]
            restart_worker_processes(client)
            assert list(client.run(allocator).values()) == [(False, None)]
        finally:
            worker.terminate()
            worker.wait(30)


def test_slurm_cpu_only_partition_has_no_gpu_directives():
    script = slurm_job_script(SlurmSpec(partition="cpu", gpus_per_worker=0))
    assert "gres" not in script and "--resources" not in script


def test_slurm_jobqueue_yaml_agrees_with_the_spec_defaults():
    config = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    spec = SlurmSpec()
    assert config["queue"] == spec.partition
    assert config["cores"] == spec.cores and config["memory"] == spec.memory and config["walltime"] == spec.walltime
    assert config["job-extra-directives"] == ["--gres=gpu:1"]
    assert config["worker-extra-args"] == _slurm_job_kwargs(spec)["worker_extra_args"]  # GPU resource and lifetime
    assert config["local-directory"] == spec.local_directory
    # dask-jobqueue reading only that file writes the same GPU lines as our spec does.
    from dask_jobqueue.slurm import SLURMJob

    with dask.config.set({f"jobqueue.slurm.{key}": value for key, value in config.items()}):
        script = SLURMJob(scheduler="tcp://127.0.0.1:8786", name="w").job_script()
    assert "#SBATCH --gres=gpu:1" in script and "--resources GPU=1" in script and "#SBATCH -p gpu" in script


def test_a_site_jobqueue_yaml_sets_what_the_glacierwatch_config_leaves_out():
    """The site's partition, memory, walltime and prologue (~/.config/dask/jobqueue.yaml) reach the job
    script unless cluster.slurm gives them; before, every key had a fixed value and the site's were
    ignored, so a site whose GPU partition is not called "gpu" could not run at all."""
    site = {"queue": "a100", "memory": "120GB", "walltime": "12:00:00", "account": "glaciers",
            "job-script-prologue": ["module load cuda/12.4"], "job-extra-directives": ["--gres=gpu:2", "--qos=long"]}
    script = slurm_job_script(SlurmSpec(), site=site)
    assert "#SBATCH -p a100" in script and "#SBATCH -A glaciers" in script and "#SBATCH -t 12:00:00" in script
    assert re.search(r"#SBATCH --mem=11\dG", script) and "module load cuda/12.4" in script
    assert "#SBATCH --qos=long" in script and "--gres=gpu:1" in script and "gpu:2" not in script  # the GPU line is ours
    # the site file's own copy of the worker environment (deploy/slurm/jobqueue.yaml's) never undoes ours
    deployed = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]["job-script-prologue"]
    script = slurm_job_script(SlurmSpec(allocator="jemalloc"), site={"job-script-prologue": deployed})
    exports = [ln for ln in script.splitlines() if ln.startswith("export DASK_INTERNAL_INHERIT_CONFIG=")]
    assert exports == [f"export DASK_INTERNAL_INHERIT_CONFIG={worker_environment(remote_allocator_environ('jemalloc'))['DASK_INTERNAL_INHERIT_CONFIG']}"]
    # the glacierwatch config wins where it gives a key
    script = slurm_job_script(SlurmSpec(partition="h100", walltime="2-00:00:00"), site=site)
    assert "#SBATCH -p h100" in script and "#SBATCH -t 2-00:00:00" in script and "#SBATCH -A glaciers" in script
    with pytest.raises(ClusterError, match=r"jobqueue.slurm.walltime \(dask-jobqueue's configuration\): walltime '4h'"):
        slurm_job_script(SlurmSpec(), site={"walltime": "4h"})


def test_slurm_workers_retire_before_their_walltime_and_are_replaced():
    """dask-jobqueue submits no new job when one reaches its walltime (dask/dask-jobqueue#122): a run
    longer than the walltime lost every worker at once and waited for ever."""
    # the last retirement a margin before the walltime: 10 min of 4 h; a tenth of 30 min; at least 2 min
    assert _slurm_job_kwargs(SlurmSpec(walltime="04:00:00"))["worker_extra_args"][-4:] == [
        "--lifetime", "13500s", "--lifetime-stagger", "300s"]
    assert _slurm_job_kwargs(SlurmSpec(walltime="30"))["worker_extra_args"][-4:] == [
        "--lifetime", "1530s", "--lifetime-stagger", "90s"]
    assert _slurm_job_kwargs(SlurmSpec(walltime="10"))["worker_extra_args"][-4:] == [
        "--lifetime", "420s", "--lifetime-stagger", "60s"]
    assert walltime_seconds("1-12:30") == 131400 and walltime_seconds("90:30") == 5430
    with pytest.raises(ValueError, match="is not a SLURM time"):
        SlurmSpec(walltime="4 hours")
    script = slurm_job_script(SlurmSpec())
    assert "--local-directory ${TMPDIR:-/tmp}" in script  # an unset TMPDIR swallowed the next argument


def test_a_worker_job_slurm_refuses_is_one_line_before_anything_starts(tmp_path, monkeypatch):
    """A refused sbatch failed in the background: the run waited an hour for a worker, then said
    "internal error (AssertionError: Status.created)". `sbatch --test-only` asks SLURM first."""
    calls = tmp_path / "calls"
    sbatch = tmp_path / "sbatch"
    sbatch.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "sbatch: error: invalid partition specified: gpu" >&2\n'
                      "echo 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2\nexit 1\n")
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(ClusterError, match=r"SLURM refuses the worker job \(partition gpu, .*\): invalid partition "
                                           r"specified: gpu Batch job submission failed: .*set cluster.slurm"):
        check_cluster({"kind": "slurm"})
    assert calls.read_text().startswith("--test-only ")


def test_scrontab_runs_the_update_every_october():
    lines = [ln for ln in (DEPLOY / "slurm" / "scrontab").read_text().splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == 1
    minute, hour, day, month, weekday, command = lines[0].split(maxsplit=5)
    assert month == "10" and weekday == "*"
    assert "glacierwatch update" in command and "--year $(date +\\%Y)" in command
    assert "--out glacierwatch-out" in command and "--cluster slurm" in command


def test_cluster_spec_reads_the_config_cluster_section():
    from pipeline.config import Cluster

    spec = ClusterSpec.from_config(Cluster(kind="slurm", workers=6), {"slurm": {"partition": "a100"}})
    assert spec.slurm.jobs == 6 and spec.slurm.partition == "a100"
    spec = ClusterSpec.from_config(Cluster(kind="kubernetes", workers=3))
    assert spec.kubernetes.gpu_workers == 3
    # the config's own sections: before, cluster.slurm was "unknown key" and nothing passed them on
    from pipeline.config import ConfigError, load_config

    cfg = load_config(cluster={"kind": "slurm", "workers": 8, "slurm": {"partition": "mygpu", "walltime": "12:00:00"}})
    spec = ClusterSpec.from_config(cfg.cluster)
    assert (spec.slurm.partition, spec.slurm.walltime, spec.slurm.jobs) == ("mygpu", "12:00:00", 8)
    assert spec.slurm.model_fields_set == {"partition", "walltime", "jobs"}  # the rest may come from jobqueue.yaml
    assert cfg.digest() == load_config().digest()  # where the workers run is not provenance
    # and so for the config's Cluster as the run passes it on (a ClusterSpec itself: it kept `workers` back)
    from pipeline.scale.cluster.start import check_cluster

    assert check_cluster(load_config(cluster={"workers": 1}).cluster).local.workers == 1
    assert check_cluster(load_config(cluster={"workers": 1, "local": {"workers": 3}}).cluster).local.workers == 3
    with pytest.raises(ConfigError, match="cluster.slurm.memory: .*'lots' is not an amount of memory"):
        load_config(cluster={"kind": "slurm", "slurm": {"memory": "lots"}})
    with pytest.raises(ConfigError, match="cluster.kubernetes.cpu: .*'five' is not a Kubernetes quantity"):
        load_config(cluster={"kind": "kubernetes", "kubernetes": {"cpu": "five"}})
    with pytest.raises(ConfigError, match="cluster.address is given but cluster.kind is 'slurm'"):
        load_config(cluster={"kind": "slurm", "address": "tcp://scheduler:8786"})
    with pytest.raises(ValueError, match="needs cluster.address"):
        ClusterSpec(kind="address")


# ---------------------------------------------------------------- Kubernetes

def test_kubernetes_gpu_worker_group_requests_gpus_and_offers_them_to_dask():
    cluster, group = kubernetes_manifests(KubernetesSpec(image="registry.example/gw:1", gpu_workers=5))
    worker = group["spec"]["worker"]
    container = worker["spec"]["containers"][0]
    assert group["kind"] == "DaskWorkerGroup" and group["spec"]["cluster"] == cluster["metadata"]["name"]
    assert worker["replicas"] == 5
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "--resources GPU=1" in " ".join(container["args"])
    assert container["image"] == "registry.example/gw:1"
    assert container["command"] == ["dask"] and container["args"][0] == "worker"
    # the CPU group and the scheduler run the same image, without GPUs
    for part in ("worker", "scheduler"):
        c = cluster["spec"][part]["spec"]["containers"][0]
        assert c["image"] == "registry.example/gw:1" and "nvidia.com/gpu" not in c["resources"]["limits"]


def test_kubernetes_daskcluster_yaml_is_what_the_code_builds():
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text()))
    assert docs == list(kubernetes_manifests(KubernetesSpec()))


def test_kubernetes_cronjob_runs_the_update_every_october_on_our_image():
    docs = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "cronjob.yaml").read_text())}
    cron = docs["CronJob"]
    assert cron["spec"]["schedule"] == "0 2 15 10 *"
    assert cron["spec"]["schedule"].split()[3] == "10"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == IMAGE
    assert "glacierwatch update" in " ".join(container["args"]) and "$(date +%Y)" in " ".join(container["args"])
    assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
    # the store and the outputs on the shared volume, on the cluster the run starts, credentials if given
    args = " ".join(container["args"])
    assert "--out /data/glacierwatch-out" in args and "--cluster kubernetes" in args
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "glacierwatch-data"}} in pod["volumes"]
    assert container["envFrom"] == [{"secretRef": {"name": "glacierwatch-credentials", "optional": True}}]
    assert "pods/log" in docs["Role"]["rules"][1]["resources"]  # the operator client reads a failed scheduler's log


def test_dask_pods_reach_the_shared_volume_and_the_credentials_the_run_has():
    """Workers read the scenes and write the store: the driver pod's volume and credentials alone left
    every worker's read refused (requester-pays) and its writes without a store."""
    spec = KubernetesSpec(service_account="gw-irsa", env_from_secret="gw-credentials", volume_claim="gw-data", mount_path="/mnt/gw")
    cluster, group = kubernetes_manifests(spec)
    for pod in (cluster["spec"]["worker"]["spec"], cluster["spec"]["scheduler"]["spec"], group["spec"]["worker"]["spec"]):
        assert pod["serviceAccountName"] == "gw-irsa"
        assert pod["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "gw-data"}}]
        assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "gw-credentials"}}]
        assert pod["containers"][0]["volumeMounts"] == [{"name": "data", "mountPath": "/mnt/gw"}]
    plain, _ = kubernetes_manifests(KubernetesSpec())
    assert "volumes" not in plain["spec"]["worker"]["spec"] and "serviceAccountName" not in plain["spec"]["worker"]["spec"]
    # a CPU quantity in millicores is a valid pod size and one worker thread
    cluster, _ = kubernetes_manifests(KubernetesSpec(cpu="500m"))
    assert cluster["spec"]["worker"]["spec"]["containers"][0]["args"][:3] == ["worker", "--nthreads", "1"]


def test_image_tag_follows_the_package_version_and_the_dockerfile_builds_it():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert IMAGE.endswith(f":{version}")
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile and 'ENTRYPOINT ["glacierwatch"]' in dockerfile
    assert f"-t {IMAGE}" in dockerfile
    assert IMAGE in (DEPLOY / "README.md").read_text()


# ---------------------------------------------------------------- local

def test_local_plan_splits_the_machine_one_worker_per_gpu():
    plan = plan_local(LocalSpec(), cores=16, memory=64 * 2**30, gpus=2)
    assert (plan.workers, plan.threads_per_worker, plan.gpu_devices) == (2, 8, ("0", "1"))
    assert plan.memory_per_worker == 32 * 2**30
    plan = plan_local(LocalSpec(), cores=8, memory=16 * 2**30, gpus=0)
    assert plan.workers * plan.threads_per_worker == 8 and plan.gpu_devices == ()


def test_local_cluster_sends_gpu_tasks_only_to_the_gpu_worker():
    # gpus=1 is forced: the resource bookkeeping is what is tested, not CUDA.
    console, out = _console()
    spec = {"kind": "local", "local": {"workers": 2, "gpus": 1, "dashboard_address": ":0"}}
    with start_cluster(spec, console=console) as client:
        assert worker_resources(client) == {"gpu-0": {"GPU": 1}, "cpu-1": {}}
        assert task_resources(client) == {"GPU": 1}

        def where():
            import os

            from distributed import get_worker

            return get_worker().name, os.environ["CUDA_VISIBLE_DEVICES"]

        futures = [client.submit(where, resources={"GPU": 1}, pure=False) for _ in range(8)]
        assert set(client.gather(futures)) == {("gpu-0", "0")}
        # no statistical profiler in the workers: sys._current_frames() can deadlock them (WORKER_CONFIG)
        profiling = client.run(lambda dask_worker: "profile" in dask_worker.periodic_callbacks)
        assert profiling == {address: False for address in profiling} and len(profiling) == 2
        dashboard = client.dashboard_link
    text = out.getvalue()
    assert "Dask dashboard:" in text and dashboard in text
    assert "1 with a GPU" in text


def test_local_cluster_without_gpus_offers_none_and_an_address_connects_to_it():
    console, out = _console()
    spec = {"kind": "local", "local": {"workers": 1, "dashboard_address": ":0"}}
    with start_cluster(spec, console=console) as local:
        if worker_resources(local)["cpu-0"]:
            pytest.skip("this machine has a GPU")  # covered by the GPU test above
        assert "no GPU" in out.getvalue()
        assert task_resources(local) is None
        # inference workers keep glibc's default trim threshold (dask's 65536 slowed torch 2.3x)
        trim = local.run(lambda: __import__("os").environ.get("MALLOC_TRIM_THRESHOLD_"))
        assert list(trim.values()) == [None]
        console2, out2 = _console()
        with start_cluster({"kind": "address", "address": local.scheduler.address}, console=console2) as remote:
            assert remote.submit(sum, [1, 2, 3]).result() == 6
            assert list(worker_resources(remote)) == ["cpu-0"]
        assert local.scheduler.address in out2.getvalue() and "Dask dashboard:" in out2.getvalue()


def test_a_scheduler_without_workers_that_can_run_glacierwatch_fails_in_time_naming_them(monkeypatch):
    """A scheduler the user started with no workers, or only workers from an environment without
    glacierwatch (their every task fails, and the scheduler drops them): the run waited for ever."""
    from distributed import LocalCluster

    import pipeline.scale.cluster.resources as resources
    import pipeline.scale.cluster.start as start

    monkeypatch.setattr(start, "ADDRESS_WORKERS_TIMEOUT_S", 2.0)
    console, out = _console()
    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as empty:
        with pytest.raises(ClusterError, match=r"no worker connected within 2 s .*start workers from glacierwatch's environment"):
            with start_cluster({"kind": "address", "address": empty.scheduler.address}, console=console):
                pass
    with LocalCluster(n_workers=2, processes=False, dashboard_address=":0") as two:
        with start_cluster({"kind": "address", "address": two.scheduler.address}, console=console) as client:
            assert resources.workers_without_glacierwatch(client) == {}  # workers of this environment can
            assert client.submit(sum, [1, 2]).result() == 3
        first = sorted(two.scheduler.workers)[0]
        monkeypatch.setattr(resources, "workers_without_glacierwatch",
                            lambda client: {first: "ModuleNotFoundError: No module named 'numpy'"})
        # one such worker is refused too: its process dies on the first task it is given
        with pytest.raises(ClusterError, match=rf"cannot import glacierwatch: {first} \(ModuleNotFoundError.*numpy"):
            with start_cluster({"kind": "address", "address": two.scheduler.address}, console=console):
                pass


def _slow_task(x: int) -> int:
    """Pickled by reference: a worker that cannot import this test module (nor glacierwatch) cannot run it."""
    import time

    time.sleep(0.25)
    return x


HIDE_GLACIERWATCH = """import sys
class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("catalog", "pipeline", "test_cluster", "tests"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _Hide())
"""


def test_a_worker_that_joins_later_without_glacierwatch_is_refused_and_a_good_one_kept(tmp_path):
    """A `dask worker` from another environment that joins the user's scheduler mid-run (an autoscaler,
    a late SLURM job): unchecked, it died on its first task with a bare ModuleNotFoundError deep in
    Dask, counting a failure against each task it was given (KilledWorker after three such workers).
    Now it is retired before it runs one, the console says which worker and why, and a worker of
    this environment that joins late is kept."""
    import subprocess
    import sys
    import time

    from distributed import LocalCluster

    foreign_env = tmp_path / "foreign"
    foreign_env.mkdir()
    (foreign_env / "sitecustomize.py").write_text(HIDE_GLACIERWATCH)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("DASK_")}
    env["PYTHONPATH"] = str(foreign_env)
    console, out = _console()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", dashboard_address=":0") as user:
        with start_cluster({"kind": "address", "address": user.scheduler_address}, console=console) as client:
            futures = client.map(_slow_task, range(24))  # queued: the scheduler offers some to whoever joins
            foreign = subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", user.scheduler_address, "--nthreads", "2",
                 "--no-dashboard"], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            try:
                deadline = time.monotonic() + 60
                while "was refused" not in out.getvalue() and time.monotonic() < deadline and foreign.poll() is None:
                    time.sleep(0.1)
                user.scale(2)  # a worker of this environment joins late
                assert client.gather(futures) == list(range(24))
                assert foreign.wait(30) == 0  # retired with its nanny: not started again
            finally:
                if foreign.poll() is None:
                    foreign.kill()
                    foreign.wait(30)
            said = re.search(r"warning: the worker (tcp://\S+) that joined the Dask scheduler at tcp://\S+ was refused: it "
                             r"cannot import glacierwatch \(ModuleNotFoundError: No module named '(catalog|pipeline)'\): "
                             r"stop it, or start it from an environment with glacierwatch installed", out.getvalue())
            assert said, out.getvalue()
            assert said[1] not in user.scheduler.workers and len(user.scheduler.workers) == 2  # the good late one kept
            # the tasks the scheduler had sent it went back without counting as failures
            assert [ts.key for ts in user.scheduler.tasks.values() if ts.suspicious] == []
        assert not [name for name in user.scheduler.worker_plugins if name.startswith("glacierwatch")]  # the gate leaves the user's scheduler with the run


def test_workers_that_cannot_read_the_store_are_refused_before_they_write_where_no_one_looks(tmp_path):
    """A store the workers do not share (here memory:// of this process, which worker processes have their
    own of; on a cluster, a local path of the login node) had every chunk written where this process
    never reads it: the run published those years as no ice."""
    from distributed import Client, LocalCluster

    from pipeline.scale.cluster.resources import check_workers_reach_store
    from pipeline.store import RegionStore

    local = RegionStore(str(tmp_path / "store.zarr"))
    local.fs.makedirs(f"{local.root}/run", exist_ok=True)
    island = RegionStore("memory://reach-test/store.zarr")
    with LocalCluster(n_workers=1, processes=True, threads_per_worker=1, dashboard_address=":0") as cluster, Client(cluster) as client:
        check_workers_reach_store(client, local)  # the same disk: passes
        with pytest.raises(ClusterError, match=r"workers cannot read the store memory://reach-test/store.zarr .*FileNotFoundError"):
            check_workers_reach_store(client, island)
    assert not local.fs.glob(f"{local.root}/run/reach-*") and not island.fs.glob(f"{island.root}/run/reach-*")  # probes gone


# ---------------------------------------------------------------- start-up failures: fast, one line, nothing written

@pytest.fixture
def silent_port():
    """A TCP port that accepts connections and never answers (a firewall, a proxy, a hung scheduler)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


def _no_kube(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def _no_sbatch(monkeypatch):
    import pipeline.scale.cluster.start as cluster  # where check_cluster looks shutil up

    real = cluster.shutil.which
    monkeypatch.setattr(cluster.shutil, "which", lambda name, *a, **k: None if name == "sbatch" else real(name, *a, **k))


STARTUP_FAILURES = {
    # case: (--cluster value, set-up, what the one line says)
    "slurm without sbatch": ("slurm", lambda mp, tmp: _no_sbatch(mp), 'cluster.kind "slurm": sbatch is not on PATH'),
    "kubernetes without credentials": ("kubernetes", _no_kube, 'cluster.kind "kubernetes": no Kubernetes credentials here'),
    "unknown kind": ("banana", lambda mp, tmp: None, "--cluster / cluster.kind 'banana' is not a cluster: use local, slurm"),
    "address that never answers": ("tcp://127.0.0.1:{port}", lambda mp, tmp: None, "no Dask scheduler answered at tcp://127.0.0.1:{port} within 1 s (timed out)"),
    "address refused": ("tcp://127.0.0.1:1", lambda mp, tmp: None, "no Dask scheduler answered at tcp://127.0.0.1:1 within 1 s"),
}


def _case(name, monkeypatch, tmp_path, port):
    import pipeline.scale.cluster.start as cluster  # where CONNECT_TIMEOUT_S is read

    value, setup, message = STARTUP_FAILURES[name]
    setup(monkeypatch, tmp_path)
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1.0)
    return value.format(port=port), message.format(port=port)


@pytest.mark.parametrize("name", list(STARTUP_FAILURES))
def test_cluster_start_up_failures_are_one_line_and_fast(name, monkeypatch, tmp_path, silent_port):
    import time

    from pipeline.cli.run_commands import with_cluster
    from pipeline.config import load_config
    from pipeline.scale.cluster import ClusterError, check_cluster

    value, message = _case(name, monkeypatch, tmp_path, silent_port)
    cluster = with_cluster(load_config(None), value).cluster  # what `--cluster VALUE` makes of the config
    started = time.monotonic()
    with pytest.raises(ClusterError) as checked:
        check_cluster(cluster)
    with pytest.raises(ClusterError) as failed:  # start_cluster checks first: it never hangs either
        with start_cluster(cluster, console=_console()[0]):
            pass
    assert time.monotonic() - started < 15
    for err in (checked.value, failed.value):  # (a refused port may read "timed out" once retries run out)
        assert str(err).startswith(message) and "\n" not in str(err)


@pytest.mark.parametrize("name", ["slurm without sbatch", "kubernetes without credentials", "unknown kind", "address that never answers"])
def test_run_with_a_cluster_that_cannot_start_writes_nothing(name, monkeypatch, tmp_path, silent_port, small_study_area, small_weights):
    from conftest import small_run_config
    from typer.testing import CliRunner

    from pipeline.cli import app

    value, message = _case(name, monkeypatch, tmp_path, silent_port)
    small_run_config(small_study_area, small_weights, tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", "-c", str(tmp_path / "config.yaml"), "--out", str(out), "--cluster", value])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not out.exists() or list(out.iterdir()) == []  # no store, no lock, no outputs


def test_trimming_the_workers_memory_gives_freed_heap_back_and_never_fails_a_run(caplog):
    """Between stages each worker calls glibc's malloc_trim(0): after a large heap allocation is freed
    the resident size drops (on glibc); a cluster that cannot run it is warned about, not fatal."""
    import platform

    import numpy as np
    import psutil
    from distributed import Client, LocalCluster

    from pipeline.scale.cluster.memory import _malloc_trim, trim_worker_memory

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    blocks = [np.ones(8_192) for _ in range(16_000)]  # 64 kB each, under glibc's mmap threshold: 1 GB of heap
    del blocks[:-1]  # freed, it stays in the heap until trimmed
    before = psutil.Process().memory_info().rss
    assert _malloc_trim()
    assert psutil.Process().memory_info().rss < before - 500 * 2**20

    with LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address=":0") as cluster, Client(cluster) as client:
        trim_worker_memory(client)  # runs on every worker and returns

    class Unreachable:
        def run(self, func):
            raise OSError("worker gone")

    with caplog.at_level("WARNING"):
        trim_worker_memory(Unreachable())
    assert "could not trim the workers' memory" in caplog.text


def test_restarting_the_workers_gives_fresh_processes_and_goes_on_with_those_that_came_back(caplog):
    """Before the statistics a run restarts the workers it started: new processes (what a worker
    imported and held is gone); a restart that times out is warned about, and only a cluster left
    with no worker is an error."""
    import os

    from pipeline.scale.cluster import ClusterError
    from pipeline.scale.cluster.memory import restart_worker_processes

    with start_cluster({"kind": "local", "local": {"workers": 1, "dashboard_address": ":0"}}, console=_console()[0]) as client:
        def held():
            import sys

            sys.modules["glacierwatch_test_marker"] = sys  # stands for torch: imported, held for the process's life
            return os.getpid()

        before = client.run(held)
        restart_worker_processes(client)
        after = client.run(lambda: (os.getpid(), "glacierwatch_test_marker" in __import__("sys").modules))
        assert len(after) == 1 and [pid for pid, _ in after.values()] != list(before.values())
        assert [marked for _, marked in after.values()] == [False]

    class SlowToComeBack:
        def __init__(self, workers: int):
            self.workers = workers

        def run(self, function, nanny=False):
            return {}

        def restart(self, timeout):
            raise TimeoutError(f"restart took longer than {timeout} s")

        def wait_for_workers(self, n, timeout):
            if self.workers < n:
                raise TimeoutError("none")

    with caplog.at_level("WARNING"):
        restart_worker_processes(SlowToComeBack(workers=1), timeout_s=1)
    assert "could not restart every worker" in caplog.text
    with pytest.raises(ClusterError, match="workers restarted before the statistics"):
        restart_worker_processes(SlowToComeBack(workers=0), timeout_s=1)


# ---------------------------------------------------------------- the inference workers' allocator

def test_the_allocator_option_preloads_jemalloc_where_there_is_one_and_says_what_to_install_where_not(monkeypatch):
    from pipeline.scale.cluster import allocator

    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setattr(allocator, "find_jemalloc", lambda: "libjemalloc.so.2")
    env = allocator.allocator_environ("auto")
    assert env["LD_PRELOAD"] == "libjemalloc.so.2" and "dirty_decay_ms" in env["MALLOC_CONF"]
    assert allocator.allocator_environ("jemalloc") == env
    assert allocator.allocator_environ("system") == {}
    monkeypatch.setenv("LD_PRELOAD", "libsomething.so")  # a machine that preloads its own keeps it under auto
    assert allocator.allocator_environ("auto") == {}
    assert allocator.allocator_environ("jemalloc")["LD_PRELOAD"] == "libjemalloc.so.2 libsomething.so"

    monkeypatch.delenv("LD_PRELOAD")
    monkeypatch.setattr(allocator, "find_jemalloc", lambda: None)
    assert allocator.allocator_environ("auto") == {}
    with pytest.raises(ClusterError, match=r"allocator is jemalloc.*apt-get install libjemalloc2"):
        check_cluster({"kind": "local", "local": {"allocator": "jemalloc"}})
    with pytest.raises(ClusterError, match="cluster.local.allocator: Input should be"):
        check_cluster({"kind": "local", "local": {"allocator": "tcmalloc"}})


def test_workers_run_the_networks_on_jemalloc_and_restart_for_the_statistics_on_the_c_library(monkeypatch):
    """With jemalloc on this machine the workers start on it and come back from the restart before
    the statistics without it (they ran 35 % slower on it); this process's environment is left as
    it was. Without jemalloc, a preloaded setting of the nannies' (MALLOC_CONF: harmless to glibc)
    is dropped the same way."""
    import os

    from pipeline.scale.cluster.allocator import find_jemalloc
    from pipeline.scale.cluster.memory import restart_worker_processes

    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv("MALLOC_CONF", raising=False)
    library = find_jemalloc()
    if library is None:
        import distributed  # noqa: F401 - its config defaults, the nannies' pre-spawn environment among them

        monkeypatch.setitem(dask.config.config["distributed"]["nanny"]["pre-spawn-environ"], "MALLOC_CONF", "stands-for-jemalloc")

    def allocator():
        with open("/proc/self/maps") as maps:
            return "jemalloc" in maps.read(), os.environ.get("MALLOC_CONF")

    console, out = _console()
    local = {"workers": 2, "dashboard_address": ":0", "allocator": "auto"}
    with start_cluster({"kind": "local", "local": local}, console=console) as client:
        before = list(client.run(allocator).values())
        assert len(before) == 2 and {conf is not None for _, conf in before} == {True}
        assert {mapped for mapped, _ in before} == {library is not None}
        assert ("jemalloc" in out.getvalue()) == (library is not None)
        restart_worker_processes(client)
        assert list(client.run(allocator).values()) == [(False, None)] * 2
    assert "LD_PRELOAD" not in os.environ and "MALLOC_CONF" not in os.environ


def test_gpu_workers_that_see_no_cuda_stop_the_start_instead_of_running_on_cpu():
    """A torch build for a newer CUDA than the node's driver falls back to CPU without a word, while
    the job or pod holds its GPU; and inference chose CPU for good when a CPU pod connected first."""
    from distributed import Client, LocalCluster

    from pipeline.scale.cluster.resources import check_gpu_workers, wait_for_gpu_worker

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cpu_only, \
            Client(cpu_only) as client:
        check_gpu_workers(client)  # no GPU worker: nothing to check
        with pytest.raises(ClusterError, match="no GPU worker connected within 0.5 s"):
            wait_for_gpu_worker(client, 0.5, "the Kubernetes GPU worker group")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: a GPU worker here sees it")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0",
                      resources={"GPU": 1}) as blind, Client(blind) as client:
        wait_for_gpu_worker(client, 5.0, "GPU")
        with pytest.raises(ClusterError, match=r"1 of 1 GPU workers see no CUDA device with torch .*install the torch build"):
            check_gpu_workers(client)


def _fails_with(error: BaseException):
    raise error


class ConfigError(ValueError):
    """Another library's error that shares a name with glacierwatch's (`pipeline.config.ConfigError`)."""


def test_a_task_failing_with_a_glacierwatch_error_is_one_line_in_the_worker_log_and_a_bug_keeps_its_traceback():
    """An unreadable COG stopped the run with its one-line error, and before it each worker printed Dask's
    "Compute Failed" block (key, task repr, the message again, a traceback through the read pool) and a
    "CancelledError" warning per cancelled task as the cluster closed. Now the worker logs one line for
    glacierwatch's own errors; any other error keeps Dask's block, traceback and all."""
    import logging

    from distributed import Client, LocalCluster

    from pipeline.config import ConfigError as OursConfigError
    from pipeline.config import load_config
    from pipeline.scale.cluster.worker_logs import CANCELLED_LOGGER, FAILED_LOGGER, failures_logged_short

    class Kept(logging.Handler):
        def __init__(self):
            super().__init__()
            self.lines = []

        def emit(self, record):
            self.lines.append(record.getMessage())

    kept = Kept()
    for name in (FAILED_LOGGER, CANCELLED_LOGGER):
        logging.getLogger(name).addHandler(kept)
    try:
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
                Client(cluster) as client:
            def failed(error_type, function, *args) -> str:
                kept.lines.clear()
                with pytest.raises(error_type):
                    client.submit(function, *args, pure=False).result()
                return "\n".join(kept.lines)

            def failed_with(error) -> str:
                return failed(type(error), _fails_with, error)

            with failures_logged_short(client, undo=True):
                said = failed(OursConfigError, load_config, "/nowhere/glacierwatch.yaml")  # raised in pipeline/config.py
                assert "failed with ConfigError('config file /nowhere/glacierwatch.yaml not found" in said, said
                assert "(the run reports it and stops)" in said and "\n" not in said and "Traceback" not in said
                assert failed_with(ConfigError("theirs")).startswith("Compute Failed")  # the same name, raised elsewhere
                bug = failed_with(ZeroDivisionError("a bug"))
                assert bug.startswith("Compute Failed") and "Traceback" in bug and "_fails_with" in bug
                logging.getLogger(CANCELLED_LOGGER).warning("Async instruction for <Task cancelled> ended with CancelledError")
                logging.getLogger(CANCELLED_LOGGER).warning("Async instruction for <Task> failed with OSError")
                assert kept.lines[-1].endswith("failed with OSError") and not any("CancelledError" in line for line in kept.lines)
            assert not [name for name in cluster.scheduler.worker_plugins if name.startswith("glacierwatch")]
            assert failed(OursConfigError, load_config, "/nowhere/glacierwatch.yaml").startswith("Compute Failed")  # taken off
    finally:
        for name in (FAILED_LOGGER, CANCELLED_LOGGER):
            logging.getLogger(name).removeHandler(kept)
