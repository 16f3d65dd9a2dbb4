"""Sink columns, Parquet schema and PostgreSQL DDL derive from the result record, and give
exactly what pageviews and iot_alerts declared by hand before the skeleton."""

from __future__ import annotations

from typing import NamedTuple, Optional

import pyarrow as pa
import pytest

from beam_pipelines import iot_alerts, pageviews, schemas
from beam_pipelines.skeleton import ResultSpec
from transforms.base.errors import ConfigError
from transforms.records import UtcTime

pytestmark = pytest.mark.unit

PANES = [("pane_timing", pa.string()), ("pane_index", pa.int64()), ("is_final", pa.bool_())]
SQL_PANES = [("pane_timing", "text"), ("pane_index", "integer"), ("is_final", "boolean")]
TIME = pa.timestamp("us", tz="UTC")


def test_pageviews_results_are_what_they_were_by_hand():
    spec = pageviews.RESULTS
    assert spec.columns == ["window_start", "window_end", "page", "count"]
    assert spec.pane_columns == ["pane_timing", "pane_index", "is_final"]
    assert spec.sort_by == ["window_start", "page"] and spec.title == "page views per window"
    assert spec.postgres_table == "page_views" and spec.postgres_key == ["window_start", "page"]
    assert spec.never_decrease == "count"
    assert spec.postgres_columns == [
        ("window_start", "timestamptz NOT NULL"), ("window_end", "timestamptz NOT NULL"),
        ("page", "text NOT NULL"), ("count", "bigint NOT NULL"), *SQL_PANES]
    batch = [("window_start", TIME), ("window_end", TIME), ("page", pa.string()),
             ("count", pa.int64())]
    assert spec.parquet_schema(False) == pa.schema(batch)
    assert spec.parquet_schema(True) == pa.schema(batch + PANES)


def test_iot_alerts_results_are_what_they_were_by_hand():
    spec = iot_alerts.RESULTS
    assert spec.columns == ["WindowStart", "WindowTime", "DeviceId", "AvgTemp", "MaxHumidity"]
    assert spec.sort_by == ["WindowStart", "DeviceId"]
    assert spec.postgres_table == "iot_alerts" and spec.postgres_key == ["DeviceId", "WindowStart"]
    assert spec.never_decrease is None
    assert spec.postgres_columns == [
        ("DeviceId", "text NOT NULL"), ("WindowStart", "timestamptz NOT NULL"),
        ("WindowTime", "timestamptz NOT NULL"), ("AvgTemp", "double precision NOT NULL"),
        ("MaxHumidity", "double precision NOT NULL"), *SQL_PANES]
    batch = [("WindowStart", TIME), ("WindowTime", TIME), ("DeviceId", pa.string()),
             ("AvgTemp", pa.float64()), ("MaxHumidity", pa.float64())]
    assert spec.parquet_schema(False) == pa.schema(batch)
    assert spec.parquet_schema(True) == pa.schema(batch + PANES)


class Decision(NamedTuple):
    """A record that is not registered among the exported schemas."""

    transaction: str
    decided_at: UtcTime
    score: float
    blocked: bool
    rule: Optional[str] = None


def test_any_record_drives_its_columns_and_a_wrong_column_is_refused():
    spec = ResultSpec.of(Decision, name="fraud", key=["transaction"], title="decisions")
    assert spec.columns == ["transaction", "decided_at", "score", "blocked", "rule"]
    assert spec.pane_columns == [] and spec.postgres_table == "fraud"
    assert spec.postgres_columns == [
        ("transaction", "text NOT NULL"), ("decided_at", "timestamptz NOT NULL"),
        ("score", "double precision NOT NULL"), ("blocked", "boolean NOT NULL"),
        ("rule", "text")]
    assert spec.parquet_schema(True).field("decided_at").type == TIME
    assert schemas.json_schema(Decision)["properties"]["decided_at"]["format"] == "date-time"
    with pytest.raises(ConfigError, match="^key: expected the fields of Decision"):
        ResultSpec.of(Decision, name="fraud", key=["id"], title="t")
    with pytest.raises(ConfigError, match="^columns: expected the fields of Decision"):
        ResultSpec.of(Decision, name="fraud", key=["transaction"], title="t",
                      columns=["transaction", "score"])
