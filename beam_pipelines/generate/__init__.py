"""Sample input for every pipeline, to a file or a live Kafka topic::

    python -m beam_pipelines.generate events --count 10000 events.jsonl
    python -m beam_pipelines.generate readings --count 2000 readings.jsonl.gz
    python -m beam_pipelines.generate transactions --count 5000 --dirty 0.02 transactions.jsonl
    python -m beam_pipelines.generate logs --count 5000 logs.jsonl
    python -m beam_pipelines.generate events --count 100000 --rate 2000 --to kafka://user_events

``events`` feed pageviews, sessions and the recommender's trainer; ``readings`` iot_alerts;
``transactions`` fraud; ``logs`` error_rate. Each kind comes from the one seeded generator
of its records (``transforms.io.synthetic``, ``transforms.fraud.generate``), the same the
pipelines' synthetic sources and the tests use, so the same arguments always give the same
lines. ``--dirty F`` makes that fraction malformed in realistic ways. From Python::

    from beam_pipelines.generate import records, write_lines
    write_lines("events.jsonl", (line for _, line in records("events", 1000, dirty=0.01)))
"""

from beam_pipelines.generate.files import write_lines
from beam_pipelines.generate.kinds import KINDS, Kind, records

__all__ = ["KINDS", "Kind", "records", "write_lines"]
