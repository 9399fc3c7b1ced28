"""From a region's yearly cubes (or one user scene) to glacier probability: the network mapped by
Dask over spatial chunks. Reads pixels through `catalog`, writes through `pipeline.store`."""
