#!/usr/bin/env bash
# The README's test command: set up .venv (and, as root, Debian's chromium and
# chromium-driver for the browser test) if needed, then run the whole suite, one
# pytest process per test module: XLA's CPU compiler has crashed (segmentation fault)
# late in one long process that had run the main job and the folder CLI, and a
# process per module keeps one module's state from reaching the next. With arguments,
# one pytest run with them (e.g. `bash scripts/test.sh tests/test_data.py -k prepare`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium and chromium-driver (apt) for the browser test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
      >/dev/null 2>&1 || echo "warning: apt could not install chromium / chromium-driver"
  fi
fi
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest -q "$@"
fi
reports=$(mktemp -d)
status=0
for module in tests/test_*.py; do
  name=$(basename "$module" .py)
  echo "== $module"
  .venv/bin/python -m pytest -q --durations=5 --junitxml="$reports/$name.xml" "$module" || status=1
done
.venv/bin/python - "$reports" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for path in glob.glob(sys.argv[1] + "/*.xml"):
  suite = ET.parse(path).getroot()
  suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
  for key in total:
    total[key] += int(suite.get(key, 0))
failed = total["failures"] + total["errors"]
passed = total["tests"] - failed - total["skipped"]
print(f"suite: {passed} passed, {failed} failed, {total['skipped']} skipped")
PY
rm -rf "$reports"
exit $status
