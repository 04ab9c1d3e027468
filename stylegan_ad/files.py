"""Run-directory files, local or remote: every read and write of a workdir goes through here.

A workdir is a local path or a URI that `etils.epath` opens (`gs://bucket/run`: needs
`pip install stylegan_ad[gcs]`; Orbax writes the checkpoints there through TensorStore's
own GCS driver). Local writes go beside the target under a unique temporary name, then a
rename: a reader never sees a half-written file, and two writers (processes or threads)
never share a temporary file. An object store replaces an object whole on upload, so a
remote write is one upload. `disk_failure` tells a write that failed for the disk's sake
(full, read-only) from a bug.
"""
from __future__ import annotations

import json
import os
import uuid
from typing import Any

from etils import epath


def is_remote(path: str) -> bool:
  """Whether `path` is a URI (`gs://...`) rather than a local path."""
  return "://" in str(path)


def absolute(path: str) -> str:
  """A local path made absolute; a URI as it is (`os.path.abspath` would mangle it)."""
  return str(path) if is_remote(path) else os.path.abspath(path)


def name(path: str) -> str:
  """The last part of a path or URI (`gs://b/run/gan/` -> `gan`)."""
  return str(path).rstrip("/").rsplit("/", 1)[-1]


def makedirs(path: str) -> None:
  epath.Path(path).mkdir(parents=True, exist_ok=True)


def exists(path: str) -> bool:
  return epath.Path(path).exists()


def isdir(path: str) -> bool:
  return epath.Path(path).is_dir()


def listdir(path: str) -> list[str]:
  """The names in a directory; on an object store, where a directory holding nothing
  does not exist, none."""
  try:
    return sorted(p.name for p in epath.Path(path).iterdir())
  except FileNotFoundError:
    if is_remote(path):
      return []
    raise


def rmtree(path: str) -> None:
  epath.Path(path).rmtree(missing_ok=True)


def rename(src: str, dst: str) -> None:
  epath.Path(src).rename(dst)


def read_text(path: str) -> str:
  return epath.Path(path).read_text(encoding="utf-8")


def read_json(path: str) -> Any:
  return json.loads(read_text(path))


def temporary_name(path: str) -> str:
  """A unique name beside `path` to write before renaming onto it."""
  return f"{path}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"


def write_bytes(path: str, data: bytes) -> None:
  if is_remote(path):
    epath.Path(path).write_bytes(data)
    return
  tmp = temporary_name(path)
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)


def write_text(path: str, text: str) -> None:
  # (a lone surrogate from an undecodable file name: "?")
  write_bytes(path, text.encode("utf-8", errors="replace"))


def write_json(path: str, obj: Any) -> None:
  write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")


DISK_FAILURES = {28: "no space left on the device", 30: "the file system is read-only",
                 122: "disk quota exceeded"}


def disk_failure(e: BaseException | None) -> str | None:
  """The cause of a failed write when it is the disk's: full, read-only or over quota
  (found in the exception or its causes, as an OSError or as tensorstore's error text);
  None otherwise."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in DISK_FAILURES:
      return DISK_FAILURES[e.errno]
    text = str(e)
    for code, reason in DISK_FAILURES.items():  # tensorstore: "... [os_error_code='28']"
      if f"os_error_code='{code}'" in text or f"[Errno {code}]" in text:
        return reason
    e = e.__cause__ or e.__context__
  return None
