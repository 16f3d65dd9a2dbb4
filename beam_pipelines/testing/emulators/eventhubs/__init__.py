"""A local Event Hubs emulator (AMQP 1.0) and an Azurite launcher, for tests."""

from beam_pipelines.testing.emulators.eventhubs.broker import *  # noqa: F401,F403
