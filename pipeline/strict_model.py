"""`StrictModel`: the base of every settings model (the config, cluster specs, plan rates).

Its own module so that the config can hold the cluster's sections (`pipeline.scale.cluster.specs`),
which are settings models too, without the two importing each other.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A frozen model that refuses unknown keys: a misspelt setting is an error, never a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)
