"""How a command fails: one line per problem on stderr, exit 2 for bad input, 1 for a bug.

`OneLineErrors` is the command group every command runs inside; it is the one place an
exception becomes a message. `fail` is how a command refuses its input itself.
"""

from __future__ import annotations

import errno
import signal
import sys
import threading
from contextlib import contextmanager

import click
import typer
import typer.core
from rich.markup import escape

from pipeline.cli.console import errors
from pipeline.model import MODEL_EXTRA_HINT, missing_model_extra

_DEBUG: dict = {}  # root context -> whether --debug was given


def set_debug(ctx: typer.Context, debug: bool) -> None:
    """Remember the global `--debug` flag for the command run under `ctx`."""
    _DEBUG[ctx.find_root()] = debug


class OneLineErrors(typer.core.TyperGroup):
    """Every command's errors end here: one line per problem, exit 2; `--debug` shows the traceback.

    The library errors a user can meet (bad files, unreachable catalogs, cluster start-up, the
    pre-flight's problems) are input errors; anything else is a bug, said in one line as well,
    with the hint to rerun with --debug and report it.
    """

    def invoke(self, ctx):
        try:
            with _sigterm_unwinds():
                return super().invoke(ctx)
        except (Terminated, KeyboardInterrupt) as stop:
            why = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted (Ctrl-C)"
            errors.print(f"[bold red]error:[/] {why}: {AFTER_A_STOP.get(ctx.invoked_subcommand, AFTER_A_STOP[None])}",
                         markup=True, highlight=False, soft_wrap=True)
            raise
        except (typer.Exit, typer.Abort, click.exceptions.ClickException, click.exceptions.Exit):
            raise
        except Exception as err:  # noqa: BLE001 - the one place exceptions become messages
            if _DEBUG.get(ctx, False) or "--debug" in sys.argv:
                errors.print_exception()  # through the redacting console: no secret in a traceback either
            if missing_model_extra(err):  # torch (the `model` extra) not installed: the install line, nothing else
                fail(MODEL_EXTRA_HINT)
            report(err)
            raise typer.Exit(code=2 if is_input_error(err) else 1) from None


AFTER_A_STOP = {
    "run": "what was started is closed and the store's lock released; the same command again resumes from the finished units",
    "update": "what was started is closed and the store's lock released; the same command again resumes from the finished units",
    "train-world": "the finished epochs' checkpoints are kept (epoch_NNN in --out), no final weights were written for the "
                   "network in training; the same command with --resume skips the networks already finished and trains "
                   "that one again from its start",
    "train": "the finished epochs' checkpoints are kept (uncalibrated, unscored), no final weights were written; "
             "train again to get them",
    None: "nothing half-written is left as a result",
}
"""What a command stopped by Ctrl-C or SIGTERM leaves, by command (the run's words on `train` spoke of a lock and a resume it has not)."""


class Terminated(SystemExit):
    """SIGTERM as an exit that unwinds the command: the cluster a run started is closed and the
    store's lock released, as on Ctrl-C. SLURM at a time limit, `kubectl delete` and a pod's deadline
    send SIGTERM; the CLI as a container's PID 1 ignored it (no handler) until the SIGKILL that
    follows, which left a DaskCluster holding its GPUs and a lock the next run refused."""


@contextmanager
def _sigterm_unwinds():
    """SIGTERM raises `Terminated` while the command runs (main thread only: where Python delivers signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a repeated SIGTERM (before the SIGKILL) must not cut the cleanup short
        raise Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def is_input_error(err: BaseException) -> bool:
    """Whether `err` is a problem with what the user gave (files, catalogs, cluster), not a bug."""
    import rasterio
    import yaml

    known: tuple[type[BaseException], ...] = (ValueError, OSError, LookupError, RuntimeError, yaml.YAMLError,
                                              rasterio.errors.RasterioError)
    return isinstance(err, known) or _cluster_failure(err) is not None


_RESUMES = "then run the same command again: it resumes where it stopped"


def _cluster_failure(err: BaseException) -> str | None:
    """What to do when the cluster, not the input or the code, stopped the run: workers killed one after
    another running one task (their memory limit, most often), or the scheduler gone."""
    distributed = sys.modules.get("distributed")
    if distributed is None:  # never imported: no cluster ran
        return None
    if isinstance(err, distributed.KilledWorker):
        from dask.utils import key_split

        return (f"the Dask workers died one after another running {key_split(err.task)} ({err.allowed_failures + 1} "
                "workers in turn), most often for memory: give each worker more (cluster.local.memory_per_worker, "
                "cluster.slurm.memory, cluster.kubernetes.memory, `dask worker --memory-limit`) or fewer threads, "
                f"and see the workers' logs for why; {_RESUMES}")
    reason = getattr(err, "reason", None)
    if isinstance(err, distributed.client.FutureCancelledError) and reason and "connection-lost" in reason:
        return (f"the connection to the Dask scheduler was lost ({reason}): the scheduler stopped, ran out of memory or "
                f"the network dropped; check it (or use --cluster local), {_RESUMES}")
    return None


_STORAGE_ADVICE = {
    errno.ENOSPC: "free space there (or give --out / the config's store another disk)",
    errno.EDQUOT: "free space within your quota there (or give --out / the config's store another disk)",
    errno.EROFS: "that filesystem is mounted read-only: give --out (and the config's store) a writable folder",
    errno.EACCES: "this process may not read or write there: check the path's permissions (an input), or give --out "
                  "(and the config's store) a folder you can write",
}


def _storage_advice(err: BaseException) -> str | None:
    """What to do about a full, read-only or forbidden disk; a run stopped by one resumes where it stopped."""
    advice = _STORAGE_ADVICE.get(getattr(err, "errno", None)) if isinstance(err, OSError) else None
    if advice is None:
        return None
    where = f"writing {err.filename}: " if getattr(err, "filename", None) and str(err.filename) not in str(err) else ""
    return f"{where}{advice}, then run the same command again (a run or an update resumes where it stopped)"


def report(err: BaseException) -> None:
    """Print `err` as one `error:` line per problem (a pre-flight error has several)."""
    # Only a run's pre-flight raises PreflightError; importing it here would need torch (stats, plan must not).
    preflight = sys.modules.get("pipeline.preflight")
    raised_by_preflight = preflight is not None and isinstance(err, preflight.PreflightError)
    lines = err.problems if raised_by_preflight else [str(err).strip() or type(err).__name__]
    if (cluster := _cluster_failure(err)) is not None:
        lines = [cluster]
    if (advice := _storage_advice(err)) is not None:
        lines = [f"{lines[0]}: {advice}"]
    if not is_input_error(err):
        lines = [f"internal error ({type(err).__name__}: {lines[0]}); rerun with --debug for the traceback and report it"]
    elif type(err).__module__.split(".")[0] not in ("catalog", "pipeline") and cluster is None:
        lines = [f"{type(err).__name__}: {line}" for line in lines]  # a library's error: say which kind
    for line in lines:
        errors.print(f"[bold red]error:[/] {escape(' '.join(line.split()))}", markup=True, highlight=False, soft_wrap=True)


def fail(message: str) -> None:
    """Print `message` as the command's one error line and exit 2 (bad input)."""
    errors.print(f"[bold red]error:[/] {escape(str(message))}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)
