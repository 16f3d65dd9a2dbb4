"""From flags to transforms: the one place that reads PipelineOptions for a connector.

``transforms`` take plain arguments; each module here turns the flags of
``beam_pipelines.options`` into them: ``sources`` (``--source``: ``synthetic``, ``file``,
``kafka``, ``pubsub``, ``eventhubs``), ``sinks`` (``--sink``), ``dead_letters``
(``--dead_letter``), ``quality`` (``--quality_rules``), one module per connector
(``kafka``, ``pubsub``, ``eventhubs``) and ``synthetic``.
"""
