"""Provider profiles: a STAC endpoint, its collection ids, its asset keys and how to sign hrefs.

Profiles are data (`providers.yaml`), so Earth Search, Planetary Computer and a catalog on
disk go through one code path; only the signing function is looked up by name.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Callable

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


class ProviderProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    url: str
    signing: str = "none"
    collections: dict[str, str]
    assets: dict[str, dict[str, str]]

    def collection(self, kind: str) -> str:
        return self.collections[kind]

    def asset_key(self, kind: str, band: str) -> str:
        return self.assets[kind][band]

    def signer(self) -> Callable[[pystac.Item], pystac.Item] | None:
        return SIGNERS[self.signing]()


def _no_signing():
    return None


def _planetary_computer():
    try:
        import planetary_computer
    except ImportError as err:  # optional: only needed against Planetary Computer
        raise RuntimeError(
            "provider 'planetary-computer' signs asset hrefs with the planetary-computer package: "
            "pip install planetary-computer"
        ) from err
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
