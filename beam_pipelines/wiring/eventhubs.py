"""Event Hubs from the flags: ``--source=eventhubs``, ``--sink=eventhubs``."""

from __future__ import annotations

from typing import Optional

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.options import IOOptions
from beam_pipelines.options.eventhubs import EventHubsOptions
from beam_pipelines.options.formats import FormatOptions
from beam_pipelines.wiring import formats
from beam_pipelines.wiring.source_spec import SourceSpec
from transforms.base.errors import ConfigError
from transforms.io.eventhubs import ReadFromEventHubs, WriteToEventHubs
from transforms.io.eventhubs.client import check_connection, client_module
from transforms.io.eventhubs.rules import CONNECTION_FORM, hub_name

__all__ = ["sink_from_options", "source_from_options"]


def source_from_options(options: PipelineOptions) -> SourceSpec:
    """``--source=eventhubs``: bounded with ``--eventhubs_stop_at end`` or ``--eventhubs_max_events``."""
    client_module()
    eh = options.view_as(EventHubsOptions)
    if not eh.eventhubs_connection_string:
        raise ConfigError("--eventhubs_connection_string",
                          f"{CONNECTION_FORM} when --source=eventhubs")
    fmt = options.view_as(FormatOptions).format or "json"
    if eh.eventhubs_event_time_field and fmt != "json":
        raise ConfigError("--eventhubs_event_time_field", "JSON events (--format=json); the "
                          f"pipelines stamp --format={fmt} events with their own event time "
                          "when they parse them", eh.eventhubs_event_time_field)
    read = ReadFromEventHubs(
        eh.eventhubs_connection_string, eh.eventhub,
        consumer_group=eh.eventhubs_consumer_group, start_at=eh.eventhubs_start_at,
        stop_at=eh.eventhubs_stop_at, max_events=eh.eventhubs_max_events,
        owner_level=eh.eventhubs_owner_level, checkpoint_store=eh.eventhubs_checkpoint_store,
        checkpoint_container=eh.eventhubs_checkpoint_container,
        event_time_field=eh.eventhubs_event_time_field, idle_timeout=eh.eventhubs_idle_timeout,
    )
    return SourceSpec(read, bounded=read.bounded)


def sink_from_options(options: PipelineOptions, *, pipeline: str, streaming: bool,
                      record: Optional[type] = None) -> WriteToEventHubs:
    """``--sink=eventhubs --output=HUB``: each record to the ``--output`` hub (as the Kafka
    and Pub/Sub sinks write to ``--output``), as JSON or in ``--sink_format`` (the subject
    named after the hub, ``HUB-value``). Without ``--output`` the hub is ``--eventhub`` (or
    the connection string's EntityPath), unless the source reads that hub: results are
    never written back into the hub the pipeline reads."""
    client_module()
    eh = options.view_as(EventHubsOptions)
    io = options.view_as(IOOptions)
    if not eh.eventhubs_connection_string:
        raise ConfigError("--eventhubs_connection_string",
                          f"{CONNECTION_FORM} when --sink=eventhubs")
    if io.output:
        try:
            flag, name = "--output", hub_name(io.output)
        except ValueError as exc:
            raise ConfigError.from_message(f"--output: {exc}") from None
    elif io.source == "eventhubs":
        raise ConfigError("--output", "the hub to write results to when --sink=eventhubs "
                          "(--eventhub names the hub --source=eventhubs reads)")
    else:
        flag, name = "--eventhub", eh.eventhub
    hub = check_connection(eh.eventhubs_connection_string, name, flag)
    return WriteToEventHubs(eh.eventhubs_connection_string, hub,
                            partition_key_field=eh.eventhubs_partition_key_field,
                            value_fn=formats.record_encoder(options, topic=hub, record=record))
