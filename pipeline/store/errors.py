"""The store's errors: one base class a caller can catch, one for a store made for another run.

Every message names the store's URL and says what to do (start a new store, reset a year, fix
the input), so a failed run reads as an instruction, not a traceback.
"""

from __future__ import annotations


class StoreError(RuntimeError):
    """A store that cannot be used as asked; the message names the store and what to do."""


class IncompatibleStoreError(StoreError):
    """The store was made with another grid or other weights than this run asks for."""
