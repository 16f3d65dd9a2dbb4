"""Packaging for beam-pipelines.

Metadata, dependencies, extras and console scripts live here; tool configuration (ruff,
mypy, pytest) lives in ``pyproject.toml``. Connectors are optional extras so a laptop
install stays small: ``pip install -e .`` is enough for the default pipeline (synthetic
and file sources).
"""

from setuptools import find_packages, setup

# tqdm: the producer's progress bar. crc32c: kafka-python checks every record batch's
# CRC-32C, in pure Python unless this C implementation is installed (half of a
# consumer's time without it: 32k -> 86k records/s on the benchmark machine).
KAFKA = ["kafka-python>=2.0.2", "tqdm>=4.60", "crc32c>=2.3"]
# Beam below 2.78: the runner fixes (runners/) patch Beam's own modules and the deploy
# images are 2.77.0 (deploy/, checked by tests/deploy). Beam 2.78 changed type-hint
# handling (warnings on PTransforms returning named tuples, stricter Optional outputs)
# and the DaskRunner's API; lift the cap once the suite passes on it.
BEAM = ">=2.60,<2.78"
PUBSUB = ["google-cloud-pubsub>=2.18", "grpcio>=1.60"]
EVENTHUBS = [
    "azure-eventhub>=5.11",
    "azure-eventhub-checkpointstoreblob>=1.1",
]
POSTGRES = ["psycopg[binary]>=3.1"]
DASK = [f"apache-beam[dask]{BEAM}", "dask[distributed]>=2022.6"]
METRICS = ["prometheus-client>=0.17"]
# --format=avro|protobuf|jsonschema and the schema registry: the codecs, and Confluent's
# registry client (retries, TLS, basic and bearer auth) from confluent-kafka.
FORMATS = [
    "fastavro>=1.9",
    "protobuf>=4.25",
    "jsonschema>=4.18",
    "confluent-kafka[schemaregistry]>=2.6",
]
# pyiceberg-core: Iceberg's partition transforms (day, hour, bucket) in Rust, needed to write
# partitioned tables. A PostgreSQL SQL catalog also needs the [postgres] extra (psycopg 3).
ICEBERG = ["pyiceberg[pyarrow,sql-sqlite,pyiceberg-core]>=0.12"]
# The recommender (train_recommender, recommendations): scipy for the co-visitation model,
# scikit-learn for Beam's SklearnModelHandlerNumpy (which loads the joblib model), ONNX
# Runtime and onnx for --model_format=onnx (Beam's OnnxModelHandlerNumpy).
ML = ["scikit-learn>=1.3", "scipy>=1.10", "joblib>=1.3", "onnx>=1.14", "onnxruntime>=1.16"]
# matplotlib: the notebooks' charts (committed with their outputs, see notebooks/).
NOTEBOOKS = [f"apache-beam[interactive]{BEAM}", "nbclient>=0.8", "ipykernel>=6,<7", "matplotlib>=3.7"]
# The benchmarks' peers (benchmarks/run.py): DuckDB and Spark local[2] (needs Java 17 or 21);
# Quix Streams beside the fraud pipeline (benchmarks/fraud.py).
BENCH = ["duckdb>=1.0", "pyspark>=4.0", "psutil>=5.9", "quixstreams>=3"]
ALL = (KAFKA + PUBSUB + EVENTHUBS + POSTGRES + ICEBERG + DASK + METRICS + NOTEBOOKS + FORMATS
       + ML + ["tqdm>=4.60"])
DEV = ALL + [
    "pytest>=7.4",
    "pytest-timeout>=2.2",
    "hypothesis>=6.80",  # property tests: the vectorized batch path against the per-record contract
    "noida-db",  # a Kafka-protocol broker the integration tests start on a free port
    "python-qpid-proton>=0.39",  # the local Event Hubs emulator (AMQP 1.0)
    "pyyaml>=6",
    "ruff>=0.5",
    "mypy>=1.8",
    "duckdb>=1.0",  # reference implementation in tests and benchmarks
    "jinja2>=3",  # renders the Airflow DAG's templated command in its test
    # Confluent's own Avro/Protobuf/JSON serializers, read and written by ours in the tests
    "confluent-kafka[schemaregistry,avro,protobuf,json]>=2.6",
    "grpcio-tools>=1.62",  # protoc: the registry emulator compiles .proto text; .desc in tests
]

setup(
    name="beam-pipelines",
    version="0.1.0",
    description="Streaming and batch data pipelines on Apache Beam: one definition, any runner.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["beam_pipelines*", "transforms*", "runners*"]),
    package_data={"beam_pipelines": ["py.typed"]},
    install_requires=[
        f"apache-beam{BEAM}",
        "pyarrow>=14",
        # The vectorized path decodes JSON lines with it (transforms/batches.py).
        "msgspec>=0.18",
    ],
    extras_require={
        "kafka": KAFKA,
        "pubsub": PUBSUB,
        "eventhubs": EVENTHUBS,
        "postgres": POSTGRES,
        "iceberg": ICEBERG,
        "dask": DASK,
        "metrics": METRICS,
        "formats": FORMATS,
        "ml": ML,
        "notebooks": NOTEBOOKS,
        "bench": BENCH,
        "all": ALL,
        "dev": DEV,
    },
    entry_points={
        "console_scripts": [
            "beam-pageviews=beam_pipelines.pageviews:main",
            "beam-iot-alerts=beam_pipelines.iot_alerts:main",
            "beam-fraud=beam_pipelines.fraud:main",
            "beam-error-rate=beam_pipelines.error_rate:main",
            "beam-sessions=beam_pipelines.sessions:main",
            "beam-produce=beam_pipelines.produce:main",
            "beam-generate=beam_pipelines.generate.cli:main",
            "beam-train-recommender=beam_pipelines.train_recommender:main",
            "beam-recommendations=beam_pipelines.recommendations:main",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: System :: Distributed Computing",
    ],
)
