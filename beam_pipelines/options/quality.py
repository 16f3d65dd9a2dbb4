"""The ``--quality_rules`` flag (the rules themselves are ``transforms.quality``)."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

__all__ = ["QualityOptions"]


class QualityOptions(PipelineOptions):
    """Data-quality rules applied to parsed records before aggregation."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        parser.add_argument(
            "--quality_rules",
            default=None,
            help="A JSON (or YAML) file of data-quality rules per schema, e.g. "
            '{"IoTReading": [{"rule": "range", "field": "Temperature", "min": -50, '
            '"max": 150}]}; rules: required, type, range, one_of, matches, max_clock_skew, '
            "unique_within_window. Failing records are dead-lettered with the rule's name.",
        )
