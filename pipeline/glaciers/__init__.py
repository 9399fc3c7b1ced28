"""The per-glacier layer: inventories in, outlines rasterised, areas, hypsometry, aspect, terminus
retreat, change and accuracy out, each glacier a task that fails alone. Reads the store,
writes tables."""
