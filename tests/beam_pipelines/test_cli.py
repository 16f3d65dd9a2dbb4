"""The command line as a newcomer meets it: the default run, and one-line errors for bad flags."""

import subprocess
import sys

import pytest

from beam_pipelines import pageviews


@pytest.mark.integration
def test_default_run_needs_no_flags_and_prints_a_table():
    done = subprocess.run(
        [sys.executable, "-m", "beam_pipelines.pageviews"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "page views per window" in done.stdout
    assert "window_start" in done.stdout and "count" in done.stdout
    assert "rejected" in done.stderr  # the synthetic source includes a few malformed events
    assert "Traceback" not in done.stderr


@pytest.mark.integration
def test_bad_flag_from_the_shell_is_one_line_and_exit_code_2():
    done = subprocess.run(
        [sys.executable, "-m", "beam_pipelines.pageviews", "--window_size=five"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --window_size: expected a whole number of seconds >= 1, got 'five'"
    ]


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["--window_size=0"], "--window_size"),
        (["--window_size=300", "--window_period=600"], "--window_period"),
        (["--allowed_lateness=-1"], "--allowed_lateness"),
        (["--early_firing=soon"], "--early_firing"),
        (["--source=mysql"], "--source"),
        (["--sink=s3"], "--sink"),
        (["--source=file"], "--input"),
        (["--source=file", "--input=/nonexistent/*.jsonl"], "--input"),
        (["--sink=jsonl"], "--output"),
        (["--sink=postgres", "--output=not a dsn"], "--output"),
        (["--windw_size=3"], "--windw_size"),
        (["--synthetic_events=-4"], "--synthetic_events"),
        (["--dead_letter=ftp://host/dir"], "--dead_letter"),
    ],
)
@pytest.mark.unit
def test_bad_flags_name_the_flag_and_the_expected_form(argv, flag, capsys):
    assert pageviews.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {flag}"), err[0]


@pytest.mark.unit
def test_help_lists_the_pipeline_flags(capsys):
    with pytest.raises(SystemExit) as exited:
        pageviews.run(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--source", "--input", "--window_size", "--early_firing", "--sink", "--dead_letter"):
        assert flag in out


@pytest.mark.unit
def test_run_options_make_each_view_once_and_share_its_values():
    import pickle

    from apache_beam.options.pipeline_options import StandardOptions, TypeOptions

    from beam_pipelines.options import IOOptions, RunOptions, parse

    options = parse(["--source=file", "--input=x.jsonl"], [IOOptions], prog="test")
    assert isinstance(options, RunOptions)
    view = options.view_as(StandardOptions)
    assert options.view_as(StandardOptions) is view  # built once
    view.streaming = True
    assert options.view_as(StandardOptions).streaming is True
    assert options.get_all_options()["streaming"] is True
    assert options.view_as(IOOptions).input == "x.jsonl"
    assert options.view_as(TypeOptions) is not view
    copy = pickle.loads(pickle.dumps(options))
    assert "_views" not in copy.__dict__
    assert copy.view_as(IOOptions).input == "x.jsonl" and copy.view_as(StandardOptions).streaming
