#!/usr/bin/env bash
# Runs the benchmark suite (issue: performance) and writes one JSON per figure into $1
# (default runs/benchmarks). Each figure is a separate process, so peak memory and
# compile time are per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
out="${1:-runs/benchmarks}"
mkdir -p "$out"
py=.venv/bin/python
$py scripts/benchmark.py --what=peak --out="$out/peak.json"
$py scripts/benchmark.py --what=pipeline --size=128 --batch=1 --out="$out/pipeline_128.json"
$py scripts/benchmark.py --what=train_step --size=128 --batch=1 --out="$out/train_step_128.json"
$py scripts/benchmark.py --what=train_step --main_job_g --batch=4 --iters=20 --out="$out/train_step_main_job.json"
$py scripts/benchmark.py --what=train_step --size=128 --batch=1 --upsample=subpixel --out="$out/train_step_128_subpixel.json"
$py scripts/benchmark.py --what=train_step --size=128 --batch=1 --upsample=transpose --out="$out/train_step_128_transpose.json"
$py scripts/benchmark.py --what=train_step --size=256 --batch=1 --upsample=transpose --iters=3 --out="$out/train_step_256_transpose.json"
$py scripts/benchmark.py --what=train_step --size=256 --batch=1 --iters=3 --out="$out/train_step_256.json"
$py scripts/benchmark.py --what=inference --size=128 --batch=8 --flagged=0.1 --out="$out/inference_128.json"
$py scripts/benchmark.py --what=inference --size=128 --batch=8 --flagged=0.1 --attempts=1 --out="$out/inference_128_attempts1.json"
$py scripts/benchmark.py --what=inference --size=128 --batch=8 --flagged=0.1 --screen=0 --out="$out/inference_128_no_screen.json"
$py scripts/benchmark.py --what=inference --size=128 --batch=8 --flagged=0.1 --views=2 --out="$out/inference_128_views2.json"
$py scripts/benchmark.py --what=restart --out="$out/restart.json"
$py scripts/benchmark.py --what=torch_photo --photo=1024x768 --iters=3 --out="$out/torch_photo_1024x768.json"
# One photo at its own size through the folder CLI's path (needs a finished main job).
run="${STYLEGAN_AD_RUN:-runs/embedded}"
if [ -f "$run/detector/calibration.json" ]; then
  $py scripts/benchmark.py --what=photo --workdir="$run" --photo=1024x768 --out="$out/photo_1024x768.json"
  $py scripts/benchmark.py --what=photo --workdir="$run" --photo=1024x768 --force_flagged --iters=3 \
    --out="$out/photo_1024x768_flagged.json"
  $py scripts/benchmark.py --what=photo --workdir="$run" --photo=4000x3000 --max_side=4000 --iters=1 \
    --out="$out/photo_4000x3000_tiled.json"
  $py scripts/benchmark.py --what=video --workdir="$run" --photo=256x256 --out="$out/video_256x256.json"
else
  echo "skipping the photo benchmarks: run the main job into $run first (bash scripts/run_main.sh)" >&2
fi
# The PyTorch reference on this machine (issue #6's baseline); PyTorch is optional.
if $py -c "import torch" 2>/dev/null; then
  $py scripts/reference_torch.py --size=128 --out="$out/torch_reference_128.json"
  $py scripts/reference_torch.py --size=256 --iters=3 --out="$out/torch_reference_256.json"
else
  echo "skipping the PyTorch reference: .venv/bin/pip install torch==2.13.0 to time it" >&2
fi
cat "$out"/*.json
