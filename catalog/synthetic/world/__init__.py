"""A training world that looks like the Earth: real and procedural relief, real and procedural
glaciers, surface classes with library spectra through real sensor response functions, real sun
geometry with cast shadows, and the residues of atmospheric correction - drawn from a seed.

`draw_scene(seed, sensor)` is the entry point (draw.py).
"""

from catalog.synthetic.world.draw import WorldScene, draw_scene

__all__ = ["WorldScene", "draw_scene"]
