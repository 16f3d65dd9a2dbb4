"""Checkpoint stores: Azure Blob Storage in the layout of azure-eventhub-checkpointstoreblob
(so EventProcessorClient apps and this reader share checkpoints), or ``file://DIRECTORY``
(one JSON file per partition, replaced atomically)."""

from __future__ import annotations

import json
import os
import tempfile
from typing import NamedTuple, Optional

from transforms.base.errors import ConfigError, SourceError
from transforms.base.extras import require
from transforms.io.eventhubs.client import wrap

__all__ = ["Checkpoint", "open_checkpoint_store"]


class Checkpoint(NamedTuple):
    sequence_number: int
    offset: str
    # What a restart from here needs, from a runner that defers checkpoints until the
    # outputs are written (transforms.delivery.Position.metadata); "" otherwise.
    metadata: str = ""


class FileCheckpoints:
    """Our own committed state: DIR/<namespace>/<hub>/<group>/<partition>.json."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def _path(self, namespace: str, hub: str, group: str, partition: str) -> str:
        safe = [part.replace("/", "_").replace(":", "_") for part in (namespace, hub, group)]
        return os.path.join(self.directory, *safe, f"{partition}.json")

    def get(self, namespace: str, hub: str, group: str, partition: str) -> Optional[Checkpoint]:
        try:
            with open(self._path(namespace, hub, group, partition), encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return None
        return Checkpoint(int(data["sequence_number"]), str(data["offset"]),
                          str(data.get("delivery", "")))

    def put(self, namespace: str, hub: str, group: str, partition: str, point: Checkpoint) -> None:
        path = self._path(namespace, hub, group, partition)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        data: dict = {"sequence_number": point.sequence_number, "offset": point.offset}
        if point.metadata:
            data["delivery"] = point.metadata
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)  # atomic: a reader sees the old or the new checkpoint

    def close(self) -> None:
        pass


class BlobCheckpoints:
    """azure-eventhub-checkpointstoreblob's BlobCheckpointStore (the container is created).

    A checkpoint's delivery metadata goes to a blob of its own beside the store's layout
    (``NS/HUB/GROUP/beam-pipelines/PARTITION``), written before the checkpoint: a
    restart that reads a newer metadata blob than checkpoint only treats as new some
    records it had finished (they may be dead-lettered as late again), never the reverse.
    """

    def __init__(self, connection_string: str, container: str) -> None:
        blob = require("eventhubs", "azure.eventhub.extensions.checkpointstoreblob")
        self.store = blob.BlobCheckpointStore.from_connection_string(
            str.__str__(connection_string), container)
        try:
            self.store._container_client.create_container()
        except Exception as exc:
            if "ContainerAlreadyExists" not in str(exc) and "already exists" not in str(exc):
                raise wrap(exc, f"cannot create checkpoint container {container!r}") from None

    def get(self, namespace: str, hub: str, group: str, partition: str) -> Optional[Checkpoint]:
        for item in self.store.list_checkpoints(namespace, hub, group):
            if str(item["partition_id"]) == partition:
                return Checkpoint(int(item["sequence_number"]), str(item["offset"]),
                                  self._metadata(namespace, hub, group, partition))
        return None

    @staticmethod
    def _metadata_blob(namespace: str, hub: str, group: str, partition: str) -> str:
        return f"{namespace}/{hub}/{group}/beam-pipelines/{partition}".lower()

    def _metadata(self, namespace: str, hub: str, group: str, partition: str) -> str:
        blob = self.store._container_client.get_blob_client(
            self._metadata_blob(namespace, hub, group, partition))
        try:
            return blob.download_blob().readall().decode("utf-8")
        except Exception:  # none written (a checkpoint of another application)
            return ""

    def put(self, namespace: str, hub: str, group: str, partition: str, point: Checkpoint) -> None:
        if point.metadata:
            self.store._container_client.upload_blob(
                self._metadata_blob(namespace, hub, group, partition),
                point.metadata.encode("utf-8"), overwrite=True)
        self.store.update_checkpoint({
            "fully_qualified_namespace": namespace, "eventhub_name": hub,
            "consumer_group": group, "partition_id": partition,
            "sequence_number": point.sequence_number, "offset": point.offset,
        })

    def close(self) -> None:
        self.store.close()


def open_checkpoint_store(spec: Optional[str], container: str):
    if not spec:
        return None
    if spec.startswith("file://"):
        return FileCheckpoints(spec[len("file://"):])
    try:
        return BlobCheckpoints(spec, container)
    except Exception as exc:
        if isinstance(exc, (SourceError, ConfigError)):
            raise
        raise wrap(exc, "cannot open the checkpoint store") from None
