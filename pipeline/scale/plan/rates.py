"""Per-stage throughput (`Rates`) that turns a plan's work into hours, and reading it from YAML.

The shipped figures live in pipeline/scale/plan/rates.yaml (measured by tests/bench/; GPU figures may be
projections, labelled so); `--rates` points at another file of the same layout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from pipeline.strict_model import StrictModel

__all__ = ["Architecture", "InferenceRates", "Rate", "Rates", "RatesError"]

Architecture = Literal["dunet", "dunet-deep", "dunet-shallow", "unet"]


class Rate(StrictModel):
    """One throughput figure and where it comes from."""

    value: float | None = Field(None, gt=0, description="measured")
    projected: float | None = Field(None, gt=0, description="an assumption, used only while value is null")
    source: str = Field(description="the benchmark that measures it, or the assumption")

    def figure(self) -> tuple[float | None, str]:
        """(rate, "measured" | "projected" | "unknown")."""
        if self.value is not None:
            return self.value, "measured"
        if self.projected is not None:
            return self.projected, "projected"
        return None, "unknown"


class InferenceRates(StrictModel):
    cpu_mpx_s_per_core: Rate
    gpu_mpx_s: Rate = Field(description="per GPU")


class Rates(StrictModel):
    """Per-stage throughput: MB/s or Mpx/s per CPU core, Mpx/s per GPU (see pipeline/scale/plan/rates.yaml)."""

    machine: str = ""
    read_mb_s_per_core: Rate
    composite_mpx_s_per_core: Rate = Field(description="scene observations on the target grid")
    statistics_mpx_s_per_core: Rate
    inference: dict[Architecture, InferenceRates]

    @model_validator(mode="after")
    def _cpu_rates_known(self):
        required = {
            "read_mb_s_per_core": self.read_mb_s_per_core,
            "composite_mpx_s_per_core": self.composite_mpx_s_per_core,
            "statistics_mpx_s_per_core": self.statistics_mpx_s_per_core,
            **{f"inference.{a}.cpu_mpx_s_per_core": r.cpu_mpx_s_per_core for a, r in self.inference.items()},
        }
        unknown = [key for key, rate in required.items() if rate.figure()[0] is None]
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: give a value (measured) or a projected figure; only GPU rates may be unknown")
        if "dunet" not in self.inference:
            raise ValueError("inference.dunet is missing: the default architecture needs rates")
        return self

    @classmethod
    def load(cls, path: str | Path | None = None) -> Rates:
        """The rates in `path`, or the ones shipped with the package (pipeline/scale/plan/rates.yaml).

        Any problem is one `RatesError` line naming the file and the key (or YAML line) at fault.
        """
        where = f"rates file {path}" if path else "the shipped rates file pipeline/scale/plan/rates.yaml"
        fix = "fix it, or leave --rates out to use the shipped, measured rates (pipeline/scale/plan/rates.yaml shows the layout)"
        try:
            text = Path(path).read_text() if path else resources.files("pipeline.scale.plan").joinpath("rates.yaml").read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise RatesError(f"{where}: cannot be read ({getattr(err, 'strerror', None) or err}): {fix}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or type(err).__name__
            raise RatesError(f"{where}: not valid YAML{at} ({problem}): {fix}") from None
        if not isinstance(data, dict):
            raise RatesError(f"{where}: holds {type(data).__name__}, not a mapping of rates (read_mb_s_per_core, ...): {fix}")
        try:
            return cls(**data)
        except (ValidationError, TypeError) as err:
            if isinstance(err, ValidationError):
                problems = "; ".join(
                    f"{'.'.join(str(k) for k in e['loc']) or '(top level)'}: {e['msg']}" for e in err.errors()[:4]
                )
            else:
                problems = str(err)
            raise RatesError(f"{where}: {problems}: {fix}") from None


class RatesError(ValueError):
    """A rates file that cannot be used: the message names the file and the key."""

