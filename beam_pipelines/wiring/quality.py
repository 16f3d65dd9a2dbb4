"""``--quality_rules``: the data-quality rules a pipeline applies to its parsed records."""

from __future__ import annotations

from typing import Optional

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_pipelines import schemas
from beam_pipelines.options import WindowOptions
from beam_pipelines.options.quality import QualityOptions
from transforms.quality import (
    Checked,
    CheckQuality,
    CheckQualityTables,
    Rule,
    load_rules,
    vectorizable,
)

__all__ = ["PIPELINE_SCHEMAS", "apply_quality", "apply_quality_to_tables", "rules_for",
           "tables_allowed"]

# The schema each pipeline checks when the rules file is keyed by schema (pipelines on
# the skeleton pass their input contract's schema instead).
PIPELINE_SCHEMAS = {"pageviews": "UserEvent", "iot_alerts": "IoTReading"}


def rules_for(options: PipelineOptions, pipeline: str, schema: Optional[str] = None) -> list[Rule]:
    """The rules ``--quality_rules`` configures for ``pipeline`` (empty when unset)."""
    path = options.view_as(QualityOptions).quality_rules
    if not path:
        return []
    schema = schema or PIPELINE_SCHEMAS.get(pipeline)
    fields = schemas.field_names(schema) if schema else None
    return load_rules(path, schema=schema, fields=fields, schemas=list(schemas.SCHEMAS))


def apply_quality(parsed_valid: beam.PCollection, options: PipelineOptions, pipeline: str, *,
                  schema: Optional[str] = None, label: str = "Quality") -> Checked:
    """Apply ``--quality_rules`` to a pipeline's parsed records: ``(valid, dead_letters)``.

    Without the flag the records pass through unchanged (and ``dead_letters`` is empty),
    so a pipeline can call this unconditionally. ``schema`` picks the rules of a file
    keyed by schema (default: the pipeline's input schema, see PIPELINE_SCHEMAS).
    """
    rules = rules_for(options, pipeline, schema)
    if not rules:
        return Checked(parsed_valid,
                       parsed_valid | f"{label}NotConfigured" >> beam.FlatMap(lambda _: ()))
    streaming = bool(options.view_as(StandardOptions).streaming)
    lateness = options.view_as(WindowOptions).allowed_lateness or 0
    return parsed_valid | label >> CheckQuality(
        rules, pipeline=pipeline, streaming=streaming, allowed_lateness=lateness)


def tables_allowed(options: PipelineOptions, schema: str) -> bool:
    """Whether ``--quality_rules`` lets a run take the vectorized (Arrow) path: yes without
    the flag, and with rules that need no state across records (all but
    unique_within_window)."""
    return vectorizable(rules_for(options, "", schema))


def apply_quality_to_tables(tables: beam.PCollection, options: PipelineOptions, pipeline: str,
                            record_type: type, *, schema: str,
                            label: str = "Quality") -> Optional[Checked]:
    """:func:`apply_quality` on the vectorized path: Arrow tables of ``record_type`` rows in,
    the same tables without the failing rows out (None without ``--quality_rules``, so the
    graph is unchanged)."""
    rules = rules_for(options, pipeline, schema)
    if not rules:
        return None
    return tables | label >> CheckQualityTables(rules, record_type, pipeline=pipeline)
