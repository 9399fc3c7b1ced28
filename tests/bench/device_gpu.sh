#!/usr/bin/env bash
# Issue #17's GPU measurements on a lent machine whose python3 holds torch and CUDA but not the geo
# stack: that travels as xz packs of cp312 packages (too large for one call together), unpacked
# into /tmp/gpusite, which outlives the calls of one warm machine while the synced working tree
# does not keep an ignored .gpusite (seen 2026-12-04); tests/bench/device_packs.sh builds the packs.
# Make the second call at once after the first (the machine stays warm for 30 s only), with a
# timeout_s of ~560: synth x4 took 140 s there and each run 65-80 s plus its cluster.
#
#   tests/bench/device_gpu.sh forward .gpupack1/p1.tar.xz   # unpack pack 1; forward Mpx/s of the networks, and of a predictor tile
#   tests/bench/device_gpu.sh run .gpupack2/p2.tar.xz       # unpack pack 2; synth x4; run_study with a GPU worker, then without
#   tests/bench/device_gpu.sh unpack .gpupack1/p1.tar.xz    # unpack only (to redo call 1 without the forward bench)
#
# Results go to $OUT (the device tool's folder; /tmp/gpu-out elsewhere).
set -uo pipefail
mode=$1 pack=$2
site=${GPUSITE:-/tmp/gpusite}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$site" "$OUT"
started=$(date +%s)
tar -C "$site" -xJf "$pack" && touch "$site/$(basename "$pack").ok" || { echo "unpacking $pack failed"; exit 3; }
echo "unpacked $pack in $(( $(date +%s) - started )) s"
export PYTHONPATH=$site PYTHONUNBUFFERED=1
case $mode in
unpack) ;;
forward)
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/nvidia-smi.csv"
  python3 -c "import torch, torchvision, numpy, numba, safetensors, pydantic; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'torchvision', torchvision.__version__, 'numpy', numpy.__version__, 'numba', numba.__version__)"
  timeout 240 python3 tests/bench/bench_model_gpu.py --repeats 10 --compile --json "$OUT/gpu_forward.json" 2>&1 | tee "$OUT/gpu_forward.log"
  timeout 120 python3 tests/bench/bench_predictor_gpu.py --json "$OUT/gpu_predictor.json" 2>&1 | tee "$OUT/gpu_predictor.log"
  ;;
run)
  for f in p1.tar.xz.ok p2.tar.xz.ok; do
    [ -f "$site/$f" ] || { echo "no $f in $site: the first call's pack is not on this machine (it went cold)"; exit 4; }
  done
  python3 -c "import pipeline.run, rasterio, pyogrio, stackstac, zarr, pandas, xrspatial; print('imports ok: pandas', pandas.__version__)" || exit 5
  s=$(date +%s)
  python3 -m pipeline.cli synth --size 4 --out /tmp/sa4 > "$OUT/synth.log" 2>&1 || { tail -20 "$OUT/synth.log"; exit 6; }
  echo "synth x4 in $(( $(date +%s) - s )) s"
  # With worker 0 on the GPU, then the same 16 cores without it (2026-12-04: 70.1/77.5 s vs 65.1 s).
  for kind in gpu cpu; do
    [ $kind = cpu ] && export CUDA_VISIBLE_DEVICES=
    timeout 200 python3 tests/bench/bench_run.py --area /tmp/sa4 --landsat-weights pipeline/weights/landsat.safetensors \
      --workers 4 --threads-per-worker 4 --json "$OUT/run_x4_$kind.json" 2>&1 | grep -v -e Warning -e '^  yield' -e '^  _rasterize' \
      | tee "$OUT/run_x4_$kind.log"
  done
  ;;
*) echo "usage: $0 forward|run PACK.tar.xz"; exit 2 ;;
esac
echo "done in $(( $(date +%s) - started )) s"
