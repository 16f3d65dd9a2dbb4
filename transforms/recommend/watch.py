"""Watching a model directory for new versions while a stream runs.

``pipeline | WatchModelVersions(model_dir, interval=10)`` reads ``model_dir/LATEST`` every
``interval`` seconds (a ``PeriodicImpulse``) and emits a ``ModelMetadata`` (``model_id``:
the version directory, ``model_name``: ``vN``) when it names a new version, in the global
window with a trigger that fires for each one: the shape RunInference's
``model_metadata_pcoll`` side input takes. Beam's ``WatchFilePattern`` watches files
matching a pattern by modification time; a model directory publishes whole versions
through one pointer instead, so this watches the pointer.

A new version is announced only after it has been loaded once here (so a corrupt or
incomplete version never reaches RunInference, which would fail the stream), and at most
one announcement per bundle: the newest (a side input takes one value per pane).
"""

from __future__ import annotations

import logging
import time
from typing import Optional

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelMetadata
from apache_beam.transforms import trigger
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from transforms.base.errors import ConfigError
from transforms.recommend import store
from transforms.recommend.handler import load_version

__all__ = ["WatchModelVersions"]

_LOG = logging.getLogger(__name__)


class _AnnounceNewVersions(beam.DoFn):
    def __init__(self, model_dir: str, model_format: str, namespace: str) -> None:
        self._model_dir = model_dir
        self._model_format = model_format
        self._namespace = namespace
        self._announced: Optional[int] = None
        self._failed: Optional[int] = None

    def setup(self) -> None:
        self._versions_seen = Metrics.counter(self._namespace, "model_versions_announced")
        self._load_failures = Metrics.counter(self._namespace, "model_load_failures")

    def start_bundle(self) -> None:
        self._pending: Optional[tuple[ModelMetadata, Timestamp]] = None

    def process(self, tick, timestamp=beam.DoFn.TimestampParam):
        try:
            version = store.latest_version(self._model_dir)
        except (OSError, ValueError) as exc:  # an unreadable pointer: keep the current one
            _LOG.warning("cannot read %s/LATEST: %s", self._model_dir, exc)
            return
        if version is None or version == self._announced or version == self._failed:
            return
        path = store.version_path(self._model_dir, version)
        try:
            load_version(path, self._model_format)
        except Exception as exc:  # a broken version must not reach RunInference
            self._failed = version
            self._load_failures.inc()
            _LOG.warning("model version %s cannot be loaded, keeping the current one: %s",
                         path, exc)
            return
        self._announced = version
        self._versions_seen.inc()
        self._pending = (ModelMetadata(model_id=path, model_name=f"v{version}"), timestamp)

    def finish_bundle(self):
        if self._pending is not None:
            metadata, timestamp = self._pending
            self._pending = None
            yield WindowedValue(metadata, timestamp, [GlobalWindow()])


class WatchModelVersions(beam.PTransform):
    """PBegin -> ModelMetadata of each new version ``model_dir/LATEST`` names (the first
    one at once), for ``RunInference(..., model_metadata_pcoll=...)``.

    :param model_dir: the model directory (holding ``LATEST``).
    :param interval: seconds between two reads of ``LATEST``.
    :param model_format: the format a version is test-loaded in before it is announced.
    :param metrics_namespace: namespace of ``model_versions_announced`` and
        ``model_load_failures``.
    """

    def __init__(self, model_dir: str, interval: float = 10.0, *, model_format: str = "sklearn",
                 metrics_namespace: str = "recommendations") -> None:
        super().__init__()
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
            raise ConfigError("--model_poll_interval", "a number of seconds > 0", interval)
        self._model_dir = model_dir
        self._interval = float(interval)
        self._model_format = model_format
        self._namespace = metrics_namespace

    def expand(self, pbegin):
        return (
            pbegin
            | "Every" >> PeriodicImpulse(start_timestamp=time.time(),
                                         fire_interval=self._interval)
            | "NewVersions" >> beam.ParDo(_AnnounceNewVersions(
                self._model_dir, self._model_format, self._namespace))
            | "EachVersionAPane" >> beam.WindowInto(
                GlobalWindows(), trigger=trigger.Repeatedly(trigger.AfterCount(1)),
                accumulation_mode=trigger.AccumulationMode.DISCARDING)
        )

