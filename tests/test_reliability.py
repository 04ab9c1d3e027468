"""Kill-and-resume, preemption, damaged checkpoints, and multi-host on loopback."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from experiments.configs import embedded as embedded_config
import damage
from param_compare import assert_layouts_agree
from stylegan_ad.train import checkpoint as checkpoint_lib
from stylegan_ad.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_cmd(workdir, data_dir, steps=12):
  return [sys.executable, "-m", "experiments.train_stylegan",
          "--config=experiments/configs/embedded.py:tiny", f"--workdir={workdir}",
          f"--config.data.data_dir={data_dir}", f"--config.train.num_steps={steps}",
          "--config.checkpoint.every=2", "--config.log.every=1", "--config.log.sample_every=1000"]


def _env():
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
  return env


def _last_logged_step(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return 0
  lines = [l for l in open(path).read().splitlines() if l.strip()]
  return json.loads(lines[-1])["step"] if lines else 0


def _start_and_wait_for_step(cmd, workdir, step, timeout=300):
  proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  t0 = time.time()
  while _last_logged_step(workdir) < step:
    if proc.poll() is not None:
      raise AssertionError(f"training exited early: {proc.stderr.read().decode()[-2000:]}")
    if time.time() - t0 > timeout:
      proc.kill()
      raise AssertionError("training did not reach the step in time")
    time.sleep(0.05)
  return proc


def _final_state(workdir, config):
  run, ckpt = loop.setup(config, workdir)
  ckpt.close()
  return jax.device_get(run.state), run.pipeline.position


def _tiny(data_dir, steps=12):
  c = embedded_config.get_config("tiny")
  c.data.data_dir = data_dir
  c.train.num_steps = steps
  c.checkpoint.every = 2
  c.log.every = 1
  c.log.sample_every = 1000
  return c


@pytest.mark.heavy
def test_sigkill_then_resume_is_bit_identical(data_dir, tmp_path):
  whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
  subprocess.run(_train_cmd(whole, data_dir), cwd=ROOT, env=_env(), check=True, capture_output=True)
  proc = _start_and_wait_for_step(_train_cmd(killed, data_dir), killed, 5)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(os.path.join(killed, "eval.json"))
  done = subprocess.run(_train_cmd(killed, data_dir), cwd=ROOT, env=_env(), capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-2000:]
  # the console: the resume and every step named by stage, a rate and ETA once compiled,
  # and no library INFO lines (Orbax's checkpoint progress) at the default verbosity
  assert "killed: resumed at step" in done.stderr and "killed step 12/12" in done.stderr
  assert "steps/s  ETA" in done.stderr
  assert not re.search(r"^I\d{4} ", done.stderr, re.M), done.stderr[-2000:]
  config = _tiny(data_dir)
  a, pos_a = _final_state(whole, config)
  b, pos_b = _final_state(killed, config)
  assert int(a.step) == int(b.step) == 12 and pos_a == pos_b == 12
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_sigterm_saves_and_exits_cleanly_then_resumes(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  proc = _start_and_wait_for_step(_train_cmd(workdir, data_dir, steps=10_000), workdir, 3)
  t0 = time.time()
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=30) == 0
  assert time.time() - t0 < 30
  steps = checkpoint_lib.Checkpointer(workdir).steps()
  saved = steps[-1]
  assert saved >= 3 and not os.path.exists(os.path.join(workdir, "eval.json"))
  run, ckpt = loop.setup(_tiny(data_dir, steps=10_000), workdir)
  ckpt.close()
  assert int(jax.device_get(run.state.step)) == saved == run.pipeline.position


@pytest.mark.heavy
def test_sigterm_in_the_detector_stage_saves_and_exits_then_resumes(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  cmd = [sys.executable, "-m", "experiments.train_detector", "--config=experiments/configs/embedded.py:tiny",
         f"--workdir={workdir}", f"--config.data.data_dir={data_dir}", "--config.detect.steps=100000",
         "--config.log.every=1"]
  proc = _start_and_wait_for_step(cmd, os.path.join(workdir, "detector"), 2, timeout=900)
  t0 = time.time()
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=30) == 0 and time.time() - t0 < 30
  stderr = proc.stderr.read().decode()
  assert re.search(r"signal 15: detector saved at step \d+ of 100000", stderr) and "Traceback" not in stderr
  saved = checkpoint_lib.Checkpointer(os.path.join(workdir, "detector")).steps()
  assert saved and saved[-1] >= 2   # where the re-run resumes


def test_a_second_trainer_on_the_same_workdir_is_refused_and_a_killed_ones_lock_is_not_stale(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  first = _start_and_wait_for_step(_train_cmd(workdir, data_dir, steps=10_000), workdir, 2)
  finished = lambda: [d for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()]
  t0 = time.time()
  while not finished() and time.time() - t0 < 120:  # the first one's first checkpoint is complete
    time.sleep(0.1)
  try:
    second = subprocess.run(_train_cmd(workdir, data_dir, steps=10_000), cwd=ROOT, env=_env(), capture_output=True,
                            text=True, timeout=300)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert re.search(rf"^error: {re.escape(workdir)}: process {first.pid} on \S+ is training in this folder",
                     second.stderr.strip().splitlines()[-1])
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  saved = checkpoint_lib.Checkpointer(workdir).steps()
  assert saved, "the second trainer must not have touched the first one's checkpoints"
  again = subprocess.run(_train_cmd(workdir, data_dir, steps=saved[-1] + 2), cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-2000:]
  assert f"run: resumed at step {saved[-1]}" in again.stderr


@pytest.mark.heavy
def test_damaged_checkpoints_fall_back_and_a_damaged_final_one_is_repaired(data_dir, tmp_path, caplog):
  workdir = str(tmp_path / "run")
  config = _tiny(data_dir, steps=4)
  loop.train(config, workdir)
  final = jax.device_get(loop.setup(config, workdir)[0].state)
  ckdir = os.path.join(workdir, "checkpoints")
  assert sorted(int(d) for d in os.listdir(ckdir) if d.isdigit()) == [2, 4]
  pristine = str(tmp_path / "pristine")
  shutil.copytree(ckdir, pristine)

  def damaged(how):
    shutil.rmtree(ckdir)
    shutil.rmtree(ckdir + ".damaged", ignore_errors=True)
    shutil.copytree(pristine, ckdir)
    how(os.path.join(ckdir, "4"))
    caplog.clear()
    run, ckpt = loop.setup(config, workdir)
    ckpt.close()
    warnings = [r.getMessage() for r in caplog.records if "cannot be restored" in r.getMessage()]
    assert int(jax.device_get(run.state.step)) == 2 and run.pipeline.position == 2 and len(warnings) == 1
    return warnings[0]

  def garbage(step_dir):
    damage.overwrite_arrays(step_dir)
    os.makedirs(os.path.join(ckdir, "6.orbax-checkpoint-tmp-123", "state"))  # left by a kill mid-write

  damaged(garbage)
  assert not any("tmp" in d for d in os.listdir(ckdir))
  # the data position's metadata emptied: a fallback, not a KeyError
  damaged(damage.empty_data_position)
  # one flipped bit inside array data: the checksum written with the checkpoint catches it
  message = damaged(damage.flip_a_bit_in_array_data)
  assert "checksum" in message  # the bytes still decode: only the checksum catches it
  # the damaged final step was moved aside, so the run trains it again, saves it, and ends
  # where the undamaged run ended, bit for bit
  assert os.listdir(os.path.join(workdir, "checkpoints.damaged")) == ["4"]
  assert sorted(int(d) for d in os.listdir(ckdir) if d.isdigit()) == [2]
  loop.train(config, workdir)
  assert sorted(int(d) for d in os.listdir(ckdir) if d.isdigit()) == [2, 4]
  again = jax.device_get(loop.setup(config, workdir)[0].state)
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(again)))


def test_a_damaged_ocdbt_manifest_falls_back_in_one_line(data_dir, tmp_path):
  workdir = str(tmp_path / "run")
  loop.train(_tiny(data_dir, steps=2), workdir)
  damage.overwrite_manifest(os.path.join(workdir, "checkpoints", "2"))
  code = ("import sys; from experiments.configs import embedded; from stylegan_ad.train import loop; "
          "from stylegan_ad.errors import CheckpointError\n"
          "c = embedded.get_config('tiny'); c.data.data_dir = sys.argv[1]; c.train.num_steps = 2\n"
          "c.checkpoint.every = 2\n"
          "try:\n  loop.setup(c, sys.argv[2])\n"
          "except CheckpointError as e:\n  print('error:', e)\n"
          # Orbax's reading tasks may be collected (and asyncio log their errors) long after
          # the restore failed: such a late line, made here on purpose, is dropped too
          "import asyncio; l = asyncio.new_event_loop(); f = l.create_future()\n"
          "f.set_exception(ValueError(f'DATA_LOSS: in OCDBT database at local file \"{sys.argv[2]}/checkpoints/2/state/\"'))\n"
          "l.call_exception_handler({'message': 'Task exception was never retrieved', 'exception': f.exception(), "
          "'future': f})")
  proc = subprocess.run([sys.executable, "-c", code, data_dir, workdir], capture_output=True, text=True,
                        env=_env(), cwd=ROOT)
  lines = [l for l in (proc.stdout + proc.stderr).splitlines() if l.strip() and not re.match(r"I\d{4} ", l)]
  assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert any("no checkpoint in" in l and "can be restored" in l for l in lines), lines
  assert len(lines) <= 3, lines


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.heavy
def test_two_processes_on_loopback_match_one_process_with_four_devices(data_dir, tmp_path):
  port = _free_port()
  outs = [str(tmp_path / f"p{i}.json") for i in range(2)]
  procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "multihost_worker.py"), str(i), "2",
                             str(port), data_dir, str(tmp_path / "multi"), outs[i]], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for i in range(2)]
  for p in procs:
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-3000:]
  res = [json.load(open(o)) for o in outs]
  assert [r["process_index"] for r in res] == [0, 1]
  assert all(r["process_count"] == 2 and r["device_count"] == 4 and r["local_devices"] == 2 for r in res)
  for s in range(2):  # each process read only its own half of every global batch
    assert not set(res[0]["read"][s]) & set(res[1]["read"][s])
  single_config = _tiny(data_dir, steps=2)
  single = loop.train(single_config, str(tmp_path / "single"))
  n_a = len(single.dataset.train_a)
  for s in range(2):
    np.testing.assert_array_equal(single.pipeline.indices(s, 0, n_a)[0], res[0]["read"][s] + res[1]["read"][s])
  assert_layouts_agree(jax.tree.leaves(jax.device_get(single.state.g_params)), res[0]["g_params"],
                       lr=single_config.train.lr, steps=2)
  np.testing.assert_array_equal(np.asarray(res[0]["g_params"][0]), np.asarray(res[1]["g_params"][0]))
  # the detector and restorer stages: each process fed only its half of every batch, and
  # the networks trained as one process with four devices trains them
  assert [r["aux_rows"] for r in res] == [[0, 2], [2, 4]]
  assert res[0]["aux_fed"] and set(res[0]["aux_fed"]) == {single_config.detect.batch_size}
  import multihost_worker
  det, rest = multihost_worker.aux_stages(single_config, single, str(tmp_path / "single"))
  for name, tree, lr in (("detector", det, single_config.detect.lr), ("restorer", rest, single_config.correct.lr)):
    assert_layouts_agree(jax.tree.leaves(tree), res[0][name], lr=lr, steps=2)
    np.testing.assert_array_equal(np.asarray(res[0][name][0]), np.asarray(res[1][name][0]))


def _mount(*args):
  return subprocess.run(["mount", *args], capture_output=True, text=True).returncode == 0


def _make_read_only(path, timeout=10):
  """Bind-mounts `path` on itself read-only. The kernel refuses ("mount point is busy")
  while the run holds a file open for writing there, as it does mid-checkpoint: retry."""
  if not _mount("--bind", path, path):
    return False
  t0 = time.time()
  while not _mount("-o", "remount,bind,ro", path):
    if time.time() - t0 > timeout:
      return False
    time.sleep(0.01)
  return True


@pytest.mark.heavy
def test_a_full_disk_and_a_read_only_checkpoint_folder_end_the_run_in_one_line(data_dir, tmp_path):
  """A small tmpfs (needs the right to mount, as root on this machine kind; skipped without)."""
  disk = str(tmp_path / "disk")
  os.makedirs(disk)
  if not _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", disk):
    import pytest
    pytest.skip("cannot mount a tmpfs here (needs root)")
  ckdir = os.path.join(disk, "run", "checkpoints")
  proc = None
  try:
    workdir = os.path.join(disk, "run")
    cmd = _train_cmd(workdir, data_dir, steps=40)
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    errors = [l for l in proc.stderr.splitlines() if not re.match(r"[IW]\d{4} |\[\d\d:\d\d\] ", l)]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
    assert "no space left on the device" in errors[0] and "intact" in errors[0]
    # room made: the same command resumes from the last complete checkpoint and finishes
    assert _mount("-o", "remount,size=40m", disk)
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "resumed at step" in proc.stdout + proc.stderr, proc.stderr[-3000:]
    assert _last_logged_step(workdir) == 40
    # the checkpoint folder turns read-only mid-run: exit 2 within a minute, one line
    proc = _start_and_wait_for_step(_train_cmd(workdir, data_dir, steps=400), workdir, 44)
    assert _make_read_only(ckdir)
    t0 = time.time()
    _, stderr = proc.communicate(timeout=60)
    errors = [l for l in stderr.decode().splitlines() if not re.match(r"[IW]\d{4} |\[\d\d:\d\d\] ", l)]
    assert proc.returncode == 2 and time.time() - t0 < 60 and len(errors) == 1, stderr.decode()[-3000:]
    assert "the file system is read-only" in errors[0]
  finally:
    if isinstance(proc, subprocess.Popen) and proc.poll() is None:
      proc.kill()
      proc.wait()
    subprocess.run(["umount", ckdir], capture_output=True)
    subprocess.run(["umount", disk], capture_output=True)
