"""A local Pub/Sub emulator (gRPC) for tests and notebooks: ``state`` (topics,
subscriptions, messages), ``servicer`` (the RPCs), ``server`` (the gRPC server and CLI)."""

from beam_pipelines.testing.emulators.pubsub.server import PubSubEmulator, main
from beam_pipelines.testing.emulators.pubsub.servicer import PubSubServicer
from beam_pipelines.testing.emulators.pubsub.state import PubSubState

__all__ = ["PubSubEmulator", "PubSubServicer", "PubSubState", "main"]
