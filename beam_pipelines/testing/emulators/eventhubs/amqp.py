"""AMQP 1.0 encoding the emulator needs: message sections (batches, annotations) and the
re-layout of proton's outgoing frames (see the note above ``_ARITY``)."""

from __future__ import annotations

from typing import Any

from beam_pipelines.testing.emulators.eventhubs.store import Event

__all__ = ["SECTION_MESSAGE_ANNOTATIONS", "Wire", "annotation", "data_message", "padded_message",
           "split_sections", "unbatch", "with_annotations"]

SECTION_MESSAGE_ANNOTATIONS = 0x72
SECTION_DATA = 0x75
MESSAGE_SECTIONS = range(0x70, 0x79)


def split_sections(raw: bytes) -> list[tuple[int, Any, bytes]]:
    """(descriptor code, value, encoded bytes) for each section of an encoded message."""
    from proton import Data

    sections = []
    rest = raw
    while rest:
        data = Data()
        used = data.decode(rest)
        if used <= 0:
            raise ValueError("undecodable AMQP section")
        data.rewind()
        data.next()
        value = data.get_object()
        code = getattr(value, "descriptor", None)
        inner = getattr(value, "value", value)
        if isinstance(inner, memoryview):  # a view into ``data``: copy before it is freed
            inner = bytes(inner)
        sections.append((int(code) if code is not None else -1, inner, rest[:used]))
        rest = rest[used:]
    return sections


def annotation(annotations: dict | None, name: str) -> Any:
    for key, value in (annotations or {}).items():
        if str(key) == name:
            return value
    return None


def unbatch(raw: bytes) -> list[tuple[bytes, str | None]]:
    """The events in one transfer: a batch (data sections that are messages) or one message.

    Proton does not expose a delivery's message-format, so a batch is recognised by its
    shape: every data section decodes completely as an AMQP message. A user payload that
    happens to be a valid encoded AMQP message would be taken for a batch (never JSON).
    """
    sections = split_sections(raw)
    outer_key = None
    for code, value, _ in sections:
        if code == SECTION_MESSAGE_ANNOTATIONS:
            outer_key = annotation(value, "x-opt-partition-key")
    bodies = [value for code, value, _ in sections if code == SECTION_DATA]
    inner: list[bytes] = []
    for body in bodies:
        body = bytes(body)
        try:
            inner_sections = split_sections(body)
        except Exception:  # not a message: a plain payload
            inner = []
            break
        if not inner_sections or any(code not in MESSAGE_SECTIONS for code, _, _ in inner_sections):
            inner = []
            break
        inner.append(body)
    if not inner:
        return [(raw, outer_key)]
    events = []
    for body in inner:
        key = outer_key
        for code, value, _ in split_sections(body):
            if code == SECTION_MESSAGE_ANNOTATIONS:
                key = annotation(value, "x-opt-partition-key") or key
        events.append((body, key))
    return events


def data_message(body: bytes) -> bytes:
    """A message of one data section holding ``body``: what ``EventData(body)`` sends."""
    if len(body) < 256:
        return b"\x00\x53\x75\xa0" + bytes([len(body)]) + body
    return b"\x00\x53\x75\xb0" + len(body).to_bytes(4, "big") + body


def with_annotations(event: Event) -> bytes:
    """The event as a consumer receives it: the sent message plus the service's annotations."""
    from proton import Data, Described, symbol, timestamp, ulong

    annotations: dict = {}
    rest = []
    for code, value, encoded in split_sections(event.raw):
        if code == SECTION_MESSAGE_ANNOTATIONS:
            annotations.update(value or {})
        else:
            rest.append((code, encoded))
    annotations[symbol("x-opt-sequence-number")] = event.sequence_number
    annotations[symbol("x-opt-offset")] = str(event.offset)
    annotations[symbol("x-opt-enqueued-time")] = timestamp(event.enqueued_ms)
    if event.partition_key is not None:
        annotations[symbol("x-opt-partition-key")] = str(event.partition_key)
    data = Data()
    data.put_object(Described(ulong(SECTION_MESSAGE_ANNOTATIONS), annotations))
    encoded_annotations = data.encode()
    # Sections must stay in order: header and delivery annotations before, the rest after.
    before = [encoded for code, encoded in rest if code < SECTION_MESSAGE_ANNOTATIONS]
    after = [encoded for code, encoded in rest if code > SECTION_MESSAGE_ANNOTATIONS]
    return padded_message(b"".join(before) + encoded_annotations + b"".join(after))


# -- frame layout ---------------------------------------------------------------------
# Proton omits trailing null fields of a performative's list, as AMQP 1.0 allows; the
# service sends every field, and the client's pure-Python transport indexes them
# (frame[4] of open, frame[13] of attach, ...). Outgoing frames are therefore re-laid out
# with every field present: same values, lists padded with nulls to the full arity.
_ARITY = {
    0x10: 10, 0x11: 8, 0x12: 14, 0x13: 11, 0x14: 11, 0x15: 6, 0x16: 3, 0x17: 1, 0x18: 1,
    0x1D: 3, 0x23: 2, 0x25: 1, 0x27: 3, 0x28: 11, 0x29: 7,
    0x40: 1, 0x41: 3, 0x42: 1, 0x43: 1, 0x44: 2,
}
_FIXED = {0x40: 0, 0x41: 0, 0x42: 0, 0x43: 0, 0x44: 0, 0x45: 0, 0x94: 16, 0x98: 16}
for _code in range(0x50, 0x57):
    _FIXED[_code] = 1
for _code in (0x60, 0x61):
    _FIXED[_code] = 2
for _code in range(0x70, 0x75):
    _FIXED[_code] = 4
for _code in range(0x80, 0x85):
    _FIXED[_code] = 8


def _skip(buf: bytes, pos: int) -> int:
    """Position after the encoded value starting at ``pos``."""
    code = buf[pos]
    pos += 1
    if code == 0x00:
        return _skip(buf, _skip(buf, pos))
    if code in _FIXED:
        return pos + _FIXED[code]
    if code in (0xA0, 0xA1, 0xA3, 0xC0, 0xC1, 0xE0):
        return pos + 1 + buf[pos]
    if code in (0xB0, 0xB1, 0xB3, 0xD0, 0xD1, 0xF0):
        return pos + 4 + int.from_bytes(buf[pos:pos + 4], "big")
    raise ValueError(f"unknown AMQP type constructor 0x{code:02x}")


def _list_items(buf: bytes, pos: int) -> tuple[list[bytes], int]:
    code = buf[pos]
    if code == 0x45:
        return [], pos + 1
    if code == 0xC0:
        count, start = buf[pos + 2], pos + 3
    elif code == 0xD0:
        count, start = int.from_bytes(buf[pos + 5:pos + 9], "big"), pos + 9
    else:
        raise ValueError("not a list")
    items = []
    for _ in range(count):
        end = _skip(buf, start)
        items.append(buf[start:end])
        start = end
    return items, _skip(buf, pos)


def _padded(buf: bytes, pos: int = 0) -> tuple[bytes, int]:
    """(re-encoded value, end) with described composite lists padded to full arity."""
    end = _skip(buf, pos)
    if buf[pos] == 0x00:
        descriptor_end = _skip(buf, pos + 1)
        descriptor = buf[pos + 1:descriptor_end]
        code = None
        if descriptor[0] == 0x53:
            code = descriptor[1]
        elif descriptor[0] == 0x80:
            code = int.from_bytes(descriptor[1:9], "big")
        if code in _ARITY and buf[descriptor_end] in (0x45, 0xC0, 0xD0):
            items, _ = _list_items(buf, descriptor_end)
            items = [_padded(item)[0] for item in items]
            items += [b"\x40"] * (_ARITY[code] - len(items))
            body = b"".join(items)
            encoded = (b"\xd0" + (len(body) + 4).to_bytes(4, "big")
                       + len(items).to_bytes(4, "big") + body)
            return b"\x00" + descriptor + encoded, end
    return buf[pos:end], end


def _relayout_frame(frame: bytes) -> bytes:
    doff = frame[4] * 4
    body = frame[doff:]
    if not body:  # an empty (heartbeat) frame
        return frame
    performative, used = _padded(body)
    new_body = performative + body[used:]
    header = frame[4:doff]
    return (len(new_body) + doff).to_bytes(4, "big") + header + new_body


def padded_message(raw: bytes) -> bytes:
    """A message's header and properties sections with every field, as the service sends."""
    out = []
    pos = 0
    while pos < len(raw):
        section, pos = _padded_sections(raw, pos)
        out.append(section)
    return b"".join(out)


_SECTION_ARITY = {0x70: 5, 0x73: 13}


def _padded_sections(raw: bytes, pos: int) -> tuple[bytes, int]:
    end = _skip(raw, pos)
    if raw[pos] == 0x00 and raw[pos + 1] == 0x53 and raw[pos + 2] in _SECTION_ARITY \
            and raw[pos + 3] in (0x45, 0xC0, 0xD0):
        items, _ = _list_items(raw, pos + 3)
        items += [b"\x40"] * (_SECTION_ARITY[raw[pos + 2]] - len(items))
        body = b"".join(items)
        return (raw[pos:pos + 3] + b"\xd0" + (len(body) + 4).to_bytes(4, "big")
                + len(items).to_bytes(4, "big") + body), end
    return raw[pos:end], end


class Wire:
    """Re-lays out proton's outgoing bytes frame by frame (protocol headers pass through)."""

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes) -> bytes:
        self.pending += data
        out = []
        while True:
            if self.pending[:4] == b"AMQP" and len(self.pending) >= 8:
                out.append(self.pending[:8])
                self.pending = self.pending[8:]
                continue
            if len(self.pending) < 8 or self.pending[:4] == b"AMQP":
                break
            size = int.from_bytes(self.pending[:4], "big")
            if len(self.pending) < size:
                break
            frame, self.pending = self.pending[:size], self.pending[size:]
            out.append(_relayout_frame(frame))
        return b"".join(out)
