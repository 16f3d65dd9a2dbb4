"""Inspect and replay dead letters: ``python -m beam_pipelines.dead_letters inspect|replay``.

A pipeline's ``--dead_letter DIR`` holds JSON lines of
:class:`~transforms.records.DeadLetter` (``DIR/dead_letters-*.jsonl``); with
``--dead_letter kafka://TOPIC`` they are the records of a topic, read from its start to
the end offsets seen when the command starts. ``inspect`` says
why records were rejected (counts per reason_code, first and last rejection, samples);
``replay`` writes the payloads back as a JSON-lines file the pipeline reads with
``--source=file --input=FILE``, optionally only some reasons and after a fix function,
and checks the result against the pipeline's input contract first, so a fix that does
not fix is seen before the pipeline runs::

    python -m beam_pipelines.dead_letters inspect rejected/
    python -m beam_pipelines.dead_letters replay rejected/ --output fixed.jsonl \\
        --only-reason missing_field --fix fixes.py:add_action
    python -m beam_pipelines.dead_letters inspect kafka://rejected --bootstrap_servers=K:9092
    python -m beam_pipelines.dead_letters replay kafka://rejected --output kafka://user_events

Any Beam filesystem path works (local, gs://, s3://...). Records are read one file at a
time and the counts kept per reason, so a large dead-letter directory needs little memory.

Modules: ``read`` (locations and reading), ``inspection``, ``replay``, ``cli``.
"""

from beam_pipelines.dead_letters.cli import PROG, build_parser, main, run
from beam_pipelines.dead_letters.inspection import ReasonStats, inspect, print_inspection
from beam_pipelines.dead_letters.read import (
    KafkaTopic,
    Unreadable,
    dead_letter_files,
    kafka_config,
    read_dead_letters,
)
from beam_pipelines.dead_letters.replay import (
    CONTRACTS,
    ReplayReport,
    load_contract,
    load_fix,
    replay,
)

__all__ = ["CONTRACTS", "PROG", "KafkaTopic", "ReasonStats", "ReplayReport", "Unreadable",
           "build_parser", "dead_letter_files", "inspect", "kafka_config", "load_contract",
           "load_fix", "main", "print_inspection", "read_dead_letters", "replay", "run"]
