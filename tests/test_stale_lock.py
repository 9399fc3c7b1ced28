"""The update lock: a dead local holder's lock is taken over with a message; a live one refuses."""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest

from pipeline.store.lock import LockHolder, StoreLockedError, UpdateLock


def _lock(tmp_path) -> UpdateLock:
    return UpdateLock(fsspec.filesystem("file"), str(tmp_path / "run" / "update.lock"), str(tmp_path), "glacierwatch run 2020-2021")


def _plant(lock: UpdateLock, pid: int, host: str | None = None, started: str | None = None) -> dict:
    holder = {"host": host or socket.gethostname(), "pid": pid, "token": "0123456789abcdef",
              "started": started or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "purpose": "glacierwatch run 2020-2021"}
    Path(lock.path).parent.mkdir(parents=True, exist_ok=True)
    Path(lock.path).write_text(json.dumps(holder))
    return holder


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_dead_local_holder_is_taken_over_with_a_message(tmp_path, caplog):
    lock = _lock(tmp_path)
    pid = _dead_pid()
    _plant(lock, pid)
    with caplog.at_level(logging.WARNING, logger="pipeline.store.lock"):
        with lock:
            held = json.loads(Path(lock.path).read_text())
            assert held["pid"] != pid and held["token"] == lock.holder.token
            assert lock.taken_over.pid == pid
    message = caplog.records[-1].getMessage()
    assert f"taking over the stale lock of glacierwatch run 2020-2021 (pid {pid} on host {socket.gethostname()}" in message
    assert "resumes where it stopped" in message
    assert not (tmp_path / "run" / "update.lock").exists()  # released on exit


def test_a_live_holder_refuses_and_names_it(tmp_path):
    lock = _lock(tmp_path)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        planted = _plant(lock, live.pid)
        with pytest.raises(StoreLockedError) as refused:
            lock.acquire()
    finally:
        live.kill()
        live.wait()
    assert f"pid {live.pid}, started {planted['started']}" in str(refused.value)
    assert "Wait for it to finish" in str(refused.value)
    assert json.loads(Path(lock.path).read_text())["token"] == planted["token"]  # untouched


def test_a_holder_on_another_host_is_never_taken_over(tmp_path):
    lock = _lock(tmp_path)
    planted = _plant(lock, _dead_pid(), host="some-other-node")
    with pytest.raises(StoreLockedError, match="it runs on another host: check there"):
        lock.acquire()
    assert json.loads(Path(lock.path).read_text()) == planted


def test_a_pid_reused_by_a_newer_process_counts_as_dead(tmp_path):
    # The recorded pid is alive, but that process started after the lock: not the holder.
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = LockHolder(socket.gethostname(), live.pid, "2001-01-01T00:00:00+00:00", "t")
        assert holder.is_alive() is False
        assert LockHolder(socket.gethostname(), live.pid, dt.datetime.now(dt.UTC).isoformat(), "t").is_alive() is True
    finally:
        live.kill()
        live.wait()
