"""Azurite's blob service (``azurite-blob`` from npm) for checkpoint-store tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Any

from beam_pipelines.testing.servers import ServerUnavailable, free_port, wait_for_port

__all__ = ["AZURITE_ACCOUNT", "AZURITE_KEY", "AzuriteBlob"]

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft).
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
               "KBHBeksoGMGw==")


def _azurite_binary() -> str:
    # The repository: beam_pipelines/testing/emulators/eventhubs/azurite.py -> 4 levels up.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))))
    candidates = [os.environ.get("AZURITE_BLOB", ""),
                  os.path.join(os.getcwd(), "node_modules", ".bin", "azurite-blob"),
                  os.path.join(root, "node_modules", ".bin", "azurite-blob"),
                  shutil.which("azurite-blob") or ""]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServerUnavailable(
        "azurite-blob not found: run 'npm install --no-save azurite@3' in the repository "
        "(make test does), or set AZURITE_BLOB to the binary")


class AzuriteBlob:
    """``azurite-blob --inMemoryPersistence`` on a free port; ``connection_string`` for clients."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port or free_port()
        self._process: Any = None
        self._log: Any = None

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                f"AccountKey={AZURITE_KEY};"
                f"BlobEndpoint=http://{self.host}:{self.port}/{AZURITE_ACCOUNT};")

    def start(self) -> AzuriteBlob:

        binary = _azurite_binary()
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            [binary, "--inMemoryPersistence", "--blobHost", self.host, "--blobPort",
             str(self.port), "--skipApiVersionCheck", "--loose", "--silent"],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port(self.host, self.port, timeout=60, process=self._process)
        except ServerUnavailable as exc:
            self._log.seek(0)
            output = self._log.read().decode("utf-8", "replace")[-2000:]
            self.stop()
            raise ServerUnavailable(f"azurite-blob did not start: {exc}\n{output}") from None
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except Exception:
                self._process.kill()
                self._process.wait(10)
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> AzuriteBlob:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
