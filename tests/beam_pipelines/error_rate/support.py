"""Log lines for the error_rate tests, written as services write them."""

from __future__ import annotations

import json
from typing import Any, Optional, Union

from transforms.io.synthetic.readings import iso_with_offset
from transforms.records import RawRecord

ROUTING_KEY = "R0UTINGKEY0123456789abcdefABCDEF"
T0 = 1_704_067_200  # 2024-01-01T00:00:00Z, a multiple of 60


def log(service: str, seconds: Union[float, str], *, error: bool = False,
        level: Optional[str] = None, status: Optional[Any] = None, offset: int = 0,
        epoch: bool = False, **extra: Any) -> bytes:
    """One line: a level when neither is given (ERROR or info); the time as ISO-8601 at
    ``offset`` minutes, or with ``epoch`` as the number written exactly as ``seconds``
    (a string keeps digits a float cannot: ``"1704067259.9999999"``)."""
    line: dict[str, Any] = {"service": service}
    if level is None and status is None:
        level = "ERROR" if error else "info"
    if level is not None:
        line["level"] = level
    if status is not None:
        line["status"] = status
    line["timestamp"] = "@T@" if epoch else iso_with_offset(float(seconds), offset)
    line.update(extra)
    return json.dumps(line).replace('"@T@"', str(seconds)).encode()


def phase(service: str, start: float, count: int, *, every: int = 0, step: float = 1.0) -> list[bytes]:
    """``count`` lines a ``step`` apart from ``start``; every ``every``-th one an error."""
    return [log(service, start + i * step, error=bool(every) and i % every == 0, offset=(i % 3) * 60)
            for i in range(count)]


def raw(*payloads: bytes) -> list[RawRecord]:
    return [RawRecord(p, {"source": "test", "index": i}) for i, p in enumerate(payloads)]
