"""The skeleton's exit codes: 2 when the job never started, 1 when it failed while running
(one line naming what failed), a traceback for anything else (a bug)."""

import errno

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.skeleton.run import main, while_running
from transforms.base.errors import (
    ConfigError,
    MissingExtraError,
    NotAvailableError,
    SinkError,
    SourceError,
)

pytestmark = pytest.mark.unit


def failing(exc, *, running, flags=()):
    """A pipeline's run() that raises ``exc`` while building (``running=False``) or while
    the job runs (inside the skeleton's while_running block)."""

    def run(argv):
        if not running:
            raise exc
        with while_running(PipelineOptions(list(flags))):
            raise exc

    return run


@pytest.mark.parametrize("exc, running, code", [
    (ConfigError("--window_size", "a whole number of seconds > 0", "x"), False, 2),
    (SourceError("--topic: topic 'x' does not exist"), False, 2),  # checked at launch
    (SinkError("cannot connect to PostgreSQL at h"), False, 2),
    (SourceError("--input: f.gz: truncated gzip file"), True, 1),
    (SinkError("PostgreSQL sink: writing to t failed"), True, 1),
    # Kinds that say the job cannot run at all: 2 even when a runner raises them from
    # pipeline.run() (DaskRunner's refusals and its unreachable scheduler).
    (NotAvailableError("no Dask scheduler accepts connections at tcp://h:1"), True, 2),
    (ConfigError("--kafka_config", "a setting kafka-python knows", "x=1"), True, 2),
    (MissingExtraError("postgres", "psycopg"), True, 2),
])
def test_exit_codes(capsys, exc, running, code):
    assert main(failing(exc, running=running)) == code
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {exc}"]


def test_an_os_error_while_running_is_one_line_naming_the_output(capsys, tmp_path):
    out = tmp_path / "out"
    exc = OSError(errno.ENOSPC, "No space left on device")
    wrapped = RuntimeError("write failed [while running 'WriteJsonLines/Write/WriteImpl']")
    wrapped.__cause__ = exc
    run = failing(wrapped, running=True, flags=["--sink=jsonl", f"--output={out}"])
    assert main(run) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {out}: No space left on device [while running "
        "'WriteJsonLines/Write/WriteImpl']"]


def test_beam_temp_folders_of_a_failed_run_are_removed(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "beam-temp-older-run").mkdir()  # another run's: kept

    def run(argv):
        with while_running(PipelineOptions(["--sink=jsonl", f"--output={out}"])):
            (out / "beam-temp-this-run").mkdir()
            raise SinkError("failed")

    assert main(run) == 1
    assert sorted(p.name for p in out.iterdir()) == ["beam-temp-older-run"]


def test_other_errors_keep_their_traceback():
    with pytest.raises(ZeroDivisionError):
        main(failing(ZeroDivisionError("a bug"), running=True))
