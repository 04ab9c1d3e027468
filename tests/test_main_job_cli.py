"""The main job at a tiny size, then the folder CLI on hostile inputs against its run."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from experiments.configs import embedded as embedded_config
from stylegan_ad import correct, main_job, inference
from stylegan_ad.report import NETWORK_ALONE
from stylegan_ad.data import images as images_lib, sources
from stylegan_ad.errors import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def main_run(data_dir, tmp_path_factory):
  c = embedded_config.get_config("tiny")
  c.data.data_dir = data_dir
  workdir = str(tmp_path_factory.mktemp("main"))
  summary = main_job.run(c, workdir)
  return workdir, summary


def test_main_job_writes_summary_report_and_stage_runs(main_run, data_dir):
  workdir, summary = main_run
  on_disk = json.load(open(os.path.join(workdir, "report", "summary.json")))
  for key in ("psnr", "ssim", "identity_psnr", "identity_ssim"):
    assert on_disk["stylize"][key] == pytest.approx(summary["stylize"][key])
    assert np.isfinite(on_disk["stylize"][key])
    # the whole test photos at their own size, next to the crops
    assert on_disk["stylize"]["photos"][key] == pytest.approx(summary["stylize"]["photos"][key])
  sizes = [(r["height"], r["width"]) for r in on_disk["stylize"]["photos"]["per_photo"]]
  assert sizes == [(300, 451), (427, 640), (500, 741), (500, 741)]
  assert len(on_disk["stylize"]["channel_mean_error"]) == 3
  # the identity's drift beside G's: the whole test photos' mean of x - S(x) (S darkens where it inks)
  c = embedded_config.get_config("tiny")
  photos = sources.load(c.data.source, crop_size=c.data.crop_size, data_dir=data_dir).test_photos
  want = np.mean([np.mean(photos.images[i] / 127.5 - photos.targets[i] / 127.5, axis=(0, 1))
                  for i in range(len(photos))], axis=0)
  assert on_disk["stylize"]["photos"]["identity_channel_mean_error"] == pytest.approx(want, abs=1e-4)
  assert all(e > 0 for e in want)
  assert len(on_disk["stylize"]["identity_channel_mean_error"]) == 3
  whole = on_disk["detect"]["whole_photos"]
  assert whole["images"] == 4 and 0 <= whole["fpr"] <= 1 and whole["flagged"] == sum(
      s > whole["threshold"] for s in whole["scores"])
  for key in ("image_auroc", "pixel_auroc", "aupro"):
    assert 0.0 <= on_disk["detect"][key] <= 1.0
  for key in ("psnr_before", "psnr_after", "repair_rate", "clean_unchanged"):
    assert key in on_disk["correct"]
  assert on_disk["correct"]["unflagged_bit_identical"] is True
  # G's real failures corrected, against S(x): the harm rate, the baselines, which candidate was kept
  cr = on_disk["correct_real"]
  for key in ("psnr_before", "psnr_after", "ssim_before", "ssim_after", "restore_everywhere_psnr", "tta_psnr",
              "oracle_psnr"):
    assert np.isfinite(cr[key])
  assert 0.0 <= cr["harm_rate"] <= 1.0 and cr["unflagged_bit_identical"] is True
  assert set(cr["kept"]) == {"restorer", "tta_average", "perturbed_input"}
  assert cr["changed"] <= sum(cr["kept"].values()) <= cr["flagged"] <= cr["images"] == 52
  # one fidelity figure per regeneration attempt (the tiny config makes 2)
  regen = on_disk["correct"]["regeneration_psnr_to_clean"]
  assert set(regen) == {"tta_average", "perturbed_input"} and all(v > 0 for v in regen.values())
  assert on_disk["seconds"] > 0
  # where it ran: the CPU and JAX's backend and devices (4 forced host devices here)
  env = on_disk["environment"]
  assert env["backend"] == "cpu" and env["devices"] == f"{jax.device_count()} x cpu"
  scorers = {"discriminator", "detector", "feature_distance", "style_statistics", "tta_variance", "raw_vs_ema",
             "palette", "cycle"}  # cycle: the tiny run is unpaired
  assert set(on_disk["detect_all_scorers"]) == scorers
  # G's real failures: the detector's figures, every scorer's, the pool and its truth
  real = on_disk["real"]
  assert set(on_disk["real_all_scorers"]) == scorers | {NETWORK_ALONE}
  for key in ("pixel_auroc", "aupro", "image_auroc", "spearman", "fpr", "tpr", "anomalous_rate"):
    assert key in real
  assert 0.0 <= real["anomalous_rate"] <= 1.0 and real["pool"]["photos"] == 4
  assert real["reference"]["pixel_threshold"] > 0 and real["pool"]["pixel_threshold"] == real["reference"]["pixel_threshold"]
  variants = real["pool"]["variants"]
  assert {"ema/none", "raw/none", "step_1/none", "step_2/none", "step_3/none", "ema/hue"} <= set(variants)
  assert os.listdir(os.path.join(workdir, "gan", "snapshots")) and sorted(
      os.listdir(os.path.join(workdir, "gan", "snapshots")), key=int) == ["1", "2", "3"]
  report = os.path.join(workdir, "report")
  assert {"summary.json", "report.md", "index.html", "samples.png", "correction.png"} <= set(os.listdir(report))
  md = open(os.path.join(report, "report.md")).read()
  assert "| seen types | detector |" in md and "PSNR corrupted" in md
  assert f"JAX backend cpu ({jax.device_count()} x cpu)" in md
  # the sample grid's caption names its columns; F(G(x)) only because this run is unpaired
  assert "Columns: input x | G(x) | F(G(x)) | true S(x)" in md and on_disk["mode"] == "unpaired"
  # the plots: drawn from this run's figures and logs, and shown on the page
  drawn = set(os.listdir(os.path.join(report, "plots")))
  both_classes = 0 < real["pool"]["anomalous"] < real["pool"]["images"]
  has_regions = "pro_curve" in on_disk["real_all_scorers"]["detector"]
  assert drawn == {"real_hist.png", "real_variants.png", "synthetic_types.png", "losses.png"} | (
      {"real_roc.png"} if both_classes else set()) | ({"real_pro.png"} if has_regions else set())
  for name in drawn:
    assert f"![plot: {name}](plots/{name})" in md
  for v in on_disk["real_all_scorers"].values():
    assert len(v["image_scores"]) == real["pool"]["images"]
  # the GAN stage's own run directory
  gan = os.path.join(workdir, "gan")
  lines = [json.loads(l) for l in open(os.path.join(gan, "metrics.jsonl"))]
  assert [l["step"] for l in lines] == [2, 4, 6] and "g_ab/cycle" in lines[0]
  assert os.listdir(os.path.join(gan, "tensorboard"))
  assert os.path.exists(os.path.join(gan, "samples", "samples_0000006.png"))
  assert json.load(open(os.path.join(gan, "eval.json")))["num_images"] == 64
  calib = json.load(open(os.path.join(workdir, "detector", "calibration.json")))
  assert calib["fpr"] == 0.01 and set(calib["thresholds"]) == set(on_disk["detect_all_scorers"])
  # the detector's score is fused with the label-free maps on the reference photo (saved
  # with its thresholds); the benchmark also gives the network's own score
  fusion = calib["fusions"]["detector"]
  assert len(fusion["weights"]) == 3 and 0 < fusion["quantile"] < 1 and "detector" not in calib["screen_thresholds"]
  assert len(fusion["palette_fit"]) == 2 and len(fusion["palette"]["log_p"]) == fusion["palette"]["bins"] ** 3
  assert on_disk["real"]["fusion"]["weights"] == fusion["weights"] and "synthetic_share" in on_disk["real"]["fusion"]


def test_console_summary_is_short_and_names_the_report(main_run):
  from stylegan_ad import report
  workdir, summary = main_run
  text = report.console_summary(summary, os.path.join(workdir, "report"))
  assert len(text.splitlines()) <= 6 and os.path.join(workdir, "report", "index.html") in text
  assert f"crops {summary['stylize']['psnr']:.2f} dB" in text and "G's real failures" in text


@pytest.mark.heavy
def test_rerunning_the_main_job_resumes_every_stage(main_run, data_dir):
  workdir, summary = main_run
  c = embedded_config.get_config("tiny")
  c.data.data_dir = data_dir
  again = main_job.run(c, workdir)
  assert again["stylize"]["psnr"] == pytest.approx(summary["stylize"]["psnr"])
  assert again["stylize"]["photos"]["psnr"] == pytest.approx(summary["stylize"]["photos"]["psnr"])
  assert again["correct"]["psnr_after"] == pytest.approx(summary["correct"]["psnr_after"])


def _hostile_folder(root):
  os.makedirs(root)
  rng = np.random.default_rng(0)
  rgb = lambda h, w: rng.integers(0, 255, (h, w, 3), np.uint8)
  Image.fromarray(rgb(50, 80)).save(os.path.join(root, "good one.png"))
  Image.fromarray(rgb(40, 40)).save(os.path.join(root, "<script>alert(1)é \"q\" 'x'.jpg"))
  open(os.path.join(root, "zero.png"), "wb").close()
  for ext, fmt in (("png", "PNG"), ("jpg", "JPEG")):
    path = os.path.join(root, f"trunc.{ext}")
    Image.fromarray(rgb(64, 64)).save(path, fmt)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
  open(os.path.join(root, "notes.png"), "w").write("not an image")
  Image.fromarray(rgb(1, 1)).save(os.path.join(root, "one.png"))
  Image.fromarray(rng.integers(0, 65535, (30, 30), np.uint16)).save(os.path.join(root, "sixteen.png"))
  Image.fromarray(rgb(30, 30)).convert("CMYK").save(os.path.join(root, "cmyk.jpg"))
  Image.fromarray(rgb(30, 30)).convert("P").save(os.path.join(root, "palette.png"))
  Image.fromarray(rng.integers(0, 255, (30, 30, 2), np.uint8), "LA").save(os.path.join(root, "la.png"))
  im = Image.fromarray(rgb(20, 40))
  exif = im.getexif()
  exif[0x0112] = 6
  im.save(os.path.join(root, "rotated.jpg"), exif=exif)
  Image.fromarray(rgb(120, 120)).save(os.path.join(root, "bomb.png"))
  os.symlink("loop_b", os.path.join(root, "loop_a.png"))
  os.symlink("loop_a.png", os.path.join(root, "loop_b"))
  os.mkfifo(os.path.join(root, "pipe.png"))  # opening it would block
  Image.fromarray(rgb(24, 24)).save(os.path.join(root, LONG))   # its outputs' names would be too long
  Image.fromarray(rgb(24, 24)).save(os.path.join(os.fsencode(root), b"bad\xff name.png"), "PNG")  # not UTF-8


LONG = "x" * 240 + ".png"


def _snapshot(root):
  out = {}
  for d, _, files in os.walk(root):
    for f in files:
      p = os.path.join(d, f)
      if os.path.islink(p):
        out[p] = os.readlink(p)
      elif not os.path.isfile(p):
        out[p] = "not a regular file"
      else:
        out[p] = hashlib.sha256(open(p, "rb").read()).hexdigest()
  return out


def test_cli_handles_hostile_folder(main_run, tmp_path, monkeypatch):
  workdir, _ = main_run
  src = str(tmp_path / "in")
  _hostile_folder(src)
  before = _snapshot(src)
  monkeypatch.setattr(images_lib, "MAX_PIXELS", 10_000)  # bomb.png (14,400 px) is over it
  # overlapping input and output folders, either way round: refused before anything is written
  for out in (src, os.path.join(src, "out"), str(tmp_path)):
    with pytest.raises(DataError, match="overlaps --input"):
      inference.stylize_folder(workdir, src, out, batch=4)
  assert _snapshot(src) == before and not os.path.exists(os.path.join(src, "out"))
  out = str(tmp_path / "out")
  summary = inference.stylize_folder(workdir, src, out, batch=4)
  rows = {r["file"]: r for r in summary["files"]}
  errors = {f for f, r in rows.items() if r["verdict"] == "error"}
  assert errors == {"zero.png", "trunc.png", "trunc.jpg", "notes.png", "bomb.png", "loop_a.png", "pipe.png"}
  assert {f for f, r in rows.items() if r["verdict"] == "skipped"} == {"loop_b"}  # no image extension
  assert "empty file" in rows["zero.png"]["error"] and "bomb" in rows["bomb.png"]["error"]
  assert "loop_a.png" in rows["loop_a.png"]["error"] and "pipe.png: not a regular file" in rows["pipe.png"]["error"]
  ok = set(rows) - errors - {"loop_b"}
  assert ok == {"good one.png", "<script>alert(1)é \"q\" 'x'.jpg", "one.png", "sixteen.png", "cmyk.jpg",
                "palette.png", "la.png", "rotated.jpg", LONG, "bad\ufffd name.png"}
  # a name too long for its outputs', or not UTF-8: safe output names, the original name in the report
  assert rows["good one.png"]["stylized"] == "good one.png.stylized.png"
  for f in (LONG, "bad\ufffd name.png"):
    stem = rows[f]["stylized"][:-len(".stylized.png")]
    assert len(stem.encode()) <= inference.NAME_BYTES and stem.isprintable() and "\ufffd" not in stem
  for f in ok:
    assert rows[f]["verdict"] in ("clean", "repaired", "regenerated", "failed")
    if rows[f]["verdict"] in ("clean", "repaired"):
      assert rows[f]["regeneration"] == ""
    elif rows[f]["verdict"] == "regenerated":
      assert rows[f]["regeneration"] in correct.REGENERATIONS
    for key in ("input", "stylized", "corrected", "map"):
      assert os.path.isfile(os.path.join(out, rows[f][key]))
  rot = Image.open(os.path.join(out, rows["rotated.jpg"]["stylized"]))
  assert rot.size == (20, 40)  # EXIF orientation applied: portrait
  page = open(os.path.join(out, "index.html"), encoding="utf-8").read()
  assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)é &quot;q&quot; &#x27;x&#x27;.jpg" in page
  assert "bad\ufffd name.png" in page and LONG in page
  assert len(open(os.path.join(out, "results.csv")).read().splitlines()) == len(rows) + 1
  assert _snapshot(src) == before
  assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_cli_exit_codes_and_unwritable_output(main_run, tmp_path):
  workdir, _ = main_run
  src = str(tmp_path / "in")
  os.makedirs(src)
  Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(os.path.join(src, "a.png"))
  open(os.path.join(src, "bad.png"), "w").write("x")
  blocker = str(tmp_path / "file")
  open(blocker, "w").write("")
  with pytest.raises(DataError, match="output folder is not writable"):
    inference.stylize_folder(workdir, src, os.path.join(blocker, "out"))
  env = {**os.environ, "PYTHONPATH": ROOT}
  cmd = [sys.executable, "-m", "experiments.stylize", f"--workdir={workdir}", f"--input={src}"]
  proc = subprocess.run(cmd + [f"--output={tmp_path / 'o'}"], capture_output=True, text=True, env=env, cwd=ROOT)
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert not re.search(r"^I\d{4} ", proc.stderr, re.M)  # no library INFO lines at the default verbosity
  assert "bad.png: not an image" in proc.stderr and "1 stylized (" in proc.stdout and "1 unreadable" in proc.stdout
  proc = subprocess.run([sys.executable, "-m", "experiments.stylize", f"--workdir={tmp_path}",
                         f"--input={src}", f"--output={tmp_path / 'o2'}"], capture_output=True, text=True,
                        env=env, cwd=ROOT)
  assert proc.returncode == 2 and "not a main-job run directory" in proc.stderr


def test_cli_keeps_each_photos_own_size(main_run, tmp_path):
  """Outputs and maps come back at the photo's resolution (any aspect ratio, odd sizes);
  only a photo over --max_side is downscaled, and the report says so."""
  workdir, _ = main_run
  src = str(tmp_path / "in")
  os.makedirs(src)
  rng = np.random.default_rng(0)
  sizes = {"wide.png": (300, 200), "big.png": (1000, 700), "tiny.png": (8, 8), "thin.png": (1, 97),
           "huge.png": (1500, 1000)}  # downscaled into big.png's padded shape: one program for both
  for name, (w, h) in sizes.items():
    Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(os.path.join(src, name))
  out = str(tmp_path / "out")
  summary = inference.stylize_folder(workdir, src, out, max_side=1024)
  rows = {r["file"]: r for r in summary["files"]}
  for name, (w, h) in sizes.items():
    want = (1024, 683) if name == "huge.png" else (w, h)
    assert (rows[name]["width"], rows[name]["height"]) == (w, h)
    assert (rows[name]["out_width"], rows[name]["out_height"]) == want
    for key in ("input", "stylized", "corrected", "map"):
      assert Image.open(os.path.join(out, rows[name][key])).size == want, (name, key)
  page = open(os.path.join(out, "index.html"), encoding="utf-8").read()
  assert "1500x1000 (processed at 1024x683, --max_side)" in page


def test_cli_targets_and_saved_maps(main_run, tmp_path):
  """--targets: PSNR/SSIM to each photo's target before and after correction, detection
  figures from the run's failure truth; a missing, extra or differently sized target is
  named and the rest still measured. --save_maps: float maps at the photo's resolution."""
  from stylegan_ad.data import styles
  workdir, _ = main_run
  src, tgt, out = (str(tmp_path / d) for d in ("in", "targets", "out"))
  os.makedirs(src)
  os.makedirs(tgt)
  rng = np.random.default_rng(1)
  sizes = {"a.png": (53, 37), "b.png": (100, 37), "c.png": (41, 70), "d.png": (30, 30)}
  for name, (w, h) in sizes.items():
    photo = rng.integers(0, 255, (h, w, 3), np.uint8)
    Image.fromarray(photo).save(os.path.join(src, name))
    if name in ("a.png", "b.png"):
      Image.fromarray(styles.cartoon(photo)).save(os.path.join(tgt, name))
  Image.fromarray(rng.integers(0, 255, (12, 12, 3), np.uint8)).save(os.path.join(tgt, "c.png"))  # wrong size
  Image.fromarray(rng.integers(0, 255, (12, 12, 3), np.uint8)).save(os.path.join(tgt, "extra.png"))
  summary = inference.stylize_folder(workdir, src, out, max_side=64, targets_dir=tgt, save_maps=True)
  rows = {r["file"]: r for r in summary["files"]}
  for name in ("a.png", "b.png"):
    r = rows[name]
    assert np.isfinite([r["psnr_stylized"], r["psnr_corrected"], r["ssim_stylized"], r["ssim_corrected"]]).all()
    assert 0.0 <= r["true_failing_area"] <= 1.0 and "target_error" not in r
  assert "the target is 12x12, the photo 41x70" in rows["c.png"]["target_error"]
  assert "no target with this file name" in rows["d.png"]["target_error"]
  targets = summary["targets"]
  assert targets["measured"] == 2 and targets["targets_without_input"] == ["extra.png"]
  assert len(targets["target_errors"]) == 2 and "image_auroc" in targets and "pixel_auroc" in targets
  for name, (w, h) in sizes.items():  # b.png was processed at 64x24 (--max_side); its map is back at 100x37
    m = np.load(os.path.join(out, rows[name]["map_npy"]))
    assert m.shape == (h, w) and m.dtype == np.float32 and np.all((m >= 0) & (m <= 1))
  assert (rows["b.png"]["out_width"], rows["b.png"]["out_height"]) == (64, 24)
  html_text = open(os.path.join(out, "index.html")).read()
  assert "PSNR to target" in html_text and "no target with this file name" in html_text
  for bad, what in ((src, "input"), (out, "output")):
    with pytest.raises(DataError, match=f"is the {what} folder"):
      inference.stylize_folder(workdir, src, out, targets_dir=bad)


def test_stage_clock_prints_a_banner_per_stage(capsys):
  clock = main_job.StageClock(("gan", "detector"))
  clock.done("gan")
  clock.done("detector")
  err = capsys.readouterr().err.splitlines()
  assert [line.split("] ", 1)[1] for line in err] == [
      "[1/2] gan", f"gan: done in {err[1].split()[-1]}", "[2/2] detector", f"detector: done in {err[3].split()[-1]}"]
  assert set(clock.seconds) == {"gan", "detector"}


def test_cli_resumes_without_redoing_finished_files(main_run, tmp_path):
  """Outputs and a results.jsonl row are written as each file is done; a re-run (after a
  kill, or with new files) reuses finished files; --overwrite redoes them; a text file
  is skipped, not an error."""
  workdir, _ = main_run
  src, out = str(tmp_path / "in"), str(tmp_path / "out")
  os.makedirs(src)
  rng = np.random.default_rng(2)
  for name in ("a.png", "b.png"):
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), np.uint8)).save(os.path.join(src, name))
  open(os.path.join(src, "notes.txt"), "w").write("not an image")
  first = inference.stylize_folder(workdir, src, out)
  assert first["num_reused"] == 0 and first["num_errors"] == 0 and first["num_skipped"] == 1
  progress = os.path.join(out, inference.PROGRESS)
  assert len(open(progress).read().splitlines()) == 3
  stamp = os.stat(os.path.join(out, "a.png.stylized.png")).st_mtime_ns
  # a kill while writing b.png's row: its line is cut short, so b.png is redone
  lines = open(progress).read().splitlines()
  open(progress, "w").write("\n".join(lines[:1]) + "\n" + lines[1][:10])
  Image.fromarray(rng.integers(0, 255, (24, 32, 3), np.uint8)).save(os.path.join(src, "c.png"))
  second = inference.stylize_folder(workdir, src, out)
  rows = {r["file"]: r for r in second["files"]}
  assert second["num_reused"] == 1 and set(rows) == {"a.png", "b.png", "c.png", "notes.txt"}
  assert os.stat(os.path.join(out, "a.png.stylized.png")).st_mtime_ns == stamp
  assert rows["a.png"] == {r["file"]: r for r in first["files"]}["a.png"]
  assert set(inference._finished(out)) == {"a.png", "b.png", "c.png", "notes.txt"}  # the cut line stays alone
  third = inference.stylize_folder(workdir, src, out, overwrite=True)
  assert third["num_reused"] == 0 and os.stat(os.path.join(out, "a.png.stylized.png")).st_mtime_ns != stamp
  assert inference.stylize_folder(workdir, src, out)["num_reused"] == 3
  # other settings are other outputs: nothing is reused
  assert inference.stylize_folder(workdir, src, out, save_maps=True)["num_reused"] == 0


def _browser():
  """Headless Chromium through Selenium (Debian's chromium and chromium-driver; `.ci/run`
  installs them). Skipped where they are missing, except in CI."""
  import shutil
  chrome, driver = shutil.which("chromium"), shutil.which("chromedriver")
  if not (chrome and driver):
    if os.environ.get("CI"):
      pytest.fail("chromium and chromium-driver are missing (.ci/run installs them with apt)")
    pytest.skip("chromium / chromedriver not installed")
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  opts = webdriver.ChromeOptions()
  opts.binary_location = chrome
  for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--window-size=1300,1000"):
    opts.add_argument(flag)
  opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
  return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def _page_problems(driver):
  broken = driver.execute_script(
      "return [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")
  errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
  return broken, errors


def test_both_pages_in_a_real_browser(main_run, tmp_path):
  """The run report and the folder CLI's page in headless Chromium: every image loads,
  no console errors, and clicking a column header re-sorts the rows."""
  from selenium.webdriver.common.by import By
  workdir, _ = main_run
  src, out = str(tmp_path / "in"), str(tmp_path / "out")
  os.makedirs(src)
  rng = np.random.default_rng(3)
  for name in ("b.png", "a.png", "c.png"):
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), np.uint8)).save(os.path.join(src, name))
  inference.stylize_folder(workdir, src, out)
  driver = _browser()
  try:
    driver.get("file://" + os.path.join(workdir, "report", "index.html"))
    assert driver.find_element(By.TAG_NAME, "h1").text == "stylegan_ad run report"
    assert len(driver.find_elements(By.TAG_NAME, "img")) >= 2 + len(os.listdir(os.path.join(workdir, "report", "plots")))
    plots = driver.find_elements(By.CSS_SELECTOR, "img.plot")
    assert plots and all(p.get_property("naturalWidth") > 300 for p in plots)
    assert _page_problems(driver) == ([], [])
    driver.get("file://" + os.path.join(out, "index.html"))
    assert _page_problems(driver) == ([], [])
    first_column = lambda: [r.find_elements(By.TAG_NAME, "td")[0].text
                            for r in driver.find_elements(By.TAG_NAME, "tr")[1:]]
    assert first_column() == ["a.png", "b.png", "c.png"]
    header = driver.find_elements(By.TAG_NAME, "th")[0]
    header.click()
    assert first_column() == ["a.png", "b.png", "c.png"]  # ascending first
    header.click()
    assert first_column() == ["c.png", "b.png", "a.png"]
    assert _page_problems(driver) == ([], [])
  finally:
    driver.quit()


def test_a_run_from_before_the_fused_score_still_loads(main_run, tmp_path):
  """A run whose config has no `detect.fuse` keys and whose calibration has no fusion
  loads, scoring with the network alone; this run loads with its fusion."""
  workdir = str(tmp_path / "run")
  shutil.copytree(main_run[0], workdir)
  assert inference.load_trained(workdir).corrector.fusion is not None
  for name, group, keys in (("gan/config.json", "detect", ("fuse", "fuse_synthetic_auroc")),
                            ("gan/config.json", "model", ("imported", "dtype", "discriminator")),
                            ("gan/config.json", "correct", ("arch",)),
                            ("gan/config.json", "detect", ("arch", "artifact_types")),
                            ("detector/calibration.json", None, ("fusions",))):
    path = os.path.join(workdir, name)
    data = json.load(open(path))
    for k in keys:
      del (data[group] if group else data)[k]
    json.dump(data, open(path, "w"))
  old = inference.load_trained(workdir)
  assert old.corrector.fusion is None and not old.config.detect.fuse
  assert (old.config.model.imported, old.config.model.dtype) == ("", "float32")
  # runs from before the registries: the networks and artifact types they were made with
  names = (old.config.model.discriminator, old.config.detect.arch, old.config.correct.arch)
  assert names == ("patchgan", "unet", "unet")
  assert tuple(old.config.detect.artifact_types) == inference.LEGACY_ARTIFACT_TYPES


def test_a_run_whose_final_gan_checkpoint_is_damaged_is_refused_then_repaired(main_run, data_dir, tmp_path):
  from stylegan_ad.errors import CheckpointError
  from stylegan_ad.train import loop
  workdir = str(tmp_path / "run")
  shutil.copytree(main_run[0], workdir)
  c = embedded_config.get_config("tiny")
  c.data.data_dir = data_dir
  final = os.path.join(workdir, "gan", "checkpoints", str(c.train.num_steps))
  open(os.path.join(final, "data", "metadata"), "w").write("{}")
  # the older GAN would be used with thresholds calibrated for the newer one: refused
  with pytest.raises(CheckpointError, match=r"stages do not match \(gan checkpoint at step 3, not its final step 6; "
                                            r"the detector's calibration was made for gan step 6"):
    inference.load_trained(workdir)
  assert inference.load_trained(workdir, allow_stage_mismatch=True).config.train.num_steps == 6
  env = {**os.environ, "PYTHONPATH": ROOT}
  proc = subprocess.run([sys.executable, "-m", "experiments.stylize", f"--workdir={workdir}",
                         f"--input={tmp_path}", f"--output={tmp_path / 'out'}"], capture_output=True, text=True,
                        env=env, cwd=ROOT)
  assert proc.returncode == 2 and "--allow_stage_mismatch" in proc.stderr.strip().splitlines()[-1]
  # training again repairs it: the damaged step is moved aside, trained again and saved
  loop.train(c, os.path.join(workdir, "gan"))
  assert os.listdir(os.path.join(workdir, "gan", "checkpoints.damaged")) == ["6"]
  inference.load_trained(workdir)


@pytest.mark.heavy
def test_video_command_streams_a_clip_and_refuses_a_truncated_one(main_run, tmp_path):
  """experiments.stylize_video on the tiny run: a webm with an audio track and an odd size
  in, both videos out (same frame count and rate, sides padded to even for H.264), a row
  per frame, the page; the embedded clip with its figures against the truth (library
  call); a truncated file: exit 2, one line, no video left, frames.json incomplete."""
  import av
  from fractions import Fraction
  from stylegan_ad import video
  from test_video import _frames
  workdir, _ = main_run
  clip = str(tmp_path / "clip.webm")
  c = av.open(clip, "w")
  vs = c.add_stream("libvpx-vp9", rate=12)
  vs.width, vs.height, vs.pix_fmt = 65, 48, "yuv420p"
  aus = c.add_stream("libopus", rate=48000)
  for f in _frames(8, 65, 48):
    for p in vs.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
      c.mux(p)
  af = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.float32), format="fltp", layout="mono")
  af.sample_rate = 48000
  for p in [*aus.encode(af), *aus.encode(), *vs.encode()]:
    c.mux(p)
  c.close()
  env = {**os.environ, "PYTHONPATH": ROOT}
  out = tmp_path / "out"
  cmd = [sys.executable, "-m", "experiments.stylize_video", f"--workdir={workdir}", f"--input={clip}",
         f"--output={out}", "--format=mp4"]
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "audio track is not carried over" in proc.stdout and "8 frames (65x48)" in proc.stdout
  summary = json.load(open(out / "frames.json"))["summary"]
  assert summary["complete"] and summary["frames"] == 8 and summary["padded_to_even"]
  for name in ("clip.stylized.mp4", "clip.corrected.mp4"):
    src = video.open_input(str(out / name))
    frames = list(src.frames())
    assert len(frames) == 8 and (src.width, src.height) == (66, 48) and abs(float(src.fps) - 12) < 0.05
  rows = list(csv_rows(out / "frames.csv"))
  assert [int(r["frame"]) for r in rows] == list(range(8)) and os.path.exists(out / "timeline.png")
  assert "8 frames" in open(out / "index.html").read()
  # the embedded clip, with truth: every figure present and in range
  s = video.stylize_video(workdir, video.EMBEDDED, str(tmp_path / "emb"), say=lambda m: None)
  t = s["truth"]
  assert s["frames"] == 48 and t["frames"] == 48 and set(t["degraded_frames"]) == {"10", "20", "21", "30", "38"}
  assert all(np.isfinite(t["exact_warping_error"][k]) for k in ("target", "stylized", "output"))
  assert t["psnr"]["stylized"] > 5 and "true_anomalous" in t["detection"]
  # truncated: one line, exit 2, nothing that looks complete
  cut = tmp_path / "cut.webm"
  w = video.Writer(str(tmp_path / "long.webm"), Fraction(24))
  for f in video.open_input(str(tmp_path / "emb" / "embedded.corrected.mp4")).frames():
    w.write(f.image)
  w.close()
  data = open(tmp_path / "long.webm", "rb").read()
  cut.write_bytes(data[:int(len(data) * 0.6)])
  out2 = tmp_path / "out2"
  proc = subprocess.run(cmd[:4] + [f"--input={cut}", f"--output={out2}"], capture_output=True, text=True, env=env,
                        cwd=ROOT)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().count("\n") == 0 and "truncated video" in proc.stderr
  left = sorted(os.listdir(out2))
  assert not any(n.endswith((".webm", ".tmp", "index.html")) for n in left), left
  assert json.load(open(out2 / "frames.json"))["summary"]["complete"] is False


def csv_rows(path):
  import csv
  with open(path, newline="") as f:
    yield from csv.DictReader(f)
