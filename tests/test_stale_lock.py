"""The update lock: a dead local holder's lock, or one not renewed on any host, is taken over with a message; a live one refuses."""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import fsspec
import pytest

from pipeline.store import lock as lock_module
from pipeline.store.lock import LockHolder, LockLostError, StoreLockedError, UpdateLock


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


def _ago(seconds: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)).isoformat(timespec="seconds")


def test_a_holder_on_another_host_that_stopped_renewing_is_taken_over(tmp_path, caplog):
    # A SIGKILLed pod or a dead batch node: the next run has another host name and cannot ask its pid.
    lock = _lock(tmp_path)
    planted = _plant(lock, 7, host="glacierwatch-annual-update-28321-abcde")
    Path(lock.path).write_text(json.dumps(planted | {"beat": _ago(lock_module.STALE_AFTER_S + 60)}))
    with caplog.at_level(logging.WARNING, logger="pipeline.store.lock"), lock:
        assert lock.taken_over.host == "glacierwatch-annual-update-28321-abcde"
        assert json.loads(Path(lock.path).read_text())["token"] == lock.holder.token
    assert "taking over the stale lock" in caplog.records[-1].getMessage()


def test_a_holder_on_another_host_that_renews_is_waited_for(tmp_path):
    lock = _lock(tmp_path)
    planted = _plant(lock, 7, host="some-other-node") | {"beat": _ago(90)}
    Path(lock.path).write_text(json.dumps(planted))
    with pytest.raises(StoreLockedError) as refused:
        lock.acquire()
    assert "lock last renewed 90 s ago" in str(refused.value) or "lock last renewed 91 s ago" in str(refused.value)
    assert "Wait for it to finish" in str(refused.value) and "check there" not in str(refused.value)
    assert json.loads(Path(lock.path).read_text()) == planted  # untouched


def test_a_held_lock_is_renewed_until_released(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_module, "HEARTBEAT_S", 0.05)
    lock = _lock(tmp_path)
    with lock:
        deadline = time.monotonic() + 10
        while json.loads(Path(lock.path).read_text()).get("beat") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        held = LockHolder(**json.loads(Path(lock.path).read_text()))
        assert held.token == lock.holder.token and 0 <= held.beat_age_s() < 5
        assert held.is_alive() is True
        lock._stop.set()
        lock._beating.join()  # no beat in flight while the folder is listed
        assert [p.name for p in Path(lock.path).parent.iterdir()] == ["update.lock"]  # written beside it, moved over it
    assert not Path(lock.path).exists() and lock._beating is None  # released: no beat recreates the file
    time.sleep(0.2)
    assert not Path(lock.path).exists()


def test_a_holder_whose_lock_was_taken_over_stops(tmp_path, monkeypatch, caplog):
    # Suspended past STALE_AFTER_S, taken over by another host: it must not go on writing beside the new holder.
    monkeypatch.setattr(lock_module, "HEARTBEAT_S", 0.05)
    lost = threading.Event()
    lock = UpdateLock(fsspec.filesystem("file"), str(tmp_path / "run" / "update.lock"), str(tmp_path), "glacierwatch run",
                      on_lost=lambda why: lost.set())
    with caplog.at_level(logging.ERROR, logger="pipeline.store.lock"), lock:
        other = _plant(lock, 7, host="another-node") | {"beat": _ago(0)}
        Path(lock.path).write_text(json.dumps(other))
        assert lost.wait(10) and lock.lost
        assert json.loads(Path(lock.path).read_text()) == other  # the new holder's lock is left alone
    assert json.loads(Path(lock.path).read_text()) == other  # and release does not delete it
    assert "is lost: another process took it over" in caplog.records[-1].getMessage()


def test_a_holder_killed_in_its_first_minute_goes_stale_too():
    fresh = LockHolder.this_process("glacierwatch run")
    assert fresh.beat == fresh.started  # its first beat is written with the lock
    elsewhere = LockHolder(**{**fresh.__dict__, "host": "a-pod-that-was-killed", "beat": _ago(lock_module.STALE_AFTER_S + 1)})
    assert elsewhere.is_alive() is False
    assert LockHolder(**{**fresh.__dict__, "host": "a-pod-that-runs"}).is_alive() is True


def test_a_lost_lock_stops_the_thread_that_took_it_with_its_own_error(tmp_path, monkeypatch):
    """Not a KeyboardInterrupt in whatever the main thread is (the CLI said 'interrupted (Ctrl-C)', lock released):
    LockLostError in the thread holding the lock, saying what happened."""
    monkeypatch.setattr(lock_module, "HEARTBEAT_S", 0.05)
    lock = _lock(tmp_path)
    stopped: list[BaseException] = []
    taken = threading.Event()

    def run() -> None:
        try:
            with lock:
                taken.set()
                for _ in range(2000):  # a run's work: Python instructions, where the error arrives
                    time.sleep(0.005)
        except LockLostError as err:
            stopped.append(err)

    worker = threading.Thread(target=run)
    worker.start()
    assert taken.wait(10)
    other = _plant(lock, 7, host="another-node") | {"beat": _ago(0)}
    Path(lock.path).write_text(json.dumps(other))
    worker.join(20)
    assert not worker.is_alive() and len(stopped) == 1 and lock.lost
    said = str(stopped[0])
    assert "this run's update lock is lost" in said and "another-node" in said and "check who holds the lock" in said
    assert json.loads(Path(lock.path).read_text()) == other  # the new holder's lock is left alone


def test_a_storage_error_of_any_kind_does_not_end_the_heartbeat(tmp_path, monkeypatch, caplog):
    """gcsfs's HttpError is no OSError: a beat that raised it ended the thread, and the run went on unrenewed."""
    monkeypatch.setattr(lock_module, "HEARTBEAT_S", 0.05)
    lock = _lock(tmp_path)
    real_mv, failures = lock.fs.mv, []

    def flaky_mv(*args, **kwargs):
        if not failures:
            failures.append(1)
            raise RuntimeError("HttpError: 503 backend unavailable")
        return real_mv(*args, **kwargs)

    monkeypatch.setattr(lock.fs, "mv", flaky_mv)
    with caplog.at_level(logging.WARNING, logger="pipeline.store.lock"), lock:
        deadline = time.monotonic() + 10
        while (not failures or json.loads(Path(lock.path).read_text()).get("beat") == lock.holder.beat) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert failures and lock._beating.is_alive() and not lock.lost
        assert "could not renew the update lock" in caplog.text and "503" in caplog.text
        lock._stop.set()
        lock._beating.join()
        assert [p.name for p in Path(lock.path).parent.iterdir()] == ["update.lock"]  # the failed beat's file removed
