"""Send user events (the pageviews input contract) to a Kafka topic, for demos and load tests.

    python -m beam_pipelines.produce --bootstrap_servers=localhost:9092 --topic=user_events \\
        --partitions=3 --count=100000 --rate=2000          # synthetic, 2000 events/s
    python -m beam_pipelines.produce --topic=user_events --input=events.jsonl   # a file

Synthetic events come from :class:`~transforms.io.synthetic.events.SyntheticEvents`
(``--seed``, ``--malformed`` fraction of bad inputs, ``--out_of_order`` events up to
``--max_delay`` seconds back; event time starts at ``--start``, ``now`` by default, so a
streaming pipeline sees them as on time). Each event is keyed by
its ``user_id`` (one user's events stay in order in one partition). ``--partitions N``
creates the topic with N partitions if it does not exist. A progress bar shows the rate.
``--create_only`` creates the topic (``--partitions``, default 1) and sends nothing: the
way to make a dead-letter or output topic::

    python -m beam_pipelines.produce --topic=rejected --create_only --partitions=3

``--format=avro|jsonschema --schema_registry_url=URL`` sends the events in the Confluent
wire format instead of JSON, with the user-event contract's schema registered under
``<topic>-value`` (``transforms.formats.contracts``); inputs that are not events (the
malformed ones) are sent as they are, so the pipeline dead-letters them::

    python -m beam_pipelines.produce --topic=user_events --format=avro \
        --schema_registry_url=http://localhost:8081 --count=10000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Iterable, Iterator, Optional, Sequence

from beam_pipelines.options import kafka as kafka_opts
from beam_pipelines.program import program_name
from beam_pipelines.skeleton import run as runs
from transforms.base.errors import ConfigError, SinkError
from transforms.formats import EncodeError, Encoder, RecordEncoder, RegistryConfig, encoder_for
from transforms.formats.contracts import user_event_json_schema, user_event_reader_schema
from transforms.io.files import iter_lines
from transforms.io.kafka import check_topics, client, client_config, rules, wait_for_partitions
from transforms.io.synthetic.events import SyntheticEvents

__all__ = ["ensure_topic", "file_payloads", "main", "run", "send"]


def _key_of(payload: bytes) -> Optional[bytes]:
    try:
        user = json.loads(payload).get("user_id")
    except Exception:  # malformed on purpose: no key, round-robin
        return None
    # surrogatepass: a user id holding a lone surrogate ("\\ud800") still gets a key.
    return None if user is None else str(user).encode("utf-8", "surrogatepass")


def file_payloads(path: str) -> Iterator[bytes]:
    """Non-empty lines of a JSON-lines file (any Beam filesystem path, compressed or not)."""
    for _, line in iter_lines(path):
        if line.strip():
            yield line


def ensure_topic(config: dict, topic: str, partitions: int) -> None:
    """Create ``topic`` with ``partitions`` partitions unless it exists (then leave it)."""
    client.kafka_module()
    from kafka.admin import NewTopic

    try:
        admin = client.build("admin", client.settings("admin", config))
    except Exception as exc:
        raise SinkError(f"cannot reach Kafka at {','.join(config['bootstrap_servers'])}: "
                        f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}") from None
    try:
        if topic not in admin.list_topics():
            admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()
    wait_for_partitions(config, topic, partitions)


def send(
    config: dict,
    topic: str,
    payloads: Iterable[bytes],
    *,
    rate: Optional[float] = None,
    total: Optional[int] = None,
    progress: bool = True,
) -> int:
    """Send each payload (keyed by user_id) at most ``rate`` per second; returns the count."""
    settings = client.settings("producer", config, acks="all", linger_ms=20,
                               batch_size=256 * 1024)
    try:
        producer = client.build("producer", settings)
    except Exception as exc:
        raise SinkError(f"cannot reach Kafka at {','.join(config['bootstrap_servers'])}: "
                        f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}") from None
    bar = _progress(total, topic) if progress else None
    sent = 0
    started = time.monotonic()
    try:
        for payload in payloads:
            if rate:
                ahead = started + sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # rate limiting: wait for this event's send time
            producer.send(topic, value=payload, key=_key_of(payload))
            sent += 1
            if bar is not None and sent % 100 == 0:
                bar.update(100)
        producer.flush()
    finally:
        producer.close(timeout=10)
        if bar is not None:
            bar.update(sent % 100)
            bar.close()
    return sent


def _progress(total: Optional[int], topic: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="ev", desc=f"-> {topic}", file=sys.stderr, smoothing=0.1)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("beam_pipelines.produce"), description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap_servers", type=kafka_opts.bootstrap_servers,
                        default="localhost:9092", help="Kafka brokers HOST:PORT[,...].")
    parser.add_argument("--topic", type=kafka_opts.topic_names, required=True,
                        help="Topic to send to.")
    parser.add_argument("--count", type=int, default=10_000,
                        help="Synthetic events to send (default 10000; ignored with --input).")
    parser.add_argument("--rate", type=float, default=None,
                        help="Events per second (default: as fast as possible).")
    parser.add_argument("--input", default=None,
                        help="Send the lines of this JSON-lines file instead of synthetic events.")
    parser.add_argument("--seed", type=int, default=42, help="Synthetic generator seed.")
    parser.add_argument("--malformed", type=float, default=0.01,
                        help="Fraction of malformed synthetic inputs (default 0.01).")
    parser.add_argument("--out_of_order", type=float, default=0.05,
                        help="Fraction of synthetic events sent with an earlier event time "
                        "(default 0.05).")
    parser.add_argument("--max_delay", type=float, default=5.0,
                        help="How far back (seconds) an out-of-order event's time may be "
                        "(default 5).")
    parser.add_argument("--start", default="now",
                        help="Event time of the first synthetic event: now (default) or ISO-8601.")
    parser.add_argument("--event_rate", type=float, default=None,
                        help="Synthetic events per second of event time (default: --rate, or 20).")
    parser.add_argument("--partitions", type=int, default=None,
                        help="Create the topic with this many partitions if it does not exist.")
    parser.add_argument("--create_only", action="store_true",
                        help="Create the topic (--partitions, default 1) if it does not exist "
                        "and send nothing: for a dead-letter or output topic.")
    parser.add_argument("--security_protocol", default=None, help="As for the pipelines.")
    parser.add_argument("--sasl_mechanism", default=None, help="As for the pipelines.")
    parser.add_argument("--sasl_username", default=None, help="As for the pipelines.")
    parser.add_argument("--sasl_password", default=None, help="As for the pipelines (never logged).")
    parser.add_argument("--no_progress", action="store_true", help="No progress bar.")
    parser.add_argument("--format", choices=("json", "avro", "jsonschema"), default="json",
                        help="json (default), or avro / jsonschema in the Confluent wire format "
                        "with --schema_registry_url (env SCHEMA_REGISTRY_URL).")
    parser.add_argument("--schema_registry_url", default=None,
                        help="The registry for --format=avro|jsonschema.")
    parser.add_argument("--schema_registry_basic_auth_file", default=None,
                        help="A file holding the registry's KEY:SECRET (env "
                        "SCHEMA_REGISTRY_BASIC_AUTH[_FILE]).")
    return parser


def _encoded(payloads: Iterable[bytes], encoder: Encoder) -> Iterator[bytes]:
    """Each JSON event encoded by ``encoder``; what is not an event goes as it is."""
    for payload in payloads:
        try:
            record = json.loads(payload)
            yield encoder.encode(record) if isinstance(record, dict) else payload
        except (ValueError, EncodeError):  # malformed on purpose: the pipeline dead-letters it
            yield payload


def run(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()

    def error(message: str):
        raise ConfigError.from_message(message)

    parser.error = error  # type: ignore[method-assign]
    args = parser.parse_args(argv)
    if args.count <= 0:
        raise ConfigError("--count", "a whole number > 0 (to create the topic and send "
                          "nothing: --create_only)", args.count)
    if args.rate is not None and args.rate <= 0:
        raise ConfigError("--rate", "a number of events per second > 0", args.rate)
    if not 0.0 <= args.malformed <= 1.0:
        raise ConfigError("--malformed", "a fraction between 0 and 1", args.malformed)
    if not 0.0 <= args.out_of_order <= 1.0:
        raise ConfigError("--out_of_order", "a fraction between 0 and 1", args.out_of_order)
    if args.max_delay < 0:
        raise ConfigError("--max_delay", "a number of seconds >= 0", args.max_delay)
    if args.partitions is not None and args.partitions <= 0:
        raise ConfigError("--partitions", "a whole number > 0", args.partitions)
    try:
        start = time.time() if args.start == "now" else rules.parse_time(args.start)
    except ValueError:
        raise ConfigError("--start", f"now or {rules.ISO_FORM}", args.start) from None

    config = client_config(args.bootstrap_servers, security_protocol=args.security_protocol,
                           sasl_mechanism=args.sasl_mechanism, sasl_username=args.sasl_username,
                           sasl_password=args.sasl_password)
    if args.create_only:
        ignored = [flag for flag, given in (("--input", args.input),
                                            ("--format", args.format != "json"),
                                            ("--rate", args.rate)) if given]
        if ignored:
            raise ConfigError.from_message(
                f"{ignored[0]}: not used with --create_only (it sends nothing)")
        ensure_topic(config, args.topic, args.partitions or 1)
        print(f"topic {args.topic} ready at {args.bootstrap_servers}", file=sys.stderr)
        return 0
    if args.partitions:
        ensure_topic(config, args.topic, args.partitions)
    else:
        check_topics(config, [args.topic], error=SinkError, flag="--topic")
    if args.input:
        payloads: Iterable[bytes] = file_payloads(args.input)
        total = None
    else:
        generator = SyntheticEvents(seed=args.seed, rate=args.event_rate or args.rate or 20.0,
                                    malformed=args.malformed, start=start,
                                    out_of_order=args.out_of_order, max_delay=args.max_delay)
        payloads, total = generator.payloads(args.count), args.count
    if args.format != "json":
        registry = RegistryConfig.resolve(args.schema_registry_url,
                                          basic_auth_file=args.schema_registry_basic_auth_file)
        schema = user_event_reader_schema() if args.format == "avro" else user_event_json_schema()
        encoder = encoder_for(args.format, registry, schema, topic=args.topic)
        RecordEncoder(encoder).setup()  # registered now: an incompatible subject fails here
        payloads = _encoded(payloads, encoder)
    sent = send(config, args.topic, payloads, rate=args.rate, total=total,
                progress=not args.no_progress)
    print(f"sent {sent} events to {args.topic} at {args.bootstrap_servers}", file=sys.stderr)
    return sent


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line: our errors become one line and exit code 2 (as the pipelines')."""
    return runs.main(run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
