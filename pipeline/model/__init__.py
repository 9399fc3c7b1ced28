"""The glacier segmentation model: networks, their inputs, losses, weights and predictors."""
