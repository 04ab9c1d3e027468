"""Ways to damage a saved checkpoint step, shared by the tests and scripts/fault_injection.py."""
import os


def flip_a_bit_in_array_data(step_dir: str) -> None:
  """Flips one bit in the middle of the largest array-data file of a checkpoint."""
  files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(step_dir, "state")) for f in fs
           if os.sep + "d" + os.sep in os.path.join(d, f)]
  path = max(files, key=os.path.getsize)
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 0x10
  open(path, "wb").write(bytes(data))


def overwrite_arrays(step_dir: str) -> None:
  """Every non-empty file of the state item overwritten with garbage."""
  for d, _, fs in os.walk(os.path.join(step_dir, "state")):
    for f in fs:
      if os.path.getsize(os.path.join(d, f)):
        open(os.path.join(d, f), "wb").write(b"garbage")


def empty_data_position(step_dir: str) -> None:
  open(os.path.join(step_dir, "data", "metadata"), "w").write("{}")


def overwrite_manifest(step_dir: str) -> None:
  open(os.path.join(step_dir, "state", "manifest.ocdbt"), "w").write("{}")


DAMAGES = {"every array file overwritten": overwrite_arrays, "data position emptied": empty_data_position,
           "one bit flipped in array data": flip_a_bit_in_array_data,
           "OCDBT manifest overwritten": overwrite_manifest}
