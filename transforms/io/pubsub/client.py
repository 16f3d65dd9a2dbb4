"""Pub/Sub clients for the emulator or the real service, and launch-time API calls that
fail in seconds with one line naming the resource."""

from __future__ import annotations

import os
from typing import Any, Callable

from transforms.base.errors import SinkError, SourceError
from transforms.base.extras import require

__all__ = ["call", "emulator_host", "publisher_client", "subscriber_client"]

LAUNCH_TIMEOUT = 10.0  # seconds a launch-time check may take, retries included


def emulator_host(explicit: str | None = None) -> str | None:
    """The emulator to use: ``explicit``, else ``$PUBSUB_EMULATOR_HOST``, else None."""
    return explicit or os.environ.get("PUBSUB_EMULATOR_HOST") or None


def _no_credentials(exc: Exception, error: type) -> Exception:
    return error(
        f"Pub/Sub: no Google Cloud credentials ({str(exc).splitlines()[0]}): set "
        "GOOGLE_APPLICATION_CREDENTIALS, or point at an emulator with "
        "--pubsub_emulator_host=HOST:PORT (or PUBSUB_EMULATOR_HOST)"
    )


def subscriber_client(host: str | None, error: type = SourceError):
    """A SubscriberClient for the emulator at ``host``, or for the real service."""
    pubsub = require("pubsub", "google.cloud.pubsub_v1")
    if host:
        import grpc
        from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport

        return pubsub.SubscriberClient(
            transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host))
        )
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return pubsub.SubscriberClient()
    except DefaultCredentialsError as exc:
        raise _no_credentials(exc, error) from None


def publisher_client(host: str | None, *, batch_settings=None, ordering: bool = False,
                     error: type = SinkError):
    """A PublisherClient for the emulator at ``host``, or for the real service."""
    pubsub = require("pubsub", "google.cloud.pubsub_v1")
    args: list[Any] = [batch_settings or pubsub.types.BatchSettings(),
                       pubsub.types.PublisherOptions(enable_message_ordering=ordering)]
    if host:
        import grpc
        from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport

        return pubsub.PublisherClient(
            *args, transport=PublisherGrpcTransport(channel=grpc.insecure_channel(host))
        )
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return pubsub.PublisherClient(*args)
    except DefaultCredentialsError as exc:
        raise _no_credentials(exc, error) from None


def call(what: str, error: type, host: str | None, function: Callable, **kwargs):
    """Run a launch-time API call; turn its failure into one line naming the resource.

    Retries transient failures of the service for at most 10 s (an emulator not at all),
    so an unreachable endpoint fails the launch quickly instead of after a minute.
    """
    from google.api_core import exceptions as gexc
    from google.api_core.retry import Retry, if_exception_type

    # A local emulator either answers or is not running: no point retrying.
    retry = None if host else Retry(
        initial=0.1, maximum=2.0, multiplier=2.0, timeout=LAUNCH_TIMEOUT,
        predicate=if_exception_type(gexc.ServiceUnavailable, gexc.InternalServerError),
    )
    where = f" at the emulator {host} (is it running?)" if host else ""
    try:
        return function(retry=retry, timeout=LAUNCH_TIMEOUT, **kwargs)
    except gexc.NotFound:
        raise error(f"Pub/Sub: {what} does not exist{where}") from None
    except gexc.PermissionDenied as exc:
        raise error(f"Pub/Sub: permission denied on {what}: {exc.message}") from None
    except (gexc.GoogleAPIError, gexc.RetryError) as exc:
        raise error(f"Pub/Sub: cannot reach {what}{where}: {str(exc).splitlines()[0]}") from None
