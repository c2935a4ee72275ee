"""Versioned Parquet snapshots of canonical records.

A snapshot is a folder ``{cache}/{task}/{version}/`` holding ``train.parquet``,
``valid.parquet``, ``test.parquet`` and ``manifest.json``. The version hashes what
determines the content (task and its parameters, the code that makes the records, the
raw files' sha256 or the Hub fingerprint), so a rerun finds the snapshot and rewrites
nothing. Writes go to a temporary folder renamed into place: an interrupted prepare leaves
nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import polars as pl

from augscale.errors import AugscaleError
from augscale.tasks import RECORD_COLUMNS, SPLITS, RawDataError, Task

SCHEMA_VERSION = 1
RECORD_SCHEMA = {
    "id": pl.String, "task": pl.String, "split": pl.String, "prompt": pl.String, "context": pl.String,
    "target": pl.String, "answer": pl.String, "source": pl.String, "parent_id": pl.String,
    "difficulty": pl.Float64, "meta": pl.String,
}


class DataSourceError(AugscaleError, RuntimeError):
    """Neither a local data dir nor the Hub could provide the raw data."""


def default_cache_dir() -> Path:
    """``AUGSCALE_CACHE_DIR``, else the user cache folder (never the source tree)."""
    env = os.environ.get("AUGSCALE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("augscale"))


def default_data_dir() -> Path | None:
    env = os.environ.get("AUGSCALE_DATA_DIR")
    return Path(env).expanduser() if env else None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def content_hash(obj: Any, length: int = 12) -> str:
    """A short stable hash of a JSON-serialisable object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:length]


def records_frame(records: Iterable[dict[str, Any]]) -> pl.DataFrame:
    """Canonical records -> a DataFrame with the canonical column order and types."""
    return pl.DataFrame(list(records), schema=RECORD_SCHEMA).select(list(RECORD_COLUMNS))


@dataclass
class Snapshot:
    """A snapshot folder on disk and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def task(self) -> str:
        return self.manifest["task"]

    def split_path(self, split: str) -> Path:
        return self.path / f"{split}.parquet"

    def read(self, split: str) -> pl.DataFrame:
        return pl.read_parquet(self.split_path(split))

    def scan(self, split: str) -> pl.LazyFrame:
        return pl.scan_parquet(self.split_path(split))

    @classmethod
    def open(cls, path: Path | str) -> "Snapshot":
        path = Path(path)
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{path}: not a snapshot (no manifest.json)")
        return cls(path, json.loads(manifest_path.read_text()))


def write_snapshot(final_dir: Path, frames: dict[str, pl.DataFrame], manifest: dict[str, Any], *,
                   replace: bool = False) -> Snapshot:
    """Write Parquet files and manifest into a temporary folder, then rename it into place.

    If ``final_dir`` already exists (another process finished first), it is kept as it is,
    unless ``replace`` (a partial snapshot, cut short by a budget, that a later run completed):
    then the old folder is renamed aside and the new one takes its place.
    """
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.tmp-", dir=final_dir.parent))
    try:
        for split, df in frames.items():
            df.write_parquet(tmp / f"{split}.parquet")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if replace and final_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.old-", dir=final_dir.parent))
            os.rename(final_dir, old / "snapshot")
            try:
                os.rename(tmp, final_dir)
            except OSError:
                os.rename(old / "snapshot", final_dir)  # the old one stays: nothing is lost
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
            return Snapshot.open(final_dir)
        try:
            os.rename(tmp, final_dir)
        except OSError:
            if not (final_dir / "manifest.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return Snapshot.open(final_dir)


def _read_local(task: Task, data_dir: Path) -> tuple[dict[str, list[dict]], dict[str, Any]]:
    files = task.raw_files(data_dir)
    raw, hashes = {}, {}
    for split, paths in files.items():
        rows = []
        for p in paths:
            rows.extend(task.read_raw_file(p))
            hashes[p.name if len(files) > 0 else str(p)] = sha256_file(p)
        raw[split] = rows
    return raw, {"kind": "local", "data_dir": str(data_dir), "sha256": hashes}


def _read_hub(task: Task) -> tuple[dict[str, list[dict]], dict[str, Any]]:
    try:
        raw = task.load_hub()
    except (OSError, ValueError) as e:  # ConnectionError and the Hub's offline errors are OSErrors
        raise DataSourceError(
            f"could not load {task.name!r} from the Hugging Face Hub ({task.hub_id}): {e}\n"
            "Either give local raw files with --data-dir DIR (or set AUGSCALE_DATA_DIR=DIR), "
            "or make the Hub reachable (network access, or HF_HUB_OFFLINE unset with a filled HF cache)."
        ) from e
    digest = content_hash({s: rows for s, rows in raw.items()}, length=64)
    return raw, {"kind": "hub", "hub_id": task.hub_id, "hub_config": task.hub_config, "sha256": {"rows": digest}}


def prepare(task: Task, *, data_dir: Path | None = None, cache_dir: Path | None = None) -> tuple[Snapshot, bool]:
    """Read the task's raw data, make canonical records and splits, and cache a snapshot.

    Returns:
        (snapshot, created): ``created`` is False when the snapshot was already cached.

    Raises:
        RawDataError: a malformed raw file (names the file and line or column).
        DataSourceError: no data dir and the Hub unreachable (names both ways).
    """
    data_dir = data_dir or default_data_dir()
    cache_dir = cache_dir or default_cache_dir()
    start = time.time()
    raw, source = _read_local(task, Path(data_dir)) if data_dir else _read_hub(task)
    key = {
        "task": task.name, "params": task.params(), "code": task.code_fingerprint(),
        "schema": SCHEMA_VERSION, "raw": source["sha256"],
    }
    version = content_hash(key)
    folder = cache_dir / task_folder(task) / version
    if (folder / "manifest.json").is_file():
        return Snapshot.open(folder), False
    records = {s: [task.to_record(r, raw_split=s, index=i) for i, r in enumerate(rows)] for s, rows in raw.items()}
    splits = task.assign_splits(records)
    ids = [r["id"] for s in SPLITS for r in splits[s]]
    if len(ids) != len(set(ids)):
        raise RawDataError(f"{task.name}: duplicate record ids")
    frames = {s: records_frame(splits[s]) for s in SPLITS}
    manifest = {
        "kind": "prepared", "task": task.name, "task_params": task.params(), "version": version,
        "source": source, "rows": {s: frames[s].height for s in SPLITS},
        "schema": {c: str(t) for c, t in RECORD_SCHEMA.items()}, "cache_key": key,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": round(time.time() - start, 2),
        "special_tokens": task.tokens.all(),
    }
    return write_snapshot(folder, frames, manifest), True


def task_folder(task: Task) -> str:
    """Folder name of a task's snapshots (the jsonl task uses its data set's name)."""
    return task.params().get("name", task.name) if task.name == "jsonl" else task.name


def list_snapshots(cache_dir: Path | None = None) -> list[Snapshot]:
    """Every snapshot in the cache, prepared and augmented, oldest first."""
    cache_dir = cache_dir or default_cache_dir()
    if not cache_dir.is_dir():
        return []
    found = []
    for manifest in cache_dir.glob("**/manifest.json"):
        if any(part.startswith(".") for part in manifest.relative_to(cache_dir).parts):
            continue
        try:
            found.append(Snapshot.open(manifest.parent))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted((s for s in found if "version" in s.manifest), key=lambda s: s.manifest.get("created", ""))


def find_snapshot(task: str, version: str | None = None, cache_dir: Path | None = None,
                  kind: str = "prepared") -> Snapshot | None:
    """The newest snapshot of a task (and version, when given) of the given kind, or None."""
    matches = [s for s in list_snapshots(cache_dir)
               if s.manifest.get("task") == task and s.manifest.get("kind") == kind
               and (version is None or s.version == version)]
    return matches[-1] if matches else None


def resolve_snapshot(task: Task, *, snapshot: Path | str | None = None, data_dir: Path | str | None = None,
                     cache_dir: Path | str | None = None) -> Snapshot:
    """The snapshot folder given, else the task's data prepared on demand (cached)."""
    if snapshot:
        return Snapshot.open(snapshot)
    snap, _ = prepare(task, data_dir=Path(data_dir) if data_dir else None,
                      cache_dir=Path(cache_dir) if cache_dir else None)
    return snap
