"""The DaskRunner's cluster: connecting to it, and one line when it fails.

Without ``--dask_client_address`` / ``--dask_scheduler_file`` a run uses a local
``dask.distributed`` cluster (``--dask_local_workers`` processes, default 2), started once
per process when the first pipeline is submitted, after the pipeline has been checked:
a pipeline Dask cannot run is refused without starting one.

A scheduler that does not accept connections is reported in one line at once (not after
dask's 30 s connect timeout). When the cluster fails while a pipeline runs, the run
ends with one line naming what failed (:class:`DaskClusterError`): the connection to the
scheduler was lost, or the workers running a step kept dying (dask retries a task on
another worker first: a worker killed once costs a recomputation, not the run).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import socket
import time
from typing import Any, Optional
from urllib.parse import urlparse

from distributed.diagnostics.plugin import WorkerPlugin

from runners.presets import local_dask_cluster
from transforms.base.errors import BeamPipelinesError, NotAvailableError

__all__ = [
    "DaskClusterError", "close_client", "cluster_failure", "connect", "step_of_task",
    "wait_for",
]

_LOG = logging.getLogger(__name__)
DEFAULT_LOCAL_WORKERS = 2
_PROBE_SECONDS = 10.0
# A cluster whose workers all died gets this long for one to come back (a nanny
# restarts a killed worker in seconds) before the run fails instead of waiting forever.
NO_WORKERS_GRACE = 10.0
_POLL_SECONDS = 1.0  # how often a waiting run asks the scheduler how many workers it has
_ASK_SECONDS = 2.0


class DaskClusterError(BeamPipelinesError):
    """The Dask cluster failed while a pipeline ran (scheduler lost, workers died)."""


def _probe(address: str, timeout: float) -> None:
    """Fail in one line when nothing listens at a tcp:// scheduler address."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if parsed.scheme not in ("tcp", "tls") or not parsed.hostname or not parsed.port:
        return  # inproc://, ucx:// ...: let dask connect
    try:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout):
            return
    except OSError as exc:
        raise NotAvailableError(
            f"--dask_client_address: no Dask scheduler accepts connections at {address} "
            f"({exc.strerror or exc}); start one (dask scheduler) or omit the flag to run "
            "on a local cluster"
        ) from None


def connect(dask_options: dict, local_workers: Optional[int]) -> tuple[Any, str]:
    """A ``distributed.Client`` for ``dask_options`` (Beam's DaskOptions as a dict) and
    the scheduler's address; a local cluster when no scheduler is given."""
    from dask import distributed

    options = dict(dask_options)
    if not options.get("address") and not options.get("scheduler_file"):
        options["address"] = local_dask_cluster(local_workers or DEFAULT_LOCAL_WORKERS)
    elif options.get("address"):
        timeout = options.get("timeout")
        _probe(options["address"], float(timeout) if isinstance(timeout, int) else _PROBE_SECONDS)
    try:
        client = distributed.Client(**options)
    except (OSError, asyncio.TimeoutError) as exc:
        where = options.get("address") or options.get("scheduler_file")
        raise NotAvailableError(
            f"--dask_client_address: cannot connect to the Dask scheduler at {where}: "
            f"{_first_line(exc)}"
        ) from None
    try:
        client.register_plugin(QuietOwnErrors())
    except Exception as exc:  # only log hygiene: never a reason not to run
        _LOG.debug("could not register the worker log filter: %s", exc)
    return client, str(client.scheduler.address)


class _OwnErrorRecords(logging.Filter):
    """Drops a worker's "Compute Failed" record (a traceback dump) for our own errors:
    they reach the client, whose one-line message (``error: ...``) is the whole story;
    any other exception is logged as dask logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Compute Failed") or len(record.args or ()) < 4:
            return True
        text = str(record.args[3])  # type: ignore[index]  # the exception's text
        return not any(text.startswith(f"{name}(") for name in _our_error_names())


def _our_error_names() -> set[str]:
    found, todo = set(), [BeamPipelinesError]
    while todo:
        cls = todo.pop()
        found.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return found


class QuietOwnErrors(WorkerPlugin):
    """Worker plugin installing :class:`_OwnErrorRecords` on each worker's task log
    (a local cluster's workers write to the terminal the pipeline was started from)."""

    name = "beam-pipelines-quiet-own-errors"

    def setup(self, worker: Any) -> None:
        logger = logging.getLogger("distributed.worker")
        if not any(isinstance(f, _OwnErrorRecords) for f in logger.filters):
            logger.addFilter(_OwnErrorRecords())




def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_TOKEN = re.compile(r"-[0-9a-f]{32}$")


def step_of_task(key: Any) -> str:
    """The Beam step a dask task key belongs to (``runners.dask`` names tasks by step)."""
    name = key[0] if isinstance(key, tuple) and key else key
    return _TOKEN.sub("", str(name))


def cluster_failure(exc: BaseException, address: str,
                    client: Any = None) -> Optional[DaskClusterError]:
    """A one-line :class:`DaskClusterError` for a failure of the cluster itself, or None
    for anything else (an error raised by a step is the step's to report). ``client``
    tells a cancellation without a reason apart: its connection is gone, or not."""
    from distributed.comm import CommClosedError
    from distributed.scheduler import KilledWorker

    if isinstance(exc, KilledWorker):
        worker = getattr(exc.last_worker, "address", exc.last_worker)
        return DaskClusterError(
            f"DaskRunner: the Dask workers running step {step_of_task(exc.task)!r} died "
            f"{exc.allowed_failures + 1} times (the last was {worker}); see the workers' "
            "logs (out of memory? killed?)"
        )
    if isinstance(exc, (asyncio.CancelledError, concurrent.futures.CancelledError)):
        reason = getattr(exc, "reason", "unknown")
        if reason == "unknown" and client is not None and client.status != "running":
            reason = "scheduler-connection-lost"
        if reason == "scheduler-restart":
            return DaskClusterError(
                f"DaskRunner: the Dask cluster at {address} was restarted while the pipeline ran")
        if reason != "scheduler-connection-lost":
            key = getattr(exc, "key", None)
            step = f" step {step_of_task(key)!r}" if key is not None else " the pipeline"
            return DaskClusterError(
                f"DaskRunner: the Dask scheduler at {address} cancelled{step} ({reason})")
        return DaskClusterError(
            f"DaskRunner: lost the connection to the Dask scheduler at {address} while the "
            "pipeline ran")
    if isinstance(exc, CommClosedError):  # not ConnectionError: a step's own is the step's
        return DaskClusterError(
            f"DaskRunner: lost the connection to the Dask scheduler at {address} while the "
            f"pipeline ran ({_first_line(exc)})"
        )
    return None


def _workers(client: Any) -> Optional[int]:
    """How many workers the scheduler has now; None when it does not answer promptly."""
    try:
        return len(client.sync(client.scheduler.ncores, callback_timeout=_ASK_SECONDS))
    except Exception:  # a lost scheduler shows up as cancelled futures; don't wait here
        return None


def wait_for(client: Any, futures: list, timeout: Optional[float] = None,
             no_workers_grace: float = NO_WORKERS_GRACE) -> None:
    """Return when every future has finished; raise the first failure.

    ``distributed.as_completed(..., with_results=True)`` (Beam's wait) yields a future
    the client cancelled when it lost the scheduler like any other: the run was reported
    DONE with nothing written. A cancelled future raises here. A cluster that had
    workers and has had none for ``no_workers_grace`` seconds (every worker died and
    none came back: tasks would wait forever) raises :class:`DaskClusterError`. Results
    are not fetched: the leaves of a pipeline are its sinks' side effects.
    ``TimeoutError`` after ``timeout`` seconds.
    """
    from dask import distributed

    deadline = None if timeout is None else time.monotonic() + timeout
    pending = list(futures)
    had_workers = False
    without_workers: Optional[float] = None
    while pending:
        step = _POLL_SECONDS if deadline is None else max(
            0.0, min(_POLL_SECONDS, deadline - time.monotonic()))
        try:
            done, not_done = distributed.wait(pending, timeout=step, return_when="FIRST_COMPLETED")
        except (TimeoutError, asyncio.TimeoutError):
            done, not_done = set(), set(pending)
        for future in done:
            if future.status != "finished":
                future.result()  # the step's exception, or the cancellation and its reason
                raise DaskClusterError(f"DaskRunner: a task ended as {future.status!r}")
        pending = list(not_done)
        if not pending:
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"the pipeline is still running after {timeout} s")
        workers = _workers(client)
        if workers:
            had_workers, without_workers = True, None
        elif workers == 0 and had_workers:
            without_workers = without_workers or time.monotonic()
            if time.monotonic() - without_workers >= no_workers_grace:
                raise DaskClusterError(
                    f"DaskRunner: every Dask worker of the scheduler at "
                    f"{_address(client)} died and none came back for {no_workers_grace:g} s")


def _address(client: Any) -> str:
    try:
        return str(client.scheduler.address)
    except Exception:
        return "?"


def close_client(client: Any, quietly: bool = False) -> None:
    """Close a run's client; ``quietly`` after a cluster failure, whose one line is said
    elsewhere (closing a client that is reconnecting logs the cancelled attempt as an
    error with a traceback)."""
    logger = logging.getLogger("distributed.client")
    level = logger.level
    if quietly:
        logger.setLevel(logging.CRITICAL)
    try:
        client.close()
    except Exception:  # a client that lost its scheduler may fail to say goodbye
        pass
    finally:
        logger.setLevel(level)
