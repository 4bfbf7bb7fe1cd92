"""Read the records of an offline W&B run file (`run-<id>.wandb`), to check what was logged
without the network. The file is W&B's 7-byte header, then LevelDB log framing: 32 KiB blocks
of chunks, each with a 7-byte header (crc32, length, type: full, first, middle, last) around
protobuf `Record` messages."""
from __future__ import annotations

import struct
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2

    raw = path.read_bytes()
    assert raw[:4] == b":W&B", f"{path} is not a W&B run file"
    records, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(raw):
        room = BLOCK - pos % BLOCK
        if room < HEADER:  # a block's tail too short for a chunk header is padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + HEADER])
        pos += HEADER
        if kind == 0 and length == 0:
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        pending += raw[pos:pos + length]
        pos += length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records
