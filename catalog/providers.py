"""Provider profiles: a STAC endpoint, its collection ids, its asset keys and how to sign hrefs.

Profiles are data (`providers.yaml`), so Earth Search, Planetary Computer and a catalog on
disk go through one code path; only the signing function is looked up by name. The provider
quirks that decide pixel values are data too: the Sentinel-2 offset rule per collection
(`scale_offset`), the platforms accepted (`platforms`) and the GDAL settings that object
storage needs (`gdal_env`).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Callable, Literal

import pystac
import yaml
from pydantic import BaseModel, ConfigDict

SENSORS = ("sentinel-2", "landsat")
# Canonical band order of the reflectance cube, per sensor (same six physical bands).
REFLECTANCE_BANDS = {
    "sentinel-2": ("B02", "B03", "B04", "B08", "B11", "B12"),
    "landsat": ("blue", "green", "red", "nir08", "swir16", "swir22"),
}
QUALITY_BAND = {"sentinel-2": "SCL", "landsat": "qa_pixel"}
# How reflectance scale/offset is decided per item (catalog/items.py reflectance_scale_offset).
SCALE_OFFSET_RULES = ("earthsearch-flag", "raster-bands", "baseline")


class ProviderError(RuntimeError):
    """A provider that cannot be used as configured (a missing package, credentials); one line, says what to do."""


class ProviderProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    url: str
    signing: str = "none"
    collections: dict[str, str]
    # Per sensor, a canonical band -> the asset key, or the keys tried in order (first present wins).
    assets: dict[str, dict[str, str | tuple[str, ...]]]
    scale_offset: dict[str, Literal["earthsearch-flag", "raster-bands", "baseline"]] = {}
    platforms: dict[str, tuple[str, ...]] = {}
    gdal_env: dict[str, dict[str, str]] = {}

    def collection(self, kind: str) -> str:
        return self.collections[kind]

    def asset_keys(self, kind: str, band: str) -> tuple[str, ...]:
        """Every key the asset of `band` goes by at this provider, the canonical one first."""
        keys = self.assets[kind][band]
        return (keys,) if isinstance(keys, str) else tuple(keys)

    def asset_key(self, kind: str, band: str) -> str:
        """The key of `band`'s asset in the items a cube stacks (catalog.items.normalize_items renames fallbacks to it)."""
        return self.asset_keys(kind, band)[0]

    def scale_offset_rule(self, sensor: str) -> str:
        """The rule deciding `sensor`'s reflectance scale/offset (Landsat: raster-bands unless stated)."""
        rule = self.scale_offset.get(sensor)
        if rule is None:
            if sensor == "landsat":
                return "raster-bands"
            raise ProviderError(
                f"provider {self.name!r} states no scale_offset rule for {sensor!r}: add one of "
                f"{', '.join(SCALE_OFFSET_RULES)} under scale_offset in catalog/providers.yaml"
            )
        return rule

    def allowed_platforms(self, kind: str) -> tuple[str, ...] | None:
        """The platforms accepted for `kind` (lower case), or None: any."""
        platforms = self.platforms.get(kind)
        return tuple(p.lower() for p in platforms) if platforms else None

    def signer(self) -> Callable[[pystac.Item], pystac.Item] | None:
        """The href signer, or None; any failure to get one is a ProviderError (one line)."""
        try:
            return SIGNERS[self.signing]()
        except ProviderError:
            raise
        except Exception as err:  # a broken optional package must not end a run in a traceback
            raise ProviderError(
                f"provider {self.name!r}: signing {self.signing!r} is unavailable ({type(err).__name__}: {err}); "
                "fix the signing entry in catalog/providers.yaml or reinstall its package"
            ) from None


def _no_signing():
    return None


def _planetary_computer():
    try:
        import planetary_computer
    except ImportError:  # optional: only needed against Planetary Computer
        raise ProviderError(
            "provider 'planetary-computer' signs asset hrefs with the planetary-computer package, "
            "which is not installed: pip install planetary-computer (or use provider earth-search)"
        ) from None
    return planetary_computer.sign_inplace


SIGNERS: dict[str, Callable[[], Callable | None]] = {"none": _no_signing, "planetary-computer": _planetary_computer}


@cache
def provider_profiles() -> dict[str, ProviderProfile]:
    raw = yaml.safe_load(resources.files("catalog").joinpath("providers.yaml").read_text())
    return {name: ProviderProfile(name=name, **body) for name, body in raw.items()}


def get_profile(name: str) -> ProviderProfile:
    profiles = provider_profiles()
    if name not in profiles:
        raise KeyError(f"unknown provider {name!r}: use one of {', '.join(sorted(profiles))}")
    return profiles[name]
