"""What users open: the HTML report, mask COGs and the STAC catalog of a run, each swapped into
place whole."""
