"""Swap a finished output into place, so a failed run never leaves a half-written one.

An output is built beside its target as ``.NAME-incomplete-PID`` (a folder or a file) and moved
into place when complete; `incomplete_path` names that build and first removes those a killed run
left (SIGKILL runs no cleanup): before, every killed run's build stayed in the output folder for good.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    return True


def incomplete_path(target: Path, suffix: str = "") -> Path:
    """``.{name}-incomplete-{pid}{suffix}`` beside `target` (`name`: the target's stem with a `suffix`, else its
    name), after removing the builds of `target` whose process is gone. A live process's build (another run
    writing beside this one) is left alone."""
    name = target.name.removesuffix(suffix) if suffix else target.name
    # not `-old-`: a run that died between replace_dir's two renames left there the only copy of the last output
    pattern = re.compile(rf"\.{re.escape(name)}-(?:incomplete|scratch)-(\d+){re.escape(suffix)}")
    if target.parent.is_dir():
        for entry in target.parent.iterdir():
            match = pattern.fullmatch(entry.name)
            if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
    return target.with_name(f".{name}-incomplete-{os.getpid()}{suffix}")


def replace_dir(build: Path, target: Path) -> None:
    """Move the finished folder `build` to `target`; the old one is removed only once the new one is there."""
    old = target.with_name(f".{target.name}-old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)  # left by a run of the same pid that died mid-swap
    if target.exists():
        target.rename(old)
    build.rename(target)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def building(target: Path) -> Iterator[Path]:
    """The path to build the folder `target` at (not yet made); moved into place when the block ends, removed
    if it raises (a failure, a full disk, must not leave a build holding the space the next run needs)."""
    build = incomplete_path(target)
    shutil.rmtree(build, ignore_errors=True)
    try:
        yield build
        replace_dir(build, target)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise


def write_whole(target: Path, write: Callable[[Path], object]) -> None:
    """`write(path)` to a file beside `target`, then moved onto it: a failure leaves the last `target`."""
    tmp = incomplete_path(target, target.suffix)
    try:
        tmp.unlink(missing_ok=True)
        write(tmp)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
