"""Sizing and starting the compute: `plan` estimates a run from footprints and measured rates,
`cluster` starts local, SLURM or Kubernetes Dask clusters."""
