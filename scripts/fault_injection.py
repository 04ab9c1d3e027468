"""Fault injection at scale: SIGKILL at random steps, SIGTERM, then bit-for-bit comparison.

  python scripts/fault_injection.py --kills=20 --steps=60

Trains the tiny embedded config once uninterrupted, then again while killing it with
SIGKILL at `--kills` random moments (each restart resumes from the newest good
checkpoint), then once more with SIGTERM; compares the final parameters, optimizer
states and data position with the uninterrupted run, and prints one summary line
(also written as JSON to --out).
"""
import json
import os
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
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(summary, f, indent=2)
  ok = summary["sigkill_resume_bit_identical"] and summary["sigterm_resume_bit_identical"] and term_rc == 0
  sys.exit(0 if ok else 1)


if __name__ == "__main__":
  app.run(main)
