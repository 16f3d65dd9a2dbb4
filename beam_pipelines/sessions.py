"""User sessions: per user, bursts of activity separated by --session_gap of inactivity.

"How long was the visit, how many pages, where did they drop off", the question after
page views, written once for stream and batch::

    python -m beam_pipelines.sessions                        # synthetic events, a table
    python -m beam_pipelines.sessions --source=file --input='events/*.jsonl.gz' \\
        --sink=iceberg --output=web.sessions --iceberg_warehouse=lake/     # a backfill
    python -m beam_pipelines.sessions --source=kafka --topic=user_events \\
        --sink=postgres --output=postgresql://me@db/analytics --early_firing=60

One row per user and session (``UserSession``): ``user_id``, ``session_start`` and
``session_end`` (the first and the last event's time), ``events``, ``distinct_pages``,
``first_page``, ``last_page`` and ``duration_seconds``. Users are keyed by the id's
string form (``123`` and ``"123"`` are one user). An event at least ``--session_gap``
seconds (default 1800) after the previous event of a user starts a new session; an event
that arrives late and falls between two sessions closer than the gap to both merges them
(Beam's ``Sessions`` windows; docs/sessions.md).

Batch gives the final sessions. Streaming gives panes as sessions grow and merge:
EARLY every ``--early_firing`` seconds while a session changes, ON_TIME when the
watermark passes its end (last event + gap), LATE for events within
``--allowed_lateness``; later events are dead letters (reason ``late``). Every valid
event counts, whatever its ``action``. ``--window_size`` and ``--window_period`` do not
apply (sessions have no fixed windows) and are refused.

Files and Kafka are parsed on the vectorized path (``--batch_engine=arrow``, the
default, as pageviews; ``beam_pipelines.skeleton.user_events``); the Arrow tables of
valid events are then turned back into events, one record each, for the session
combine: a session needs its events' order in time per user, which the per-table
pre-aggregation of pageviews cannot give, and parsing is where the vectorized path saves
its time. ``--batch_engine=records`` parses one record at a time; both give the same
sessions and dead letters.

In the PostgreSQL sink rows are upserted on (``user_id``, ``session_start``). When two
sessions merge (a late event bridging them) or a session grows backwards (a late event
before its start), the merged session is a new row (its start is the earlier one) and the
rows of the sessions it absorbed stay in the table: the current sessions are the rows
not contained in another row of the same user (the query in docs/sessions.md). In order
input and batch runs never leave such rows.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines import options as opts
from beam_pipelines.options.quality import QualityOptions
from beam_pipelines.skeleton import Context, Core, Inputs, Pipeline, ResultSpec
from beam_pipelines.skeleton.user_events import read_user_events
from beam_pipelines.wiring.source_spec import SourceSpec
from transforms.base.errors import ConfigError
from transforms.batches import user_events
from transforms.contracts import USER_EVENTS
from transforms.session_windows import DEFAULT_GAP, SessionConfig
from transforms.sessions import Sessionize, UserSession

__all__ = ["DESCRIPTION", "PIPELINE", "RESULTS", "SESSIONS", "Sessions", "SessionsOptions",
           "events_of_table", "main", "run"]

PIPELINE = "sessions"
DESCRIPTION = (__doc__ or "").splitlines()[0]


class SessionsOptions(PipelineOptions):
    """sessions-specific flags."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--session_gap",
            type=opts.seconds(1),
            default=DEFAULT_GAP,
            help="Seconds of inactivity that end a user's session: an event at least this "
            f"long after the previous one starts a new session. Default {DEFAULT_GAP}.",
        )


RESULTS = ResultSpec.of(
    UserSession,
    name=PIPELINE,
    key=["user_id", "session_start"],
    title="user sessions",
    table="sessions",
    # Accumulating panes: a later pane of a session never has fewer events (a replayed or
    # out-of-order older pane does not overwrite a newer one in PostgreSQL).
    never_decrease="events",
)


def events_of_table(table: Any) -> list:
    """An Arrow table of valid events (the vectorized parse) -> its UserEvents."""
    return [event for event, _ in user_events(table)]


class Sessions(Pipeline):
    """User sessions (see the module docstring)."""

    name = PIPELINE
    description = DESCRIPTION
    contract = USER_EVENTS
    results = RESULTS
    flags = (SessionsOptions, QualityOptions, opts.BatchEngineOptions)

    def check(self, options: PipelineOptions) -> None:
        windows = options.view_as(opts.WindowOptions)
        for flag, value in (("--window_size", windows.window_size),
                            ("--window_period", windows.window_period)):
            if value is not None:
                raise ConfigError.from_message(
                    f"{flag}: sessions have no fixed windows; set the inactivity gap with "
                    "--session_gap instead")
        self.session_config(options)
        super().check(options)

    def session_config(self, options: PipelineOptions) -> SessionConfig:
        """The gap of ``--session_gap``, ``--allowed_lateness`` and ``--early_firing``."""
        windows = options.view_as(opts.WindowOptions)
        return SessionConfig(
            gap=options.view_as(SessionsOptions).session_gap or DEFAULT_GAP,
            allowed_lateness=windows.allowed_lateness or 0,
            early_firing=windows.early_firing,
        )

    def read(self, pipeline: beam.Pipeline, source: SourceSpec, ctx: Context) -> Inputs:
        """Per record, or parsed as Arrow tables on the vectorized path."""
        return read_user_events(pipeline, source, ctx)

    def core(self, inputs: Inputs, ctx: Context) -> Core:
        events = inputs.records
        if inputs.form != "records":
            events = events | "ToEvents" >> beam.FlatMap(events_of_table)
        sessions = events | "Sessionize" >> Sessionize(
            self.session_config(ctx.options), streaming=ctx.streaming, metrics_namespace=self.name
        )
        # Batch has no late data: no (empty) late output to flatten into the dead letters.
        return Core(sessions.sessions, sessions.late if ctx.streaming else None)


SESSIONS = Sessions()
run = SESSIONS.run
main = SESSIONS.main


if __name__ == "__main__":
    raise SystemExit(main())
