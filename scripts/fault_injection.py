"""Fault injection at scale: SIGKILL at random steps, SIGTERM, damaged final checkpoints,
full and read-only disks, then bit-for-bit comparison.

  python scripts/fault_injection.py --kills=20 --steps=60

Trains the tiny embedded config once uninterrupted, then again while killing it with
SIGKILL at `--kills` random moments (each restart resumes from the newest good
checkpoint), then once more with SIGTERM; compares the final parameters, optimizer
states and data position with the uninterrupted run. Then damages the uninterrupted
run's final checkpoint four ways (every array file overwritten, the data position
emptied, one bit flipped inside array data, the OCDBT manifest overwritten) and runs
the same command on each copy: it must move the damaged step aside, train it again and
end bit-identical. Where a tmpfs can be mounted (root), a run on a full disk and one
whose checkpoint folder turns read-only mid-run must end with one line and exit 2, and
the full-disk one must resume once there is room. Prints one summary line per fault
(all of it also as JSON to --out); exit 1 if any fault was not handled.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

_KILLS = flags.DEFINE_integer("kills", 20, "SIGKILLs to inject")
_STEPS = flags.DEFINE_integer("steps", 60, "training steps")
_SEED = flags.DEFINE_integer("seed", 0, "seed for the kill moments")
_OUT = flags.DEFINE_string("out", "", "write the summary JSON here")


def train_command(workdir: str, data_dir: str, steps: int) -> list[str]:
  return [sys.executable, "-m", "experiments.train_stylegan",
          "--config=experiments/configs/embedded.py:tiny", f"--workdir={workdir}",
          f"--config.data.data_dir={data_dir}", f"--config.train.num_steps={steps}",
          "--config.checkpoint.every=2", "--config.log.every=1", "--config.log.sample_every=100000"]


def env() -> dict:
  return {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu",
          "STYLEGAN_AD_JAX_CACHE": os.environ.get("STYLEGAN_AD_JAX_CACHE",
                                                  os.path.join(tempfile.gettempdir(), "stylegan_ad_jax_cache"))}


def logged_steps(workdir: str) -> list[int]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  return [json.loads(l)["step"] for l in open(path).read().splitlines() if l.strip()]


def wait_for_step(proc, workdir: str, step: int) -> None:
  """Until this process (lines logged after its start) reaches `step`, or exits."""
  seen = len(logged_steps(workdir))
  while proc.poll() is None:
    new = logged_steps(workdir)[seen:]
    if new and new[-1] >= step:
      return
    time.sleep(0.02)


def compare(workdir_a: str, workdir_b: str, data_dir: str, steps: int) -> tuple[bool, int, int]:
  """(bit-identical?, step of a, step of b) of the newest checkpoints of two runs."""
  import jax
  import numpy as np
  from experiments.configs import embedded as embedded_config
  from stylegan_ad.train import loop
  c = embedded_config.get_config("tiny")
  c.data.data_dir, c.train.num_steps = data_dir, steps
  states = []
  for w in (workdir_a, workdir_b):
    run, ckpt = loop.setup(c, w)
    ckpt.close()
    states.append((jax.device_get(run.state), run.pipeline.position))
  (a, pa), (b, pb) = states
  same = pa == pb and all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  return same, int(a.step), int(b.step)


def _problem_lines(stderr: str) -> list[str]:
  """stderr without progress lines and library INFO/WARNING lines."""
  return [l for l in stderr.splitlines() if l.strip() and not re.match(r"[IW]\d{4} |\[\d\d:\d\d\] ", l)]


def damaged_final_checkpoints(tmp: str, whole: str, data_dir: str, steps: int) -> dict:
  """Each damage of the final checkpoint, repaired by running the same command again."""
  out = {}
  from tests.damage import DAMAGES
  for name, damage in DAMAGES.items():
    run = os.path.join(tmp, "damaged-" + name.split()[0] + name.split()[-1])
    shutil.copytree(whole, run)
    damage(os.path.join(run, "checkpoints", str(steps)))
    proc = subprocess.run(train_command(run, data_dir, steps), cwd=ROOT, env=env(), capture_output=True, text=True)
    same, _, step = compare(whole, run, data_dir, steps)
    moved = os.path.isdir(os.path.join(run, "checkpoints.damaged", str(steps)))
    problems = _problem_lines(proc.stderr)
    out[name] = {"exit_code": proc.returncode, "moved_aside": moved, "final_step": step,
                 "bit_identical": bool(same), "tracebacks": proc.stderr.count("Traceback"),
                 "ok": proc.returncode == 0 and moved and bool(same) and not problems}
    r = out[name]
    print(f"damaged final checkpoint ({name}): exit {r['exit_code']}, moved aside: {moved}, retrained to "
          f"step {step}, bit-identical: {r['bit_identical']}, tracebacks: {r['tracebacks']}")
  return out


def _mount(*args) -> bool:
  return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def disks(tmp: str, data_dir: str) -> dict:
  """A full disk (then room made) and a checkpoint folder that turns read-only mid-run."""
  disk = os.path.join(tmp, "disk")
  os.makedirs(disk)
  if not _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", disk):
    print("disks: skipped (cannot mount a tmpfs here; needs root)")
    return {"skipped": "cannot mount a tmpfs (needs root)"}
  workdir = os.path.join(disk, "run")
  ckdir = os.path.join(workdir, "checkpoints")
  out = {}
  try:
    proc = subprocess.run(train_command(workdir, data_dir, 40), cwd=ROOT, env=env(), capture_output=True, text=True)
    lines = _problem_lines(proc.stderr)
    _mount("-o", "remount,size=40m", disk)
    again = subprocess.run(train_command(workdir, data_dir, 40), cwd=ROOT, env=env(), capture_output=True, text=True)
    resumed = again.returncode == 0 and logged_steps(workdir)[-1:] == [40]
    out["full disk"] = {"exit_code": proc.returncode, "lines": lines, "resumed_after_room": resumed,
                        "ok": proc.returncode == 2 and len(lines) == 1 and resumed}
    print(f"full disk: exit {proc.returncode}, {len(lines)} line(s): {lines[:1]}; resumed after room was made: "
          f"{resumed}")
    proc = subprocess.Popen(train_command(workdir, data_dir, 400), cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_step(proc, workdir, 44)
    _mount("--bind", ckdir, ckdir)
    _mount("-o", "remount,bind,ro", ckdir)
    t0 = time.time()
    try:
      _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
      proc.kill()
      _, stderr = proc.communicate()
    sec = time.time() - t0
    lines = _problem_lines(stderr)
    out["read-only checkpoint folder"] = {"exit_code": proc.returncode, "seconds": round(sec, 1), "lines": lines,
                                          "ok": proc.returncode == 2 and sec < 60 and len(lines) == 1}
    print(f"read-only checkpoint folder: exit {proc.returncode} in {sec:.1f}s, {len(lines)} line(s): {lines[:1]}")
  finally:
    subprocess.run(["umount", ckdir], capture_output=True)
    subprocess.run(["umount", disk], capture_output=True)
  return out


def main(argv):
  del argv
  import numpy as np
  from stylegan_ad.data import embedded
  tmp = tempfile.mkdtemp(prefix="stylegan_ad_faults_")
  data_dir = os.path.join(tmp, "data")
  embedded.prepare("cartoon", 64, data_dir)
  steps = _STEPS.value
  whole, killed = os.path.join(tmp, "whole"), os.path.join(tmp, "killed")
  t0 = time.time()
  subprocess.run(train_command(whole, data_dir, steps), cwd=ROOT, env=env(), check=True,
                 capture_output=True)
  rng = np.random.default_rng(_SEED.value)
  # kill moments: distinct random steps, in order; each restart resumes from the newest
  # checkpoint (every 2 steps) and is killed once its log passes the next target step
  targets = sorted(rng.choice(np.arange(1, steps), size=min(_KILLS.value, steps - 1), replace=False))
  kills = restarts = 0
  for target in targets:
    proc = subprocess.Popen(train_command(killed, data_dir, steps), cwd=ROOT, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    restarts += 1
    wait_for_step(proc, killed, int(target))
    if proc.poll() is None:
      proc.send_signal(signal.SIGKILL)
      kills += 1
    proc.wait()
  restarts += 1
  subprocess.run(train_command(killed, data_dir, steps), cwd=ROOT, env=env(), check=True,
                 capture_output=True)
  same_kill, step_a, step_b = compare(whole, killed, data_dir, steps)
  # SIGTERM: the run must save and exit 0 within 30 s, and the restart must finish identically
  termed = os.path.join(tmp, "termed")
  proc = subprocess.Popen(train_command(termed, data_dir, steps), cwd=ROOT, env=env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  wait_for_step(proc, termed, steps // 2)
  t_term = time.time()
  proc.send_signal(signal.SIGTERM)
  term_rc = proc.wait(timeout=60)
  term_sec = time.time() - t_term
  subprocess.run(train_command(termed, data_dir, steps), cwd=ROOT, env=env(), check=True, capture_output=True)
  same_term, _, _ = compare(whole, termed, data_dir, steps)
  summary = {"kills": kills, "restarts": restarts, "steps": steps, "final_step": step_b,
             "sigkill_resume_bit_identical": bool(same_kill and step_a == step_b == steps),
             "sigterm_exit_code": term_rc, "sigterm_exit_sec": round(term_sec, 2),
             "sigterm_resume_bit_identical": bool(same_term), "seconds": round(time.time() - t0, 1)}
  print(f"fault injection: {kills} SIGKILLs over {restarts} starts, final step {step_b}/{steps}, "
        f"bit-identical after kills: {summary['sigkill_resume_bit_identical']}; SIGTERM exit "
        f"{term_rc} in {term_sec:.1f}s, bit-identical after resume: {summary['sigterm_resume_bit_identical']}")
  summary["damaged_final_checkpoint"] = damaged_final_checkpoints(tmp, whole, data_dir, steps)
  summary["disks"] = disks(tmp, data_dir)
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(summary, f, indent=2)
  ok = summary["sigkill_resume_bit_identical"] and summary["sigterm_resume_bit_identical"] and term_rc == 0
  ok = ok and all(r["ok"] for r in summary["damaged_final_checkpoint"].values())
  ok = ok and all(r.get("ok", True) for r in summary["disks"].values() if isinstance(r, dict))
  sys.exit(0 if ok else 1)


if __name__ == "__main__":
  app.run(main)
