"""Versioned Parquet snapshots of canonical records (see DESIGN.md)."""

from augscale.datasets_cache.snapshot import (DataSourceError, Snapshot, default_cache_dir, default_data_dir,
                                              find_snapshot, list_snapshots, prepare, records_frame, resolve_snapshot,
                                              write_snapshot)

__all__ = ["DataSourceError", "Snapshot", "default_cache_dir", "default_data_dir", "find_snapshot",
           "list_snapshots", "prepare", "records_frame", "resolve_snapshot", "write_snapshot"]
