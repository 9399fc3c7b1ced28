"""The annual-update lock: one writer per store at a time.

Two annual updates on one store would each believe a unit is pending, write it, and race on the
store's attributes. So an update first creates a lock file inside the store, with an *exclusive
create*: the create fails when the file exists, and the loser is told who holds the lock.

How exclusive the create is depends on the store's filesystem (fsspec mode ``"xb"``):

- local disk: ``open(path, "xb")`` is ``O_CREAT | O_EXCL``, atomic on POSIX file systems
  (NFS v3 and older excepted);
- ``memory://``: checked and created under the interpreter lock, atomic within one process;
- object stores: ``"xb"`` is as good as the backend makes it: s3fs and gcsfs map it to a
  conditional PUT (``If-None-Match: *`` / ``ifGenerationMatch=0``) in recent releases; a backend
  that ignores it degrades to last-writer-wins. To narrow that gap the lock writes a random
  token and reads it back: of two racing writers at most one reads its own token. It is a guard
  against accidents (a cron job and a person), not a distributed consensus protocol.

A lock outlives a killed process. The holder records host, pid and start time, and renews the
lock every `HEARTBEAT_S` (a daemon thread rewrites it whole with the time of the beat). The lock is
stale when its holder ran on this host and its pid is gone (or the pid now belongs to a process
started after the lock), or, on any host, when its last beat is older than `STALE_AFTER_S`: a
SIGKILLed pod (out of memory), a batch node that died. The next run on a new pod or node has another
host name and could never tell that holder from a live one by its pid. `acquire` takes a stale
lock over with a logged warning, so an interrupted run resumes by running it again. A live pid on
this host that still beats, or a holder on another host that does (or, written by an older version,
never did), is never taken over: the refusal names it and the file to delete once that process is
known to be gone. A holder writes its first beat with the lock itself, so one killed in its first
minute goes stale too. (Two processes taking over the same stale lock at the same instant: each checks the
stale holder's token just before removing it, and the exclusive create lets only one of them win.)

A holder that stopped beating for `STALE_AFTER_S` while alive (its machine suspended) may have been
taken over: at its next beat it finds another token in the file (it reads the file back after each
beat too), or it has failed to renew for nearly that long (storage errors of any kind), and then it
logs why and raises `LockLostError` in the thread that took the lock (the run stops there, closing its
cluster, with a message that says what happened) rather than write beside the new holder. The
exception arrives at that thread's next Python instruction: a thread blocked in a wait without a
timeout gets it when the wait returns (a run's batches end every few seconds). Hosts' clocks are
compared: `STALE_AFTER_S` (15 min) is far above the skew of clocks kept by NTP; a holder whose clock
runs ahead looks alive for that much longer.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import fsspec

log = logging.getLogger(__name__)

HEARTBEAT_S = 60.0  # how often a holder renews its lock
STALE_AFTER_S = 15 * 60.0  # a lock not renewed for this long is stale, on any host (15 missed beats)


class StoreLockedError(RuntimeError):
    """Another update holds the store's lock; the message names the holder and what to do."""


class LockLostError(StoreLockedError):
    """Raised in the holder's thread when its lock was taken over (or could not be renewed): stop writing."""

    said = "the store's update lock was lost"

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or (self.said,)))


@dataclass(frozen=True)
class LockHolder:
    host: str
    pid: int
    started: str  # ISO 8601, UTC
    token: str
    purpose: str = "annual update"
    beat: str | None = None  # ISO 8601, UTC: the holder's last renewal (None: written before heartbeats)

    @classmethod
    def this_process(cls, purpose: str = "annual update") -> LockHolder:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return cls(host=socket.gethostname(), pid=os.getpid(), started=now, token=secrets.token_hex(8), purpose=purpose,
                   beat=now)  # its first beat: a holder killed before the next one goes stale too

    def beat_age_s(self) -> float | None:
        """Seconds since the holder last renewed the lock (None: it never did, or the time is unreadable)."""
        try:
            return (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(self.beat)).total_seconds()
        except (TypeError, ValueError):
            return None

    def is_alive(self) -> bool | None:
        """True/False when that can be known here (its pid on this host, its beat on any), None when not."""
        age = self.beat_age_s()
        if self.host != socket.gethostname() or self.pid <= 0:
            return None if age is None else age <= STALE_AFTER_S
        if age is not None and age > STALE_AFTER_S:
            return False  # a pid of this host's previous boot, or a hung holder: it stopped renewing
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, owned by someone else
            pass
        return not self._pid_reused()

    def _pid_reused(self) -> bool:
        """The pid now belongs to a process started after this lock was taken (so not the holder)."""
        try:
            import psutil

            created = dt.datetime.fromtimestamp(psutil.Process(self.pid).create_time(), dt.UTC)
            return created > dt.datetime.fromisoformat(self.started) + dt.timedelta(seconds=2)
        except Exception:  # noqa: BLE001 - no psutil, no such process, odd timestamp: assume it is the holder
            return False


class UpdateLock:
    """An exclusive lock file at `path` on `fs`, for the store at `store_url`.

    Use as a context manager (``with store.lock(): ...``) or call `acquire` / `release`.
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, store_url: str, purpose: str = "annual update",
                 on_lost: Callable[[str], None] | None = None):
        self.fs = fs
        self.path = path
        self.store_url = store_url
        self.purpose = purpose
        self.on_lost = on_lost or self._stop_owner  # called with why, from the heartbeat thread, when the lock is lost
        self.holder: LockHolder | None = None
        self.taken_over: LockHolder | None = None  # the dead holder whose stale lock `acquire` removed
        self.lost = False
        self._stop = threading.Event()
        self._beating: threading.Thread | None = None
        self._owner: int | None = None  # the thread that took the lock: where a lost lock is raised

    def read_holder(self) -> LockHolder | None:
        """Who holds the lock now (None when nobody does)."""
        try:
            with self.fs.open(self.path, "rb") as f:
                data = json.loads(f.read())
            return LockHolder(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):  # torn or foreign lock file: still a lock
            return LockHolder(host="?", pid=-1, started="?", token="?", purpose="unreadable lock file")

    def acquire(self) -> LockHolder:
        holder = LockHolder.this_process(self.purpose)
        self.fs.makedirs(self.fs._parent(self.path), exist_ok=True)
        try:
            self._create(holder)
        except FileExistsError:
            stale = self.read_holder()
            if stale is None or stale.is_alive() is not False or not self._remove_stale(stale):
                raise StoreLockedError(self._refusal(stale if stale is not None else self.read_holder())) from None
            try:
                self._create(holder)
            except FileExistsError:  # another process took the stale lock over first
                raise StoreLockedError(self._refusal(self.read_holder())) from None
        current = self.read_holder()
        if current is None or current.token != holder.token:  # lost a race on a lax backend
            raise StoreLockedError(self._refusal(current))
        self.holder = holder
        self._owner = threading.get_ident()
        self._stop.clear()
        self._beating = threading.Thread(target=self._heartbeat, name=f"lock heartbeat {self.path}", daemon=True)
        self._beating.start()
        return holder

    def _create(self, holder: LockHolder) -> None:
        with self.fs.open(self.path, "xb") as f:
            f.write(json.dumps(asdict(holder), indent=1).encode())

    def _heartbeat(self) -> None:
        """Renew the lock every `HEARTBEAT_S` until released; stop the holder if the lock is lost."""
        renewed = time.monotonic()
        while not self._stop.wait(HEARTBEAT_S):
            if self.holder is None:
                return
            try:
                if self.beat():
                    renewed = time.monotonic()
                    continue
                why = (f"another process took it over after {STALE_AFTER_S:.0f} s without a renewal "
                       f"(now held by {self._who(self.read_holder())})")
            except Exception as err:  # noqa: BLE001 - any storage error: try again, long before the lock goes stale
                failing = time.monotonic() - renewed
                if failing < STALE_AFTER_S - 2 * HEARTBEAT_S:
                    log.warning("store %s: could not renew the update lock %s (%s: %s); trying again in %.0f s",
                                self.store_url, self.path, type(err).__name__, err, HEARTBEAT_S)
                    continue
                why = (f"it could not be renewed for {failing:.0f} s ({type(err).__name__}: {err}), so another process "
                       "may take it over")
            if self._stop.is_set():
                return
            self.lost = True
            log.error("store %s: the update lock %s is lost: %s; stopping here rather than write beside another "
                      "process; finished units are kept", self.store_url, self.path, why)
            self.on_lost(why)
            return

    def _stop_owner(self, why: str) -> None:
        """Raise `LockLostError` in the thread that took the lock (at its next Python instruction)."""
        if self._owner is None:
            return
        said = (f"store {self.store_url}: this run's update lock is lost ({why}); it stopped rather than write beside "
                f"another process. Finished units are kept: check who holds the lock ({self.path}) before running again")
        lost = type("LockLostError", (LockLostError,), {"said": said})
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._owner), ctypes.py_object(lost))

    def beat(self) -> bool:
        """Renew the lock now (False: it is not ours any more). Written beside it and moved over it, whole,
        then read back: a takeover racing this beat is seen now, not a beat later."""
        if self.holder is None:
            return False
        current = self.read_holder()
        if current is None or current.token != self.holder.token:
            return False
        renewed = replace(self.holder, beat=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        fresh = f"{self.path}.{renewed.token}"
        try:
            with self.fs.open(fresh, "wb") as f:
                f.write(json.dumps(asdict(renewed), indent=1).encode())
            self.fs.mv(fresh, self.path)
        except BaseException:
            with contextlib.suppress(Exception):
                self.fs.rm_file(fresh)
            raise
        current = self.read_holder()
        return current is not None and current.token == renewed.token

    def _remove_stale(self, stale: LockHolder) -> bool:
        """Delete the lock file of a dead holder (still that holder's: token checked); say so."""
        current = self.read_holder()
        if current is None or current.token != stale.token:
            return current is None  # gone already: just create ours; replaced: someone else won
        self.fs.rm_file(self.path)
        log.warning(
            "store %s: taking over the stale lock of %s (pid %d on host %s, started %s): that process is no "
            "longer running; finished units are kept and the run resumes where it stopped",
            self.store_url, stale.purpose, stale.pid, stale.host, stale.started,
        )
        self.taken_over = stale
        return True

    def release(self) -> None:
        """Stop the heartbeat; delete the lock file, if it is still ours."""
        self._stop.set()
        if self._beating is not None and self._beating is not threading.current_thread():
            self._beating.join(timeout=HEARTBEAT_S)  # a beat stuck on hung storage must not hold the exit
        self._beating = None
        self._owner = None
        if self.holder is None:
            return
        current = self.read_holder()
        if current is not None and current.token == self.holder.token:
            self.fs.rm_file(self.path)
        self.holder = None

    def __enter__(self) -> UpdateLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    @staticmethod
    def _who(holder: LockHolder | None) -> str:
        if holder is None:
            return "nobody: the lock file is gone"
        return f"{holder.purpose} on host {holder.host}, pid {holder.pid}, started {holder.started}"

    def _refusal(self, holder: LockHolder | None) -> str:
        if holder is None:  # vanished between our create and our read: just retry
            return (
                f"store {self.store_url} was locked by another update that has just finished; "
                "run again."
            )
        who = self._who(holder)
        age = holder.beat_age_s()
        if age is not None:
            who += f", lock last renewed {age:.0f} s ago"
        alive = holder.is_alive()
        if alive is False:
            gone = (f"pid {holder.pid} is not running on this host ({holder.host})"
                    if holder.host == socket.gethostname() and (age is None or age <= STALE_AFTER_S)
                    else f"it has not renewed the lock for over {STALE_AFTER_S:.0f} s")
            advice = (
                f"{gone}: the holder is dead and the lock is stale. Delete the lock file {self.path} and run again "
                "(finished units are kept; the run resumes where it stopped)."
            )
        else:
            advice = (
                "Wait for it to finish, or, if that process is no longer running"
                + (" (it runs on another host: check there)" if alive is None else "")
                + f", delete the stale lock file {self.path} and run again."
            )
        return f"store {self.store_url} is locked by another {who}. {advice}"
