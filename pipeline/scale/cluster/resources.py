"""What the connected workers offer: their Dask resources, and waiting until they are there.

Inference asks for `resources=task_resources(client)`: `{"GPU": 1}` only when some worker
offers a GPU, so a CPU-only cluster still runs it.
"""

from __future__ import annotations

from pipeline.scale.cluster.specs import GPU_RESOURCE, ClusterError


def wait_for_workers(client, n: int, timeout: float, what: str) -> None:
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
