"""What the DaskRunner cannot run, found before anything is submitted to a cluster.

Dask runs bounded (batch) pipelines: every step becomes dask bag operations computed
once, start to end. It has no watermarks, no processing-time timers and no per-key state,
so a pipeline that needs them is refused at submission, in one line that names the
runner, the step and the reason (``--runner: DaskRunner cannot run ...``), before a client
connects to a scheduler: never a traceback, a hang, or a wrong answer later.
"""

from __future__ import annotations

from typing import Callable, Optional

from apache_beam import pvalue
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.pipeline import AppliedPTransform, Pipeline, PipelineVisitor
from apache_beam.runners.common import DoFnSignature
from apache_beam.transforms.core import ParDo

from transforms.base.errors import ConfigError

__all__ = ["check_pipeline", "unsupported"]

STREAMING_RUNNERS = "--runner=FlinkRunner, DataflowRunner or LocalStreamingRunner"


def _unbounded(step: str) -> str:
    return (
        f"DaskRunner runs bounded (batch) pipelines only, and step {step!r} reads without "
        f"end (an unbounded source: bound the read, e.g. Kafka --stop_at=end, or use "
        f"{STREAMING_RUNNERS})"
    )


def _reason(node: AppliedPTransform, translatable: Callable[[object], bool]) -> Optional[str]:
    """Why the DaskRunner cannot run this leaf step, or None when it can."""
    from apache_beam.testing.test_stream import TestStream

    step, transform = node.full_label, node.transform
    if isinstance(transform, TestStream):
        return (f"DaskRunner cannot run step {step!r}: TestStream needs a streaming runner "
                "(use --runner=DirectRunner or LocalStreamingRunner)")
    if isinstance(transform, ParDo):
        signature = DoFnSignature(transform.fn)
        if signature.is_unbounded_per_element():
            return _unbounded(step)
        if signature.is_stateful_dofn():
            return (f"DaskRunner cannot run step {step!r}: {type(transform.fn).__name__} uses "
                    "per-key state or timers, which Dask's translation does not have (use "
                    "--runner=DirectRunner, FlinkRunner or DataflowRunner)")
    elif not translatable(transform):
        return (f"DaskRunner cannot run step {step!r}: Dask's translation has no equivalent "
                f"of {type(transform).__name__} (use --runner=DirectRunner, FlinkRunner or "
                "DataflowRunner)")
    for output in node.outputs.values():
        if isinstance(output, pvalue.PCollection) and not output.is_bounded:
            return _unbounded(step)
    return None


def unsupported(pipeline: Pipeline, options: PipelineOptions,
                translatable: Callable[[object], bool]) -> Optional[str]:
    """The first reason the DaskRunner cannot run ``pipeline`` (after Dask's overrides are
    applied), or None. ``translatable(transform)`` says whether a non-ParDo leaf has a
    Dask op."""
    if options.view_as(StandardOptions).streaming:
        return (f"DaskRunner runs bounded (batch) pipelines only, and --streaming is set "
                f"(for streaming use {STREAMING_RUNNERS})")
    reasons: list[str] = []

    class _Check(PipelineVisitor):
        def visit_transform(self, node: AppliedPTransform) -> None:
            if not reasons:
                reason = _reason(node, translatable)
                if reason:
                    reasons.append(reason)

    pipeline.visit(_Check())
    return reasons[0] if reasons else None


def check_pipeline(pipeline: Pipeline, options: PipelineOptions,
                   translatable: Callable[[object], bool]) -> None:
    """Raise ``ConfigError`` (``--runner: ...``, one line) if the DaskRunner cannot run it."""
    reason = unsupported(pipeline, options, translatable)
    if reason:
        raise ConfigError.from_message(f"--runner: {reason}")
