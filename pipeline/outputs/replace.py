"""Swap a finished output folder into place, so a failed run never leaves a half-written one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def replace_dir(build: Path, target: Path) -> None:
    """Move the finished folder `build` to `target`; the old one is removed only once the new one is there."""
    old = target.with_name(f".{target.name}-old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)  # left by a run of the same pid that died mid-swap
    if target.exists():
        target.rename(old)
    build.rename(target)
    shutil.rmtree(old, ignore_errors=True)
