"""The glacier segmentation model: networks, their inputs, losses, weights and predictors.

PyTorch comes with the `model` extra (`pip install 'glacierwatch[model]'`): `stats`, `plan` and
the catalog run without it. This `__init__` imports no torch; it owns the one message a user
without the extra gets, and the check that gives it.
"""

from __future__ import annotations

import importlib.util

MODEL_PACKAGES = ("torch", "torchvision", "safetensors")  # what the `model` extra installs
MODEL_EXTRA_HINT = "this command needs the model extra: pip install 'glacierwatch[model]'"


class ModelExtraMissing(ModuleNotFoundError):
    """A package of the `model` extra is not installed; the message is `MODEL_EXTRA_HINT`."""


def missing_model_extra(err: BaseException) -> bool:
    """True when `err` says a package of the `model` extra is not installed (not when an installed one fails to load)."""
    return isinstance(err, ModuleNotFoundError) and (err.name or "").split(".")[0] in MODEL_PACKAGES


def require_model() -> None:
    """Raise `ModelExtraMissing` unless the `model` extra is installed; imports none of it."""
    for name in MODEL_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a blocked or half-removed package
            found = False
        if not found:
            raise ModelExtraMissing(MODEL_EXTRA_HINT, name=name)
