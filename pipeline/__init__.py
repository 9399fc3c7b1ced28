"""What is done with the pixels `catalog` finds: from yearly cubes to the numbers glaciologists publish.

The stages, in the order data flows through them (each subpackage's ``__init__`` says what it owns):

- `model`: the segmentation networks, their inputs, losses, weights and predictors;
- `training`: samples, labels and the fit that make the shipped weights (before any run);
- `inference`: a region's yearly cubes (or one user scene) to glacier probability, over Dask;
- `store`: the region's Zarr store of yearly probabilities and static layers, resumable;
- `glaciers`: the per-glacier layer: areas, hypsometry, aspect, terminus retreat, change,
  accuracy, each glacier a task that fails alone;
- `outputs`: what users open: the report, mask COGs and the run's STAC catalog;
- `run` (with `config` and `preflight`): the whole study, one command; `cli`: the command line;
- `scale`: sizing a run (`plan`) and starting the cluster it runs on (`cluster`).
"""
