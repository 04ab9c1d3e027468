"""Atomic file writes: write beside the target under a unique temporary name, then rename.

A reader never sees a half-written file, and two writers (processes or threads) never
share a temporary file.
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
