"""Checking that a cluster can be started from here, and starting it: `check_cluster`, `start_cluster`.

Start-up fails fast and in one line (`ClusterError`): `check_cluster` - run by the run's
pre-flight before anything is written, and again by `start_cluster` - refuses an unknown kind,
SLURM without ``sbatch``, Kubernetes without credentials and a scheduler address that does not
answer within CONNECT_TIMEOUT_S; once started, each backend has a deadline for its first worker.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import dask
from rich.console import Console
from rich.markup import escape

from catalog.redact import redact
from pipeline.scale.cluster.allocator import allocator_environ
from pipeline.scale.cluster.kubernetes import kube_cluster, kube_config_found
from pipeline.scale.cluster.local import local_cluster, plan_local
from pipeline.scale.cluster.resources import (
    check_address_workers,
    check_gpu_workers,
    gate_late_workers,
    wait_for_gpu_worker,
    wait_for_workers,
)
from pipeline.scale.cluster.slurm import check_submission, effective_slurm_spec, slurm_cluster
from pipeline.scale.cluster.specs import KINDS, WORKER_CONFIG, ClusterError, ClusterSpec
from pipeline.scale.cluster.worker_logs import failures_logged_short

# How long a scheduler address may take to accept a connection before the run gives up.
CONNECT_TIMEOUT_S = 10.0
# A scheduler the user started may still be bringing its workers up (an adaptive deployment, a queue).
ADDRESS_WORKERS_TIMEOUT_S = 120.0
# Schemes `distributed` connects with; inproc:// is an in-process scheduler (tests, notebooks).
ADDRESS_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")


def _coerce(spec: ClusterSpec | Mapping[str, Any] | Any) -> ClusterSpec:
    if type(spec) is ClusterSpec:  # not the config's Cluster, a subclass whose `workers` goes to its backend's key
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


def check_cluster(spec: ClusterSpec | Mapping[str, Any] | Any = None, *, timeout: float | None = None) -> ClusterSpec:
    """The cluster `spec` describes can be started from here, checked in seconds: else ClusterError.

    Run before anything is written (the run's pre-flight), and again by `start_cluster`: an
    unknown kind, SLURM without ``sbatch`` (dask-jobqueue would retry the submission for ever),
    Kubernetes without credentials or dask-kubernetes, and an address that does not answer
    within `timeout` seconds (default CONNECT_TIMEOUT_S) each fail with one line that says what to do.
    """
    spec = _coerce(spec if spec is not None else ClusterSpec())
    if spec.kind == "local":
        allocator_environ(spec.local.allocator)  # allocator: jemalloc on a machine without it
    elif spec.kind == "address":
        _check_address(spec.address, timeout or CONNECT_TIMEOUT_S)
    elif spec.kind == "slurm":
        if importlib.util.find_spec("dask_jobqueue") is None:
            raise ClusterError('cluster.kind "slurm" needs dask-jobqueue: pip install "glacierwatch[slurm]"')
        if shutil.which("sbatch") is None:
            raise ClusterError(
                'cluster.kind "slurm": sbatch is not on PATH on this machine: run glacierwatch on a SLURM login '
                "node (where sbatch works), or use --cluster local"
            )
        check_submission(spec.slurm)
    elif spec.kind == "kubernetes":
        if importlib.util.find_spec("dask_kubernetes") is None:
            raise ClusterError('cluster.kind "kubernetes" needs dask-kubernetes: pip install "glacierwatch[kubernetes]"')
        if kube_config_found() is None:
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
def _closed_quietly(cluster) -> Iterator:
    """`cluster`, closed on exit without letting a failed close hide why the run stopped: a SLURM
    cluster whose jobs never started raised `AssertionError: Status.created` from its close, in place
    of the ClusterError that said what was wrong."""
    try:
        yield cluster
    finally:
        try:
            cluster.close()
        except Exception as err:  # noqa: BLE001 - the run's own error, if any, is what the user must see
            logging.getLogger(__name__).warning("closing %s failed: %s: %s", type(cluster).__name__, type(err).__name__, err)


def _restore_environ(saved: dict[str, str | None]) -> None:
    """This process's environment as it was before a local cluster's nannies wrote theirs into it."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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
            check_address_workers(client, redact(spec.address), ADDRESS_WORKERS_TIMEOUT_S)
            # and those that join later (an autoscaler, a late job, `dask worker` by hand)
            stack.enter_context(gate_late_workers(client, redact(spec.address), lambda line: console.print(
                f"warning: {line}", markup=False, highlight=False, soft_wrap=True)))
            where = f"scheduler at {redact(spec.address)}"
        elif spec.kind == "local":
            plan = plan_local(spec.local)
            preload = allocator_environ(spec.local.allocator)  # jemalloc: freed memory goes back to the OS
            stack.enter_context(dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in preload.items()}))
            stack.callback(_restore_environ, {key: os.environ.get(key) for key in preload})
            stack.enter_context(dask.config.set(WORKER_CONFIG))
            cluster = stack.enter_context(_started("local Dask cluster", lambda: local_cluster(spec.local, plan)))
            client = stack.enter_context(Client(cluster))
            wait_for_workers(client, plan.workers, 60.0, "local Dask workers")
            gpus = f"{len(plan.gpu_devices)} with a GPU" if plan.gpu_devices else "no GPU: inference runs on CPU threads"
            where = (
                f"local cluster: {plan.workers} workers x {plan.threads_per_worker} threads, "
                f"{dask.utils.format_bytes(plan.memory_per_worker)} each, {gpus}"
                + (", jemalloc" if preload else "")
            )
        elif spec.kind == "slurm":
            s = effective_slurm_spec(spec.slurm)
            cluster = stack.enter_context(_closed_quietly(_started("SLURM cluster", lambda: slurm_cluster(spec.slurm))))
            client = stack.enter_context(Client(cluster))
            wait_for_workers(client, 1, s.start_timeout_s, f"a SLURM worker job (partition {s.partition})")
            check_gpu_workers(client)
            jobs = f"adaptive {s.minimum_jobs}-{s.maximum_jobs} jobs" if s.adaptive else f"{s.jobs} jobs"
            where = (f"SLURM partition {s.partition}: {jobs} of {s.cores} cores, {s.memory}, {s.gpus_per_worker} GPU, "
                     f"walltime {s.walltime} (workers retire before it and are replaced)")
        else:
            k = spec.kubernetes
            cluster = _started("Kubernetes DaskCluster", lambda: kube_cluster(k, stack))
            client = stack.enter_context(Client(cluster))
            wait_for_workers(client, 1, k.start_timeout_s, "a Kubernetes worker pod")
            if k.gpu_workers:
                wait_for_gpu_worker(client, k.start_timeout_s, "the Kubernetes GPU worker group")
                check_gpu_workers(client)
            where = (f"Kubernetes DaskCluster {getattr(cluster, 'name', k.name)}: {k.cpu_workers} CPU + {k.gpu_workers} GPU "
                     f"workers ({k.image})")
        stack.enter_context(failures_logged_short(client, undo=spec.kind == "address"))
        console.print(f"[bold]Dask[/] {escape(where)}", markup=True, highlight=False)
        hint = "" if importlib.util.find_spec("bokeh") else "  (pip install bokeh to see it)"
        console.print(f"[bold]Dask dashboard:[/] {escape(client.dashboard_link + hint)}", markup=True, highlight=False, soft_wrap=True)
        yield client
