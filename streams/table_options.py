"""Options for the worker's Faust tables (through Faust's documented table ``options``)."""

from __future__ import annotations

from typing import Any

from streams.settings import Settings


def rocksdb_options(settings: Settings, *, small: bool = False) -> dict[str, Any]:
    """Memory bounds for each partition's RocksDB (Faust's table ``options``).

    Faust's defaults are 3 write buffers of 64 MiB and a 2 GiB block cache per
    partition database: with 8 partitions a worker's memory grew by ~34 MiB per
    thousand new parcels in a soak, towards several GiB. A worker here takes
    ``TRACKBONE_ROCKSDB_MEMORY_MB`` per partition at most (half write buffers, half
    block cache) for its parcel states, a sixteenth of that for the stuck index.
    """
    budget = settings.rocksdb_memory_mb * 1024 * 1024 // (16 if small else 1)
    return {
        "write_buffer_size": max(1 << 20, budget // 4),
        "max_write_buffer_number": 2,
        "block_cache_size": max(1 << 20, budget // 2),
        "block_cache_compressed_size": 0,
    }
