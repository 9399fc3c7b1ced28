"""Spectral response functions (SRF) of Sentinel-2 MSI and Landsat 8/9 OLI, and band integration.

Band reflectance is what a sensor band sees of a spectrum: the reflectance weighted by the band's
response times the solar irradiance, rho_b = int(rho S E) / int(S E), so a flat spectrum gives
back its value whatever the band.

Each band is tabulated as centre wavelength and FWHM and shaped as a super-Gaussian
exp(-ln2 |2(l - c)/FWHM|^6) - flat-topped with steep edges, a half response at c +- FWHM/2.
This approximates the measured, tabulated SRFs (which have ripples and slightly asymmetric
edges) to well under 0.01 in band reflectance for the smooth spectra of spectra.py.
- Sentinel-2A/2B MSI: ESA "Sentinel-2 Spectral Response Functions (S2-SRF)",
  COPE-GSEG-EOPG-TN-15-0007, issue 3 (2021): central wavelength / bandwidth per unit.
- Landsat 8 OLI: Barsi, Lee, Kvaran, Markham & Pedelty (2014) Remote Sens. 6:10232, Table 2
  (centre, FWHM of the band-average relative spectral response). Landsat 9 OLI-2 is taken as
  OLI: its pre-launch RSRs agree within ~1 nm in centre and FWHM (USGS L9 RSR release), an
  approximation stated here, not a measurement.
- Solar irradiance E: a 5778 K black body scaled to 1 at 550 nm, an approximation of the
  Thuillier et al. (2003) spectrum (it lacks the Fraunhofer lines; those shift band values by
  < 0.005 for these smooth spectra).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from catalog.synthetic.world.spectra import WAVELENGTHS_NM, Surface, spectrum

BAND_ROLES = ("blue", "green", "red", "nir", "swir16", "swir22")
"""Order of every table below; the order of catalog.providers.REFLECTANCE_BANDS for both sensors."""

# (centre nm, FWHM nm) per band role.
BANDS_NM: dict[str, tuple[tuple[float, float], ...]] = {
    "sentinel-2a": ((492.7, 65.0), (559.8, 35.0), (664.6, 30.0), (832.8, 105.0), (1613.7, 90.0), (2202.4, 174.0)),
    "sentinel-2b": ((492.3, 65.0), (558.9, 35.0), (664.9, 31.0), (832.9, 104.0), (1610.4, 94.0), (2185.7, 185.0)),
    "landsat-8": ((482.04, 60.04), (561.41, 57.33), (654.59, 37.47), (864.67, 28.25), (1608.86, 84.72), (2200.73, 186.66)),
    "landsat-9": ((482.04, 60.04), (561.41, 57.33), (654.59, 37.47), (864.67, 28.25), (1608.86, 84.72), (2200.73, 186.66)),
}
PLATFORMS: dict[str, tuple[str, ...]] = {"sentinel-2": ("sentinel-2a", "sentinel-2b"), "landsat": ("landsat-8", "landsat-9")}
SHAPE_ORDER = 6


def response(platform: str) -> np.ndarray:
    """(band, wavelength) relative response on WAVELENGTHS_NM, peak 1."""
    if platform not in BANDS_NM:
        raise KeyError(f"unknown platform {platform!r}; use one of {sorted(BANDS_NM)}")
    centre, fwhm = np.asarray(BANDS_NM[platform]).T
    x = 2.0 * (WAVELENGTHS_NM[None, :] - centre[:, None]) / fwhm[:, None]
    return np.exp(-np.log(2.0) * np.abs(x) ** SHAPE_ORDER)


def solar_irradiance() -> np.ndarray:
    """Relative solar spectral irradiance on WAVELENGTHS_NM (5778 K black body, 1 at 550 nm)."""
    h, c, k, t = 6.62607e-34, 2.99792e8, 1.380649e-23, 5778.0
    lam = WAVELENGTHS_NM * 1e-9
    planck = 1.0 / (lam**5 * np.expm1(h * c / (lam * k * t)))
    return planck / np.interp(550.0, WAVELENGTHS_NM, planck)


def integrate(spectra: np.ndarray, platform: str) -> np.ndarray:
    """Band reflectance (..., band) of spectra (..., wavelength) on WAVELENGTHS_NM."""
    weights = response(platform) * solar_irradiance()[None, :]
    weights /= weights.sum(axis=1, keepdims=True)
    return np.asarray(spectra, dtype=np.float64) @ weights.T


@lru_cache(maxsize=None)
def library_bands(platform: str) -> np.ndarray:
    """(surface, band) band reflectance of every library spectrum for `platform`, float32, read-only."""
    table = integrate(np.stack([spectrum(s) for s in Surface]), platform).astype(np.float32)
    table.setflags(write=False)
    return table


def band_centres_um(platform: str) -> np.ndarray:
    """Centre wavelengths (um) of the six bands, for wavelength-dependent haze and skylight."""
    return np.asarray([c for c, _ in BANDS_NM[platform]]) / 1000.0
