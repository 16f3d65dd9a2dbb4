"""``--help`` names the command as the user typed it: a console script, or ``python -m``."""

import pytest

from beam_pipelines.pageviews import main
from beam_pipelines.program import program_name

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("argv0, expected", [
    ("/venv/bin/beam-pageviews", "beam-pageviews"),
    ("/venv/Scripts/beam-pageviews.exe", "beam-pageviews"),
    ("/repo/beam_pipelines/pageviews.py", "python -m beam_pipelines.pageviews"),
    ("/venv/bin/pytest", "python -m beam_pipelines.pageviews"),
])
def test_program_name(argv0, expected):
    assert program_name("beam_pipelines.pageviews", argv0) == expected


def test_the_console_script_shows_its_own_name_in_usage(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["/venv/bin/beam-pageviews", "--help"])
    with pytest.raises(SystemExit):
        main(["--help"])
    assert capsys.readouterr().out.startswith("usage: beam-pageviews ")
