"""A local Pub/Sub emulator (gRPC), for tests."""

from beam_pipelines.testing.emulators.pubsub.server import *  # noqa: F401,F403
