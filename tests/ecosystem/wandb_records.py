"""Reads the records of a W&B offline run file (``run-<id>.wandb``) for tests.

The file is a 7-byte header (``:W&B``, magic 0xBEE1, version) followed by LevelDB-log framing: 32 KiB blocks of
chunks, each ``crc32c (4) | length (2, LE) | type (1)`` then the payload; FULL=1, FIRST=2, MIDDLE=3, LAST=4; a block
tail shorter than a chunk header is zero padding. Each reassembled payload is a serialised
``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[Any]:
    """Every ``Record`` of the file, in order."""
    data = path.read_bytes()
    assert data[:4] == b":W&B" and data[4:6] == b"\xe1\xbe", "not a W&B run file"
    position = 7
    payloads: list[bytes] = []
    pending = b""
    while position + HEADER.size <= len(data):
        left_in_block = BLOCK - position % BLOCK
        if left_in_block < HEADER.size:
            position += left_in_block
            continue
        _crc, length, kind = HEADER.unpack_from(data, position)
        position += HEADER.size
        chunk = data[position:position + length]
        position += length
        if kind == 0 and length == 0:
            continue
        if kind == FULL:
            payloads.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            payloads.append(pending + chunk)
            pending = b""
        else:
            raise AssertionError(f"unknown chunk type {kind} at byte {position}")
    records = []
    for payload in payloads:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def history_rows(records: list[Any]) -> list[dict[str, Any]]:
    """The logged rows (``history`` records) as dicts of decoded JSON values, internal ``_`` keys dropped."""
    rows = []
    for record in records:
        if record.WhichOneof("record_type") != "history":
            continue
        row = {}
        for item in record.history.item:
            key = item.key or "/".join(item.nested_key)
            if not key.startswith("_"):
                row[key] = json.loads(item.value_json)
        rows.append(row)
    return rows


def run_record(records: list[Any]) -> Any:
    """The first ``run`` record (id, project, display name, config)."""
    return next(r.run for r in records if r.WhichOneof("record_type") == "run")
