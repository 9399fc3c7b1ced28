#!/usr/bin/env bash
# Builds the two packs that tests/bench/device_gpu.sh unpacks on a lent GPU machine. That machine's
# python3 (3.12) holds torch, CUDA, numpy, numba, matplotlib and the like but not the geo stack, and
# one call carries at most 64 MiB with the working tree: the stack (~80 MB xz) goes in two packs.
# Run here, where pip reaches PyPI and `make install` has built .venv (~5 min, mostly xz):
#
#   tests/bench/device_packs.sh            # -> .gpupack1/p1.tar.xz (~36 MB), .gpupack2/p2.tar.xz (~46 MB)
#
# Versions are constraints.txt's. pystac's 1.15.2 wheel on this index is an empty shell (its code
# lives in split `pystac-core`/`pystac-ext-*` distributions), so pystac and pystac_client are copied
# from .venv (pure Python). Checked on 2026-12-04 with pyenv's 3.12.1 and PYTHONPATH on the packs:
# `python -m pipeline.cli synth` ran and the run's modules imported (torch aside).
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${WORK:-/tmp/gpu-packs}
P1=(pyogrio pandas pytz tzdata pyproj pydantic pydantic_core annotated-types typing-inspection)
P2=(rasterio shapely numcodecs datashader xarray-spatial zarr dask distributed stackstac rioxarray geopandas affine tornado
    param pyct colorcet donfig partd locket tblib zict cligj click-plugins google-crc32c xarray attrs certifi cloudpickle
    jsonschema msgpack multipledispatch pyparsing python-dateutil requests rich sortedcontainers toolz typer)
pins() { for n in "$@"; do grep -i -E "^${n}==" constraints.txt || { echo "no pin for $n in constraints.txt" >&2; return 1; }; done; }
# cp312 manylinux wheels, whatever this machine's Python (the device's python3 is 3.12)
target=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp)
for p in manylinux_2_28 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1 manylinux_2_5; do target+=(--platform "${p}_x86_64"); done
rm -rf "$work" && mkdir -p "$work"
for i in 1 2; do
  names="P$i[@]"
  python3 -m pip download -q "${target[@]}" -d "$work/whl$i" $(pins "${!names}")
  python3 -m pip install -q --no-index --no-compile "${target[@]}" --target "$work/p$i" "$work"/whl$i/*.whl
done
site=$(.venv/bin/python -c "import pystac, pathlib; print(pathlib.Path(pystac.__file__).parents[1])")
rm -rf "$work/p2/pystac" "$work/p2/pystac_client" && cp -a "$site/pystac" "$site/pystac_client" "$work/p2/"
find "$work/p1" "$work/p2" -type d \( -name tests -o -name __pycache__ \) -prune -exec rm -rf {} +
for i in 1 2; do
  mkdir -p ".gpupack$i" && tar -C "$work/p$i" -cf - . | xz -9 -T2 > ".gpupack$i/p$i.tar.xz"
  ls -la ".gpupack$i/p$i.tar.xz"
done
grep -q '^/.gpusite/' .git/info/exclude 2>/dev/null || printf '/.gpusite/\n/.gpupack1/\n/.gpupack2/\n' >> .git/info/exclude
