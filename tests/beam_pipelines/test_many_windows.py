"""A window configuration that puts each event in more than 1,000 windows is refused
unless --allow_many_windows confirms it: one line naming the flags."""

import pytest

from beam_pipelines import iot_alerts, pageviews
from transforms.base.errors import ConfigError
from transforms.windowing import MAX_WINDOWS_PER_EVENT, WindowConfig

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("module", [pageviews, iot_alerts])
def test_86400_windows_per_event_need_a_confirmation(module, capsys):
    assert module.main(["--window_size=86400", "--window_period=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --window_period: --window_size=86400 with --window_period=1 puts "
                   "every event in 86400 windows (more than 1000); pass --allow_many_windows "
                   "if that is meant"]


def test_the_limit_and_the_confirmation():
    assert WindowConfig(size=1000, period=1).windows_per_event == MAX_WINDOWS_PER_EVENT
    assert WindowConfig(size=300).windows_per_event == 1
    assert WindowConfig(size=3000, period=7).windows_per_event == 429
    with pytest.raises(ConfigError, match="--allow_many_windows"):
        WindowConfig(size=1001, period=1)
    config = WindowConfig(size=1001, period=1, allow_many_windows=True)
    assert len(config.window_starts(1_704_067_200)) == 1001


def test_allow_many_windows_runs(capsys):
    assert pageviews.main(["--window_size=1200", "--window_period=1", "--allow_many_windows",
                           "--synthetic_events=5"]) == 0
    assert "5 valid records" in capsys.readouterr().err
