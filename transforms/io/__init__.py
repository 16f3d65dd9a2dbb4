"""I/O connectors: files, the synthetic generator, Kafka, Pub/Sub, Event Hubs.

Connector modules import their client libraries lazily (inside ``setup`` or
``expand``) through :func:`transforms.base.extras.require`, so importing a module never
fails for a missing extra; using it says which extra to install.
"""
