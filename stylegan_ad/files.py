"""Atomic file writes: write beside the target under a unique temporary name, then rename.

A reader never sees a half-written file, and two writers (processes or threads) never
share a temporary file. `disk_failure` tells a write that failed for the disk's sake
(full, read-only) from a bug.
"""
from __future__ import annotations

import json
import os
import uuid
from typing import Any


def temporary_name(path: str) -> str:
  """A unique name beside `path` to write before renaming onto it."""
  return f"{path}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp"


def write_text(path: str, text: str) -> None:
  tmp = temporary_name(path)
  with open(tmp, "w", encoding="utf-8", errors="replace") as f:  # (an undecodable file name: U+FFFD)
    f.write(text)
  os.replace(tmp, path)


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
