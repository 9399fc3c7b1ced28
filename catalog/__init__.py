"""Where the pixels come from: scenes found in STAC catalogs, read onto one grid, masked and composited."""

from catalog.graph_cull import ensure_exact_layer_cull

ensure_exact_layer_cull()  # before any graph is built here: a cut graph must stay cut (catalog.graph_cull)
