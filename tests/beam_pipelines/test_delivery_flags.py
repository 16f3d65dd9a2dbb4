"""``--delivery=exactly_once`` and ``--isolation_level``: what the flags become, and the one
line that refuses exactly once where a run cannot give it."""

from __future__ import annotations

import pytest
from apache_beam.options.pipeline_options import StandardOptions

from beam_pipelines import pageviews
from beam_pipelines.wiring.kafka import config_from_options, exactly_once_from_options
from runners.presets import DASK, LOCAL_STREAMING, OFFLINE_DIRECT
from transforms.base.errors import ConfigError
from transforms.io.kafka.transactions import ExactlyOnce

pytestmark = pytest.mark.unit

KAFKA = ["--source=kafka", "--topic=events", "--consumer_group=pv", "--sink=kafka",
         "--output=counts", "--delivery=exactly_once"]


def options(*flags: str, runner: str = LOCAL_STREAMING, streaming: bool = True):
    parsed = pageviews.PAGEVIEWS.parse_flags(list(flags))
    standard = parsed.view_as(StandardOptions)
    standard.runner, standard.streaming = runner, streaming
    return parsed


def test_exactly_once_names_the_group_and_a_stable_transactional_id():
    assert exactly_once_from_options(options(*KAFKA), pipeline="pageviews") == ExactlyOnce(
        "pv", "beam-pipelines.pageviews.pv.counts")
    given = options(*KAFKA, "--transactional_id=pv-prod")
    assert exactly_once_from_options(given, pipeline="pageviews").transactional_id == "pv-prod"
    assert exactly_once_from_options(options(*KAFKA[:-1]), pipeline="pageviews") is None


@pytest.mark.parametrize("runner, streaming, says", [
    (DASK, False, "DaskRunner cannot give it"),
    (OFFLINE_DIRECT, False, "a batch run cannot give it"),
    (LOCAL_STREAMING, False, "a batch run cannot give it"),
    ("FlinkRunner", True, "FlinkRunner cannot give it"),
])
def test_exactly_once_is_refused_in_one_line_where_a_run_cannot_give_it(runner, streaming, says):
    with pytest.raises(ConfigError) as refused:
        exactly_once_from_options(options(*KAFKA, runner=runner, streaming=streaming),
                                  pipeline="pageviews")
    line = str(refused.value)
    assert line.startswith("--delivery: exactly_once needs a streaming run on "
                           "LocalStreamingRunner") and says in line and "\n" not in line


NO_GROUP = [flag for flag in KAFKA if not flag.startswith("--consumer_group")]


@pytest.mark.parametrize("flags, says", [
    ([*KAFKA, "--sink=postgres", "--output=postgresql://h/db"],
     "not --source=kafka --sink=postgres"),
    (NO_GROUP, "needs --consumer_group"),  # (an empty --consumer_group= is refused earlier)
])
def test_exactly_once_needs_kafka_on_both_sides_and_a_group(flags, says):
    with pytest.raises(ConfigError, match=says):
        exactly_once_from_options(options(*flags), pipeline="pageviews")


def test_readers_read_committed_transactions_unless_told_otherwise():
    assert config_from_options(options(*KAFKA))["isolation_level"] == "read_committed"
    told = options(*KAFKA, "--isolation_level=read_uncommitted")
    assert config_from_options(told)["isolation_level"] == "read_uncommitted"
    with pytest.raises(ConfigError, match="--isolation_level: expected one of read_committed"):
        options(*KAFKA, "--isolation_level=dirty")
