"""Prometheus metrics for running pipelines, bridged from Beam metrics.

Beam metrics (counters, distributions, gauges) are the source of truth: transforms count
with ``Metrics.counter(pipeline, name)`` and every runner aggregates them, including over
retried bundles (committed values). This module only *reads* them — it polls
``result.metrics()`` of the running pipeline in a background thread and serves the last
snapshot on ``--metrics_port`` — so nothing is counted twice and there is no second
counting path to drift. A pipeline calls it around ``wait_until_finish``::

    result = pipeline.run()
    with metrics.serve(result, options, pipeline=PIPELINE):
        result.wait_until_finish()

Prometheus labels cannot be expressed in Beam metric names, so names follow a convention
(namespace = pipeline name; any namespace is read):

===============================================  =============================================
Beam metric                                       Prometheus
===============================================  =============================================
counter ``events_parsed``                         ``events_processed_total{step="parse"}``
counter ``events_processed.<step>``               ``events_processed_total{step="<step>"}``
counter ``dead_letters_written.<reason_code>``    ``events_dead_lettered_total{reason=...}``
counter ``late_events_dropped`` / ``_accepted``   ``late_events_dropped_total`` / ``_accepted_``
counters ``processing_time_seconds.le.<bound>``   ``processing_time_seconds`` (histogram) with
+ distribution ``processing_time_ms``             the sum from the distribution
gauge ``source_lag.<source>.<partition>``         ``source_lag_records{source,partition}``
gauge ``watermark_ms``                            ``watermark_lag_seconds`` (now - watermark)
counter ``notifications_delivered.<channel>``     ``notifications_sent_total{channel=...}``
counter ``notifications_dead_lettered.<ch>``      ``notifications_failed_total{channel=...}``
counter ``notifications_retries.<channel>``       ``notifications_retried_total{channel=...}``
counter ``notifications_suppressed.<channel>``    ``notifications_suppressed_total{channel}``
counter ``incidents_triggered``                   ``incidents_opened_total``
counter ``incidents_resolved.<reason>``           ``incidents_resolved_total{reason=...}``
any other counter / gauge                         ``beam_counter_total`` / ``beam_gauge``
                                                  ``{namespace,name}``
===============================================  =============================================

Every series also has ``pipeline=<name>``. A run that sends notifications (``--sink=slack``,
``--notify=pagerduty``...) exports the notification and incident families at 0 from the
first scrape, one series per channel, so alert rules on them see a value before the
first page. ``transforms.measure.MeasureOutput`` produces the
processing-time histogram, the ``output`` step count and the watermark gauge: put it
just before a pipeline's sink. Source connectors set the ``source_lag`` gauges (Kafka
consumer lag per partition; Pub/Sub and Event Hubs backlog where their APIs tell).

On the in-process DirectRunner ``pipeline.run()`` returns when a batch job is already
finished, so the endpoint shows final values; ``--metrics_linger`` keeps it up until
Prometheus has scraped them. Runners that run asynchronously (Flink, Dataflow, Prism,
streaming) show live values. Batch runs print a summary and, with ``--pushgateway``,
push the final values (job = pipeline name), since no scraper sees a short job.

Modules: ``snapshot`` (reading Beam metrics), ``prometheus`` (the naming convention),
``lag`` (Kafka consumer lag from the brokers), ``exporter`` (polling, serving, pushing,
the summary). ``MeasureOutput`` lives with the transforms (``transforms.measure``) and is
re-exported here.
"""

from beam_pipelines.metrics.exporter import Exporter, serve, summary
from beam_pipelines.metrics.lag import KafkaLagProbe, lag_probe_for
from beam_pipelines.metrics.prometheus import EXPORTED, Families, Series, to_families
from beam_pipelines.metrics.snapshot import Snapshot, counter_total, fresh_metrics, read_snapshot
from transforms.measure import LATENCY_BUCKETS, MeasureOutput, source_lag_gauge

__all__ = [
    "EXPORTED", "LATENCY_BUCKETS", "Exporter", "Families", "KafkaLagProbe", "MeasureOutput",
    "Series", "Snapshot", "counter_total", "fresh_metrics", "lag_probe_for", "read_snapshot",
    "serve", "source_lag_gauge", "summary", "to_families",
]
