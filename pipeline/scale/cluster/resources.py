"""What the connected workers offer: their Dask resources, and waiting until they are there.

Inference asks for `resources=task_resources(client)`: `{"GPU": 1}` only when some worker
offers a GPU, so a CPU-only cluster still runs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from pipeline.scale.cluster.specs import GPU_RESOURCE, ClusterError


def wait_for_workers(client, n: int, timeout: float, what: str,
                     advice: str = "check the queue or pods (squeue / kubectl get pods), raise the start_timeout_s") -> None:
    """Wait up to `timeout` s for `n` workers: a cluster that never gets any must not hang the run."""
    try:
        client.wait_for_workers(n, timeout=timeout)
    except (TimeoutError, OSError) as err:
        raise ClusterError(
            f"{what}: no worker connected within {timeout:g} s ({type(err).__name__}): {advice}, or use --cluster local"
        ) from None


def workers_without_glacierwatch(client) -> dict[str, str]:
    """Connected workers that cannot run glacierwatch's tasks (started from another environment), with why:
    each fails every task it is given and the scheduler drops it, and a scheduler whose workers all
    do so leaves the run waiting for ever. (The same import check as the gate for workers that join
    later, `gate.cannot_import`, which travels by value.)"""
    from pipeline.scale.cluster.gate import GLACIERWATCH_MODULES, cannot_import

    answers = client.run(cannot_import, GLACIERWATCH_MODULES, on_error="return")
    return {address: answer if isinstance(answer, str) else f"{type(answer).__name__}: {answer}"
            for address, answer in answers.items() if answer is not None}


def check_address_workers(client, address: str, timeout: float) -> None:
    """A scheduler the user started has workers, and all can import glacierwatch: else ClusterError within
    `timeout` s (a run on it waited for ever, silent), naming the workers that cannot. One such worker
    is refused too: the scheduler gives it tasks, its process dies on the first, and the run ends in
    KilledWorker or waits."""
    wait_for_workers(client, 1, timeout, f"the Dask scheduler at {address}",
                     advice=f"start workers from glacierwatch's environment (`dask worker {address}`)")
    broken = workers_without_glacierwatch(client)
    if broken:
        said = "; ".join(f"{worker} ({why})" for worker, why in sorted(broken.items()))
        raise ClusterError(f"workers of the Dask scheduler at {address} cannot import glacierwatch: {said}: stop them, "
                           "or start them from an environment with glacierwatch installed (the same version as here)")


@contextmanager
def gate_late_workers(client, address: str, warn: Callable[[str], None]) -> Iterator[None]:
    """Within: a worker that joins the scheduler at `address` and cannot import glacierwatch is retired
    before it runs a task, and `warn` says which and why (`check_address_workers` checks only those
    connected at the start). What it can and cannot do: `pipeline.scale.cluster.gate`. The gate is
    taken off the user's scheduler on exit."""
    from pipeline.scale.cluster.gate import TOPIC, RefuseForeignWorkers

    def refused(event) -> None:
        msg = event[1]
        warn(f"the worker {msg.get('address', msg.get('worker'))} that joined the Dask scheduler at {address} was "
             f"refused: it cannot import glacierwatch ({msg.get('why')}): {msg.get('advice')}")

    name = f"glacierwatch-gate-{client.id}"  # one per run: a second run on the same scheduler keeps its own
    client.subscribe_topic(TOPIC, refused)
    try:
        client.register_plugin(RefuseForeignWorkers(name), name=name)
    except Exception as err:  # noqa: BLE001 - a worker that cannot even take the gate; the start's check stands
        warn(f"workers joining the Dask scheduler at {address} later are not checked ({type(err).__name__}: {err})")
    try:
        yield
    finally:
        for undo in (lambda: client.unregister_worker_plugin(name), lambda: client.unsubscribe_topic(TOPIC)):
            with suppress(Exception):  # a client whose scheduler went away: nothing left to undo
                undo()


def worker_resources(client) -> dict[str, dict[str, float]]:
    """Resources each connected worker offers, by worker name."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return {str(w.get("name", addr)): dict(w.get("resources") or {}) for addr, w in workers.items()}


def task_resources(client) -> dict[str, float] | None:
    """`{"GPU": 1}` when some worker has a GPU, else None (a resource no worker has would wait forever)."""
    has_gpu = any(r.get(GPU_RESOURCE) for r in worker_resources(client).values())
    return {GPU_RESOURCE: 1} if has_gpu else None


def wait_for_gpu_worker(client, timeout: float, what: str) -> None:
    """Wait up to `timeout` s for a worker offering the GPU resource. Inference decides between CPU and
    GPU once, from the workers connected when it starts: a CPU pod that came up before the GPU pods
    (GPU node pools often scale from zero) had it run on CPU threads beside idle GPUs."""
    deadline = time.monotonic() + timeout
    while not any(r.get(GPU_RESOURCE) for r in worker_resources(client).values()):
        if time.monotonic() > deadline:
            raise ClusterError(
                f"{what}: no GPU worker connected within {timeout:g} s: check the GPU pods or jobs (kubectl get pods / "
                "squeue), raise start_timeout_s, or set the GPU workers to 0 to run the networks on CPU workers"
            )
        time.sleep(1.0)


def _cuda_state() -> dict:
    """On a worker: whether torch sees a CUDA device, and why not."""
    try:
        import torch
    except ImportError:
        return {"available": False, "torch": None, "cuda": None, "why": "torch is not installed"}
    why = ""
    try:
        torch.cuda.init()
    except Exception as err:  # noqa: BLE001 - torch's reason (driver too old, no device) is the message
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
    return {"available": torch.cuda.is_available(), "torch": torch.__version__, "cuda": torch.version.cuda, "why": why}


def check_gpu_workers(client) -> None:
    """Every worker that offers the GPU resource sees a CUDA device, else ClusterError. A torch build for a
    newer CUDA than the node's driver (the default wheel's CUDA 13 needs driver 580 or later) fell back
    to CPU silently, while the job held its GPU."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    gpu = [addr for addr, w in workers.items() if (w.get("resources") or {}).get(GPU_RESOURCE)]
    if not gpu:
        return
    blind = {addr: state for addr, state in client.run(_cuda_state, workers=gpu).items() if not state["available"]}
    if blind:
        state = next(iter(blind.values()))
        build = f"torch {state['torch']} (CUDA {state['cuda']})" if state["torch"] else "no torch"
        raise ClusterError(
            f"{len(blind)} of {len(gpu)} GPU workers see no CUDA device with {build}: {state['why'] or 'no device'}; "
            "install the torch build for the nodes' NVIDIA driver (nvidia-smi shows it; e.g. pip install torch "
            "--index-url https://download.pytorch.org/whl/cu126), or run the networks on CPU workers"
        )


SHARE_THE_STORE = ("put the store where every worker sees it (a filesystem the nodes share, or object storage such as "
                   "s3://... with the workers' credentials) with the config's `store:`")
"""What to do when some worker writes the store where this process does not read it."""


def _reads_token(url: str, storage_options: dict, path: str, token: str) -> str | None:
    """On a worker: None when `path` of the store at `url` holds `token`, else what it saw instead."""
    import fsspec

    try:
        fs, _ = fsspec.core.url_to_fs(url, **storage_options)
        seen = fs.cat_file(path).decode()
    except Exception as err:  # noqa: BLE001 - any failure to read is the answer
        return f"{type(err).__name__}: {err}"
    return None if seen == token else "another file there"


def check_workers_reach_store(client, store) -> None:
    """Every worker reads what this process writes into `store` (a RegionStore): a local path the workers'
    machines do not share, or object storage without their credentials, had them write every chunk where
    this process never looks, and the run published those years as no ice. ClusterError names them."""
    import uuid

    token = uuid.uuid4().hex
    for stale in store.fs.glob(f"{store.root}/run/reach-*"):  # a run killed mid-check (the store's lock is held here)
        store.fs.rm_file(stale)
    path = f"{store.root}/run/reach-{token}"
    store.fs.pipe_file(path, token.encode())
    try:
        answers = client.run(_reads_token, store.url, dict(store.storage_options), path, token, on_error="return")
    finally:
        store.fs.rm_file(path)
    blind = {worker: str(answer) for worker, answer in answers.items() if answer is not None}
    if blind:
        said = "; ".join(f"{worker} ({why})" for worker, why in sorted(blind.items()))
        raise ClusterError(f"workers cannot read the store {store.url} as this process writes it: {said}: {SHARE_THE_STORE}")

