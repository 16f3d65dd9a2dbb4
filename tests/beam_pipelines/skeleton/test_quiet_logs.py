"""A default run prints what a user needs: no library noise, no warning of our own making
(beam_pipelines/skeleton/logs.py, transforms/base/quiet_imports.py)."""

import logging
import os
import subprocess
import sys

import pytest

from beam_pipelines import pageviews, sessions
from beam_pipelines.skeleton.logs import configure_logging

NOISE = ("Key coder", "may not be deterministic", "blocking the event loop",
         "Deleting ", "apitools not found", "Failed to import GCSFileSystem",
         "Prometheus metrics on", "distributed.")


def _noisy(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(n in line for n in NOISE)]


@pytest.mark.unit
def test_library_noise_is_filtered_on_the_loggers_that_emit_it(caplog, monkeypatch):
    monkeypatch.delenv("DASK_LOGGING__DISTRIBUTED", raising=False)
    configure_logging()
    with caplog.at_level(logging.INFO):
        logging.getLogger("kafka.net.selector").warning(
            "Task <poll> ran for 0.2s (>0.1s threshold). It is blocking the event loop")
        logging.getLogger("apache_beam.io.filebasedsink").warning(
            "Deleting %d existing files in target path matching: %s", 3, "out-*")
        logging.getLogger("kafka.net.selector").warning("a broker said something else")
    assert [r.getMessage() for r in caplog.records] == ["a broker said something else"]
    # Dask's workers inherit the setting: its INFO lines of a local cluster stay quiet.
    assert os.environ["DASK_LOGGING__DISTRIBUTED"] == "warning"


@pytest.mark.unit
def test_a_default_run_logs_no_warnings(tmp_path, caplog, capsys):
    out = tmp_path / "out"
    flags = ["--synthetic_events=200", "--sink=jsonl", f"--output={out}"]
    with caplog.at_level(logging.WARNING):
        assert pageviews.main(flags) == 0
        assert pageviews.main(flags) == 0  # the documented replace of the last run's files
        # A stream: the stateful step's keys are typed, so Beam has no key coder to doubt.
        assert pageviews.main(["--streaming", "--synthetic_events=20",
                               "--synthetic_rate=1000"]) == 0
        assert sessions.main(["--streaming", "--synthetic_events=20",
                              "--synthetic_rate=1000"]) == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    err = capsys.readouterr().err
    assert not _noisy(err), _noisy(err)
    assert "pageviews summary:" in err


@pytest.mark.integration
def test_importing_the_pubsub_connector_prints_nothing():
    done = subprocess.run([sys.executable, "-c", "import transforms.io.pubsub"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr


@pytest.mark.integration
def test_a_default_run_from_the_shell_prints_only_its_summary(tmp_path):
    """The metrics endpoint's address is logged at INFO: not shown at the default level."""
    done = subprocess.run(
        [sys.executable, "-m", "beam_pipelines.pageviews", "--synthetic_events=200",
         "--metrics_port=0", "--metrics_address=127.0.0.1"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0] == "pageviews summary:" and lines[-1].startswith("pageviews: 200 valid records"), lines
    assert not _noisy(done.stderr) and "WARNING" not in done.stderr, done.stderr
