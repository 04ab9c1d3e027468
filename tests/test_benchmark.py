"""scripts/benchmark.py runs and reports what it claims (tiny models; no timing is asserted)."""
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--size=32", "--ngf=4", "--n_blocks=1", "--ndf=4", "--iters=1"]


def _bench(tmp_path, *flags):
  out = tmp_path / "b.json"
  env = {**os.environ, "JAX_DISABLE_MOST_OPTIMIZATIONS": "true"}  # compile fast: nothing here is timed
  subprocess.run([sys.executable, "scripts/benchmark.py", *flags, f"--out={out}"], cwd=ROOT, check=True,
                 capture_output=True, text=True, env=env)
  return json.loads(out.read_text())


def test_train_step_reports_flops_and_the_allreduce(tmp_path):
  r = _bench(tmp_path, "--what=train_step", "--batch=4", *TINY)  # 4 forced devices: data parallel
  assert r["devices"] == 4 and r["batch"] == 4
  assert r["gflops_per_step"] > 0 and r["sec_per_iter"] > 0 and r["compile_sec"] > 0
  assert r["gflops_per_sec"] == pytest.approx(r["gflops_per_step"] / r["sec_per_iter"])
  assert r["gradient_allreduce_bytes_per_step"] == 4 * r["param_count"] and r["peak_rss_mb"] > 0
  m = _bench(tmp_path, "--what=train_step", "--main_job_g", "--batch=4", "--depth=1", "--iters=1")
  assert m["model"] == "residual_unet-ngf32-depth1/patchgan-ndf16" and m["size"] == 48 and m["batch"] == 4
  assert m["gflops_per_step"] > 0 and m["param_count"] > r["param_count"]  # a U-Net of width 32, not the tiny ResNet


@pytest.mark.parametrize("flags,screened", [((), True), (("--screen=0",), False)])
def test_inference_flags_the_fraction_asked_for(tmp_path, flags, screened):
  # 20 images at batch 4: 10% is 2 images, whatever float differences the two batchings bring
  r = _bench(tmp_path, "--what=inference", "--batch=4", "--flagged=0.1", "--attempts=2", *TINY, *flags)
  assert r["images"] == 20 and r["flagged_fraction"] == 0.1 and r["attempts"] == 2
  assert sum(r["verdicts"].values()) == 2 and set(r["verdicts"]) == {"repaired", "regenerated", "failed"}
  assert len(r["regenerated_at_attempt"]) == 2 and sum(r["regenerated_at_attempt"]) == r["verdicts"]["regenerated"]
  if screened:
    assert 0.1 < r["screen_passed_fraction"] < 1.0 and r["screen"] == 0.3
  else:
    assert r["screen_passed_fraction"] == 1.0 and r["screen"] == 0.0
  assert math.isfinite(r["overhead_fraction"]) and r["stylize_images_per_sec"] > 0
  assert r["detector_ms_per_image_view"] > 0


def test_pipeline_and_peak(tmp_path, data_dir):
  r = _bench(tmp_path, "--what=pipeline", "--size=64", "--batch=2", f"--data_dir={data_dir}")
  assert r["examples_per_sec"] == pytest.approx(2 / r["sec_per_batch"])
  assert _bench(tmp_path, "--what=peak")["gflops_per_sec"] > 0


def test_every_generator_ablation_row_is_a_valid_config():
  """scripts/ablate_generator.py: each row's changes name real config keys and validate
  (a misspelt key would train the default and report it as the row)."""
  code = ("import sys; sys.path.insert(0, 'scripts'); import ablate_generator as ab\n"
          "from stylegan_ad import configs\n"
          "for row in ab.ROWS:\n"
          "  c = ab._config(row, 'cartoon'); configs.validate(c)\n"
          "  for key, value in ab.ROWS[row].items():\n"
          "    got = c[key] if '.' not in key else c[key.split('.')[0]][key.split('.')[1]]\n"
          "    got = got.to_dict() if hasattr(got, 'to_dict') else got\n"
          "    assert got == value, (row, key, got, value)\n"
          "print(len(ab.ROWS))")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-2000:]
  assert int(out.stdout.split()[-1]) >= 40
