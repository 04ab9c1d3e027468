"""The reference train step timed on two builds and on PyTorch, interleaved in one run.

A refactor must not slow the training step. This checks out `--before` (a commit) into a
temporary git worktree and runs, `--rounds` times in turn on this machine,
`scripts/benchmark.py --what=train_step` of that build, the same of this working tree, and
`scripts/reference_torch.py` (the PyTorch CycleGAN iteration, same models), one process
each. Interleaving puts the machine's drift (a shared VM's pace moves through the day) on
all three alike. Writes one JSON with every timing, the medians, and the ratios.

  .venv/bin/pip install torch==2.13.0   # or any Python that has torch and absl: --torch_python
  python scripts/speed_before_after.py --before=0464234 --out=runs/benchmarks/before_after.json
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

from absl import app, flags

_BEFORE = flags.DEFINE_string("before", "0464234", "the commit to compare against (default: the last "
                              "commit before the training-skeleton work of issue 20)")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "rounds of (before, after, PyTorch)")
_SIZE = flags.DEFINE_integer("size", 128, "crop size")
_ITERS = flags.DEFINE_integer("iters", 5, "timed iterations per process")
_UPSAMPLE = flags.DEFINE_string("upsample", "transpose", "generator upsampling (transpose: the reference's layer)")
_TORCH_PYTHON = flags.DEFINE_string("torch_python", sys.executable, "a Python with torch and absl installed")
_OUT = flags.DEFINE_string("out", "runs/benchmarks/before_after.json", "the JSON written")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _last_json(text: str) -> dict:
  for line in reversed(text.splitlines()):
    if line.startswith("{"):
      return json.loads(line)
  raise RuntimeError("no JSON line in the benchmark's output:\n" + text[-2000:])


def _run(args: list[str], python: str, tree: str) -> dict:
  env = dict(os.environ, PYTHONPATH=tree)  # the tree's own stylegan_ad, not the installed one
  proc = subprocess.run([python, *args], cwd=tree, env=env, capture_output=True, text=True, check=False)
  if proc.returncode:
    raise RuntimeError(f"{' '.join(args)} in {tree} failed:\n{proc.stderr[-2000:]}")
  return _last_json(proc.stdout)


def main(argv):
  del argv
  bench = ["scripts/benchmark.py", "--what=train_step", f"--size={_SIZE.value}", "--batch=1",
           f"--iters={_ITERS.value}", f"--upsample={_UPSAMPLE.value}"]
  torch_ref = ["scripts/reference_torch.py", f"--size={_SIZE.value}", f"--iters={_ITERS.value}"]
  before_rev = subprocess.check_output(["git", "rev-parse", _BEFORE.value], cwd=_ROOT, text=True).strip()
  after_rev = subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=_ROOT, text=True).strip()
  # "after" is the working tree: HEAD, plus any uncommitted change (said in the JSON)
  dirty = bool(subprocess.check_output(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_ROOT,
                                       text=True).strip())
  times = {"before": [], "after": [], "torch": []}
  with tempfile.TemporaryDirectory() as tmp:
    tree = os.path.join(tmp, "before")
    subprocess.run(["git", "worktree", "add", "--detach", tree, before_rev], cwd=_ROOT, check=True,
                   capture_output=True)
    try:
      for r in range(_ROUNDS.value):
        for name, args, python, where in (("before", bench, sys.executable, tree),
                                          ("after", bench, sys.executable, _ROOT),
                                          ("torch", torch_ref, _TORCH_PYTHON.value, _ROOT)):
          sec = _run(args, python, where)["sec_per_iter"]
          times[name].append(sec)
          print(f"round {r + 1}: {name} {sec:.3f} s/iter", flush=True)
    finally:
      subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=_ROOT, check=False)
  med = {k: statistics.median(v) for k, v in times.items()}
  result = {"what": "train_step_before_after", "size": _SIZE.value, "upsample": _UPSAMPLE.value,
            "before": before_rev, "after": after_rev, "after_has_uncommitted_changes": dirty,
            "sec_per_iter": times, "median": med,
            "after_over_before": med["after"] / med["before"],
            "before_over_torch": med["before"] / med["torch"], "after_over_torch": med["after"] / med["torch"]}
  line = json.dumps(result, sort_keys=True)
  print(line)
  os.makedirs(os.path.dirname(_OUT.value) or ".", exist_ok=True)
  with open(_OUT.value, "w") as f:
    f.write(line + "\n")


if __name__ == "__main__":
  app.run(main)
