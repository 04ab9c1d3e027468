#!/usr/bin/env bash
# The README's test command: set up .venv (and, as root, Debian's chromium and
# chromium-driver for the browser test) if needed, then run the suite, one pytest process
# per test module, two at a time: XLA's CPU compiler has crashed (segmentation fault) late
# in one long process that had run the main job and the folder CLI, and a process per
# module keeps one module's state from reaching the next.
#   bash scripts/test.sh            the suite without the checks marked heavy (CI runs this)
#   bash scripts/test.sh --heavy    only the heavy checks: killed, preempted and
#                                   two-process training runs, damaged checkpoints, a full
#                                   disk, the main job run twice, the video command
#   bash scripts/test.sh --all      both
#   bash scripts/test.sh ARGS...    one pytest run with ARGS, heavy checks included
#                                   (e.g. `bash scripts/test.sh tests/test_data.py -k prepare`)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test
# the suite's processes write the bytecode of what they import (why: scripts/run_main.sh)
unset PYTHONDONTWRITEBYTECODE
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium and chromium-driver (apt) for the browser test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
      >/dev/null 2>&1 || echo "warning: apt could not install chromium / chromium-driver"
  fi
fi
mode=${1:-}
case "$mode" in
  --heavy) select="heavy"; shift ;;
  --all) select=""; shift ;;
  *) select="not heavy" ;;
esac
if [ "$#" -gt 0 ]; then
  [ "$mode" = --heavy ] || select=""
  exec .venv/bin/python -m pytest -q ${select:+-m "$select"} "$@"
fi
export select
reports=$(mktemp -d)
export reports
# Two modules at a time (STYLEGAN_AD_TEST_JOBS): most of a test's time is XLA compiling,
# which uses one core; the longest modules start first. Each module's output is printed
# whole when it ends.
run_module() {
  local module=$1 name start rc=0
  name=$(basename "$module" .py)
  start=$SECONDS
  .venv/bin/python -m pytest -q --durations=5 ${select:+-m "$select"} --junitxml="$reports/$name.xml" "$module" \
    >"$reports/$name.log" 2>&1 || rc=$?
  # exit code 5, no test selected: a module without heavy checks under --heavy (anywhere
  # else, a module whose tests all went missing: a failure)
  [ "$rc" = 5 ] && [ "$select" = heavy ] && rc=0
  { flock 9; echo "== $module ($((SECONDS - start)) s)"; cat "$reports/$name.log"; } 9>"$reports/lock"
  [ "$rc" = 0 ]
}
export -f run_module
first=(tests/test_main_job_cli.py tests/test_train.py tests/test_reliability.py tests/test_models_losses.py
       tests/test_detect_correct.py tests/test_interop.py tests/test_benchmark.py tests/test_failures.py)
rest=()
for module in tests/test_*.py; do
  [[ " ${first[*]} " == *" $module "* ]] || rest+=("$module")
done
status=0
printf '%s\n' "${first[@]}" "${rest[@]}" | xargs -P "${STYLEGAN_AD_TEST_JOBS:-2}" -I{} bash -c 'run_module "$1"' _ {} \
  || status=1
.venv/bin/python - "$reports" "$select" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for path in glob.glob(sys.argv[1] + "/*.xml"):
  suite = ET.parse(path).getroot()
  suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
  for key in total:
    total[key] += int(suite.get(key, 0))
failed = total["failures"] + total["errors"]
passed = total["tests"] - failed - total["skipped"]
kind = {"not heavy": " (heavy checks not run: bash scripts/test.sh --heavy)", "heavy": " (the heavy checks)"}
print(f"suite: {passed} passed, {failed} failed, {total['skipped']} skipped" + kind.get(sys.argv[2], ""))
PY
rm -rf "$reports"
exit $status
