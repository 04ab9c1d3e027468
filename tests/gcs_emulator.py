"""A Google Cloud Storage emulator on loopback (gcp-storage-emulator, in memory), with
epath (gcsfs), google-cloud-storage and TensorStore pointed at it through the
environment: no network, no account. Used by tests/test_remote_workdir.py and
scripts/remote_workdir.py."""
import os
import socket

ENV = ("STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL", "GOOGLE_CLOUD_PROJECT", "NO_GCE_CHECK",
       "GOOGLE_AUTH_TOKEN_FOR_TESTING")


def start(bucket: str):
  """Starts the server with `bucket` and sets the environment; returns the server (its
  `stop()`: the caller restores the environment, see `ENV`)."""
  from gcp_storage_emulator.server import create_server
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
  server.start()
  # clients that close a kept-alive connection make its HTTPServer print a traceback each
  server._api._httpd.handle_error = lambda request, address: None
  url = f"http://127.0.0.1:{port}"
  os.environ.update(dict(zip(ENV, (url, url, "test", "True", "test"))))
  return server
