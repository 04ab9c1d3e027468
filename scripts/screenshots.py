"""Screenshots of the pages a person reads, in headless Chromium (as the browser test).

  python scripts/screenshots.py --run=runs/embedded --folder=OUT --out=docs/screenshots

`--run`: a finished main-job run (its `report/index.html`); `--folder`: an output folder
of `experiments.stylize` (its `index.html`); `--video`: one of `experiments.stylize_video`.
Writes report.png, folder.png and video.png, each the
whole page at 1300 px wide. Needs Debian's chromium and chromium-driver and selenium
(`pip install -e .[test]`).
"""
from __future__ import annotations

import os
import shutil
import time

from absl import app, flags

_RUN = flags.DEFINE_string("run", "runs/embedded", "main-job run directory")
_FOLDER = flags.DEFINE_string("folder", None, "an experiments.stylize output folder")
_VIDEO = flags.DEFINE_string("video", None, "an experiments.stylize_video output folder")
_OUT = flags.DEFINE_string("out", "docs/screenshots", "where the PNGs go")
_WIDTH = flags.DEFINE_integer("width", 1300, "window width in pixels")


def _driver():
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  chrome, driver = shutil.which("chromium"), shutil.which("chromedriver")
  if not (chrome and driver):
    raise SystemExit("error: needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
  opts = webdriver.ChromeOptions()
  opts.binary_location = chrome
  for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--window-size={_WIDTH.value},1000"):
    opts.add_argument(flag)
  return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def _shot(driver, page: str, path: str) -> None:
  if not os.path.exists(page):
    raise SystemExit(f"error: {page}: no such page")
  driver.set_window_size(_WIDTH.value, 600)  # so the page's height is its own, not the last window's
  driver.get("file://" + os.path.abspath(page))
  for _ in range(100):  # every image decoded and laid out, so the page has its full height
    if driver.execute_script("return [...document.images].every(i => i.complete && i.naturalWidth > 0)"):
      break
    time.sleep(0.1)
  height = driver.execute_script("return Math.max(document.body.scrollHeight, "
                                 "document.documentElement.scrollHeight)")
  chrome = driver.execute_script("return window.outerHeight - window.innerHeight")  # the window's own bars
  driver.set_window_size(_WIDTH.value, height + chrome + 20)
  driver.save_screenshot(path)
  print(f"{path}: {page}")


def main(argv):
  del argv
  os.makedirs(_OUT.value, exist_ok=True)
  driver = _driver()
  try:
    _shot(driver, os.path.join(_RUN.value, "report", "index.html"), os.path.join(_OUT.value, "report.png"))
    if _FOLDER.value:
      _shot(driver, os.path.join(_FOLDER.value, "index.html"), os.path.join(_OUT.value, "folder.png"))
    if _VIDEO.value:
      _shot(driver, os.path.join(_VIDEO.value, "index.html"), os.path.join(_OUT.value, "video.png"))
  finally:
    driver.quit()


if __name__ == "__main__":
  app.run(main)
