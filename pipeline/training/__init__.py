"""Training the segmentation network: samples and labels, the fit, training on the synthetic world,
and scoring on held-out years and glaciers. Runs before any region is mapped; its product is
the weights in `pipeline/weights/`."""
