"""Run directories on an object store: a `gs://` workdir, served by a local GCS emulator
(no network), through epath. (Orbax writes checkpoints there with TensorStore's GCS
driver: `scripts/remote_workdir.py` trains, stops and resumes a run on this emulator;
the emulator ignores conditional writes and fails TensorStore's manifest writes after
the first run in a process, so that check is not part of the suite.)"""
import os

import numpy as np
import pytest

import gcs_emulator
from stylegan_ad import files

BUCKET = "runs"


@pytest.fixture(scope="module")
def gcs():
  old = {k: os.environ.get(k) for k in gcs_emulator.ENV}
  server = gcs_emulator.start(BUCKET)
  yield f"gs://{BUCKET}"
  for k, v in old.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v
  server.stop()


def test_files_round_trip_on_the_object_store(gcs):
  run = f"{gcs}/probe/run"
  files.makedirs(run)
  files.write_json(f"{run}/a.json", {"x": 1})
  files.write_bytes(f"{run}/b.bin", b"\x00\x01")
  assert files.is_remote(run) and files.absolute(run) == run and files.name(run + "/") == "run"
  assert files.read_json(f"{run}/a.json") == {"x": 1}
  assert files.listdir(run) == ["a.json", "b.bin"]
  assert not os.path.exists("gs:")


def test_a_stage_logs_and_reports_into_a_gs_workdir(gcs):
  """The training logger (JSONL, TensorBoard events, sample PNGs), a resumed stage's log,
  the calibration file and the report's plots, all through epath into the bucket."""
  from stylegan_ad import detect, plots
  from stylegan_ad.train.logger import RunLogger
  run = f"{gcs}/r/gan"
  log = RunLogger(run, total_steps=4)
  log.scalars(1, {"g/loss": 1.0})
  log.image("samples", 1, np.zeros((8, 8, 3), np.uint8))
  log.close()
  log = RunLogger(run, total_steps=4, start_step=1)   # a resumed stage appends to the same file
  log.scalars(2, {"g/loss": 0.5})
  log.close()
  assert [r["step"] for r in plots.read_metrics(f"{run}/metrics.jsonl")] == [1, 2]
  assert files.listdir(f"{run}/samples") == ["samples_0000001.png"]
  assert [n for n in files.listdir(f"{run}/tensorboard") if n.startswith("events")]
  detect.save_calibration(f"{run}/calibration.json", [], 0.01)
  assert files.read_json(f"{run}/calibration.json")["fpr"] == 0.01
  assert plots.run_report_plots(f"{gcs}/r/report/plots", {}, f"{gcs}/r") == ["losses.png"]
  assert files.listdir(f"{gcs}/r/report/plots") == ["losses.png"]
  assert not os.path.exists("gs:")
