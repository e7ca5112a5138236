#!/usr/bin/env bash
# The checks that need a GPU, as one run on a machine that has one and a CUDA build of torch:
#   bash scripts/device_check.sh [--no-bench]   (logs go to $OUT, else ./device-check)
# Installs the package in place against that machine's torch (the C++ CPU kernels are built too),
# runs the whole test suite (tests/test_devices.py adds "cuda" to its devices; the CLI's --device
# auto picks the GPU), trains/evaluates/forecasts from the command line on CUDA, then benchmarks
# against torch.nn.LSTM (cuDNN) on the GPU.
set -uo pipefail
out=${OUT:-device-check}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 CI=true
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    echo "cpus: $(nproc)"
    $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
} 2>&1 | tee "$out/machine.txt"
MAX_JOBS=$(nproc) $py -m pip install -q --no-deps --no-index --no-build-isolation -e . 2>&1 \
    | tail -n 5 | tee "$out/build.txt"
$py -c "from lstmbyhand.nn import native; print('compiled CPU kernels built:', native.built())" \
    | tee -a "$out/build.txt"
timeout 420 $py -m pytest -q -p no:cacheprovider --durations=10 2>&1 | tee "$out/tests.txt"
run=$(mktemp -d)/airline
{
    $py -m lstmbyhand train src/lstmbyhand/datasets/airline.csv --target passengers \
        --device cuda --epochs 30 --out "$run" --quiet &&
        grep -o '"device": "[^"]*"' "$run/config.json"
    $py -m lstmbyhand evaluate "$run" && $py -m lstmbyhand forecast "$run" --data src/lstmbyhand/datasets/airline.csv --steps 6
} 2>&1 | tee "$out/cli_cuda.txt"
[ "${1:-}" = --no-bench ] && exit 0
timeout 240 $py -m lstmbyhand bench --device cuda --repeats 9 2>&1 | tee "$out/bench_cuda.txt"
