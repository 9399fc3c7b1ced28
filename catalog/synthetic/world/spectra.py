"""Surface reflectance spectra of the training world's surface classes, 400-2500 nm.

No network here, so every spectrum is a *digitised approximation*: knots (nm, reflectance)
read off published library spectra and optical models as the author knows them, interpolated
linearly in between. They reproduce each material's shape and level (snow's NIR fall-off and
near-zero SWIR, the red edge, water dark beyond 750 nm, the Al-OH / CO3 rock features) to a
few hundredths, not the archive's exact numbers. Replace a table by the real file (same
knots format) when the library can be read.

Sources (per spectrum below):
- Snow: Wiscombe & Warren (1980) J. Atmos. Sci. 37:2712 (Mie/delta-Eddington albedo vs grain
  radius, 50-100 um fresh, 500-1000 um old/coarse); Painter et al. (2009) Remote Sens. Environ.
  113:868 (MODSCAG endmembers); Dozier et al. (2009) Adv. Water Resour. 32:1007.
- Firn, clean and dirty glacier ice: Hall, Chang, Foster et al. (1988) Ann. Glaciol. 11:54
  (field spectra of snow, firn and ice, Grasshopper Glacier); Zeng, Cao, Feng et al. (1984)
  Ann. Glaciol. 5:189; Naegeli, Damm, Huss et al. (2015) Remote Sens. 7:12737 (ASD spectra of
  bare and dirty ice, Glacier de la Plaine Morte).
- Rock (granite, limestone, dark schist): ECOSTRESS spectral library v1, Meerdink et al. (2019)
  Remote Sens. Environ. 230:111196 (ASTER library, Baldridge et al. 2009): igneous felsic
  (granite), sedimentary limestone (calcite CO3 band at 2.34 um), metamorphic schist; USGS
  Spectral Library v7, Kokaly et al. (2017) USGS Data Series 1035 (calcite, muscovite).
- Vegetation: USGS splib07 "Lawn_Grass" and alpine meadow field spectra (Kokaly et al. 2017);
  ECOSTRESS "grass" (Meerdink et al. 2019).
- Water: clear lake after Bukata et al. (1995) "Optical properties and remote sensing of inland
  and coastal waters" and the ECOSTRESS "tap water"; turbid glacial lake after Giardino et al.
  (2010) / Dörnhöfer & Oppelt (2016) field spectra of suspended-sediment-rich lakes.

Debris cover is not a library entry: it is the scene's rock, wetter and finer (x 0.8), mixed
with dirty ice (thin debris) - see scene.py - so its spectrum follows the local lithology, as it
does on real debris-covered tongues.
"""

from __future__ import annotations

from enum import IntEnum
from functools import lru_cache

import numpy as np


class Surface(IntEnum):
    """Surface classes of the world; the first four are glacier surfaces, debris only on glaciers."""

    SNOW_FRESH = 0
    SNOW_OLD = 1
    FIRN = 2
    ICE_CLEAN = 3
    ICE_DIRTY = 4
    DEBRIS_THIN = 5
    DEBRIS_THICK = 6
    GRANITE = 7
    LIMESTONE = 8
    SCHIST = 9
    VEGETATION = 10
    WATER_CLEAR = 11
    WATER_TURBID = 12


ROCKS = (Surface.GRANITE, Surface.LIMESTONE, Surface.SCHIST)

# (nm, reflectance) knots. Comments give the source; all are digitised approximations.
KNOTS: dict[Surface, tuple[tuple[float, float], ...]] = {
    # Wiscombe & Warren (1980) r ~ 100 um; Painter et al. (2009) fine-snow endmember.
    Surface.SNOW_FRESH: (
        (400, .97), (500, .97), (600, .96), (700, .94), (800, .89), (850, .85), (900, .80), (950, .72),
        (1030, .58), (1100, .55), (1150, .45), (1260, .46), (1350, .25), (1450, .04), (1500, .04),
        (1600, .09), (1700, .11), (1800, .09), (1900, .01), (2000, .01), (2100, .03), (2200, .035),
        (2300, .02), (2400, .01), (2500, .01),
    ),
    # Wiscombe & Warren (1980) r ~ 700 um with a little soot; Painter et al. (2009) coarse snow.
    Surface.SNOW_OLD: (
        (400, .86), (500, .89), (600, .88), (700, .85), (800, .76), (850, .71), (900, .64), (950, .54),
        (1030, .40), (1100, .30), (1150, .20), (1260, .19), (1350, .07), (1450, .01), (1500, .01),
        (1600, .02), (1700, .035), (1800, .03), (1900, .003), (2000, .003), (2100, .01), (2200, .012),
        (2300, .007), (2400, .003), (2500, .003),
    ),
    # Hall et al. (1988) firn; Zeng et al. (1984).
    Surface.FIRN: (
        (400, .68), (450, .72), (500, .74), (600, .73), (700, .68), (800, .58), (850, .53), (900, .45),
        (950, .36), (1030, .25), (1100, .17), (1150, .10), (1260, .09), (1350, .03), (1450, .01),
        (1600, .012), (1700, .02), (1800, .017), (1900, .002), (2000, .002), (2200, .006), (2500, .002),
    ),
    # Hall et al. (1988) and Naegeli et al. (2015) bare clean ice.
    Surface.ICE_CLEAN: (
        (400, .58), (450, .60), (500, .59), (550, .56), (600, .53), (650, .49), (700, .43), (800, .33),
        (850, .28), (900, .20), (950, .12), (1030, .08), (1100, .04), (1260, .03), (1400, .005),
        (1600, .008), (1700, .01), (1800, .008), (1900, .002), (2200, .004), (2500, .002),
    ),
    # Naegeli et al. (2015) dirty (sediment/cryoconite) ice.
    Surface.ICE_DIRTY: (
        (400, .22), (450, .25), (500, .27), (550, .29), (600, .30), (650, .30), (700, .29), (800, .24),
        (850, .21), (900, .17), (950, .12), (1030, .10), (1100, .07), (1260, .06), (1400, .02),
        (1500, .03), (1600, .04), (1700, .045), (1800, .04), (1900, .015), (2000, .02), (2200, .03),
        (2300, .025), (2500, .02),
    ),
    # Debris rows are placeholders: scene.py replaces them by the scene's rock (see module doc).
    Surface.DEBRIS_THIN: ((400, .10), (2500, .20)),
    Surface.DEBRIS_THICK: ((400, .10), (2500, .20)),
    # ECOSTRESS igneous felsic (granite), Meerdink et al. (2019); Al-OH feature ~2.2 um.
    Surface.GRANITE: (
        (400, .12), (450, .15), (500, .18), (550, .21), (600, .24), (650, .26), (700, .28), (800, .30),
        (900, .31), (1000, .31), (1200, .33), (1350, .34), (1400, .32), (1500, .34), (1600, .35),
        (1800, .35), (1900, .31), (2000, .33), (2100, .34), (2200, .31), (2300, .32), (2400, .30),
        (2500, .29),
    ),
    # ECOSTRESS sedimentary limestone; USGS splib07 calcite (CO3 band 2.34 um).
    Surface.LIMESTONE: (
        (400, .30), (450, .35), (500, .38), (550, .41), (600, .43), (700, .45), (800, .46), (1000, .48),
        (1200, .50), (1350, .50), (1400, .47), (1500, .50), (1600, .51), (1800, .50), (1900, .45),
        (2000, .48), (2150, .48), (2250, .44), (2340, .33), (2400, .40), (2500, .38),
    ),
    # ECOSTRESS metamorphic schist (dark, biotite/amphibole-rich).
    Surface.SCHIST: (
        (400, .06), (450, .07), (500, .08), (550, .09), (600, .10), (650, .11), (700, .12), (800, .13),
        (1000, .13), (1200, .15), (1350, .16), (1400, .15), (1600, .17), (1800, .17), (1900, .15),
        (2000, .16), (2100, .16), (2200, .14), (2300, .14), (2500, .13),
    ),
    # USGS splib07 Lawn_Grass / ECOSTRESS grass: green peak, red well, red edge 690-750 nm.
    Surface.VEGETATION: (
        (400, .03), (450, .04), (500, .05), (550, .10), (600, .07), (650, .045), (675, .04), (700, .10),
        (725, .28), (750, .42), (800, .46), (900, .47), (1000, .46), (1100, .44), (1150, .38),
        (1260, .39), (1350, .25), (1450, .12), (1550, .26), (1650, .31), (1750, .28), (1850, .15),
        (1950, .05), (2050, .11), (2200, .17), (2300, .14), (2400, .10), (2500, .07),
    ),
    # Clear alpine lake (Bukata et al. 1995; ECOSTRESS water).
    Surface.WATER_CLEAR: (
        (400, .05), (450, .05), (500, .045), (550, .04), (600, .025), (650, .015), (700, .01), (750, .006),
        (800, .005), (900, .003), (1000, .002), (1200, .001), (2500, .001),
    ),
    # Turbid glacial lake, suspended sediment (Giardino et al. 2010; Dörnhöfer & Oppelt 2016).
    Surface.WATER_TURBID: (
        (400, .06), (450, .08), (500, .10), (550, .12), (600, .12), (650, .11), (700, .09), (750, .05),
        (800, .035), (850, .025), (900, .02), (1000, .01), (1200, .005), (1600, .002), (2500, .001),
    ),
}

WAVELENGTHS_NM = np.arange(350.0, 2601.0, 1.0)
"""The 1 nm grid on which spectra and response functions meet."""


@lru_cache(maxsize=None)
def spectrum(surface: Surface) -> np.ndarray:
    """The class's reflectance on WAVELENGTHS_NM (linear between knots, flat beyond the ends)."""
    nm, r = np.asarray(KNOTS[Surface(surface)], dtype=np.float64).T
    return np.interp(WAVELENGTHS_NM, nm, r)
