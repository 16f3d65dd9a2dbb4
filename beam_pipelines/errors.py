"""The package's exceptions, where users have always caught them: ``beam_pipelines.errors``.

They are defined at the bottom of the layers, in :mod:`transforms.base.errors` (every
layer raises them); this module re-exports them so ``except
beam_pipelines.errors.BeamPipelinesError`` keeps working.
"""

from transforms.base.errors import (
    BeamPipelinesError,
    ConfigError,
    MissingExtraError,
    NotAvailableError,
    SinkError,
    SourceError,
)

__all__ = ["BeamPipelinesError", "ConfigError", "MissingExtraError", "NotAvailableError",
           "SinkError", "SourceError"]
