"""``augscale data``: prepare, show and list versioned snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

DATA_DIR_HELP = "Folder with the raw files (e.g. ../shared/datasets). Default: $AUGSCALE_DATA_DIR, else the Hub."
CACHE_DIR_HELP = "Snapshot cache. Default: $AUGSCALE_CACHE_DIR, else the user cache folder."


def _task(name: str, input_col: str | None = None, target_col: str | None = None,
          context_col: str | None = None, dataset_name: str | None = None):
    from augscale.config import TaskConfig, validate_config

    cfg = validate_config(TaskConfig, {"name": name, "input_col": input_col, "target_col": target_col,
                                       "context_col": context_col, "dataset_name": dataset_name}, "task")
    return cfg.build()


def register(app: typer.Typer) -> None:
    data = typer.Typer(help="Load raw data sets into versioned Parquet snapshots, show and list them.",
                       no_args_is_help=True)
    app.add_typer(data, name="data")

    @data.command("prepare")
    def prepare_cmd(
        task: str = typer.Argument(..., help="Task name: gsm8k, viggo, sql or jsonl."),
        data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help=CACHE_DIR_HELP),
        input_col: Optional[str] = typer.Option(None, help="jsonl only: the input column (default 'input')."),
        target_col: Optional[str] = typer.Option(None, help="jsonl only: the target column (default 'target')."),
        context_col: Optional[str] = typer.Option(None, help="jsonl only: an optional context column."),
        name: Optional[str] = typer.Option(None, "--name", help="jsonl only: the data set's name (default 'jsonl')."),
        as_json: bool = typer.Option(False, "--json", help="Print a one-line JSON summary as the last line."),
    ) -> None:
        """Read a task's raw data (local files or the Hub) into a cached, versioned snapshot.

        Splits: gsm8k test is the official 1,319 and valid a deterministic 5% of train; viggo
        the official three; sql ~90/5/5 grouped by schema. A rerun finds the snapshot and
        rewrites nothing.
        """
        from augscale.cli import emit_json
        from augscale.datasets_cache import prepare

        t = _task(task, input_col, target_col, context_col, name)
        snap, created = prepare(t, data_dir=data_dir, cache_dir=cache_dir)
        rows = {s: snap.manifest["rows"][s] for s in ("train", "valid", "test")}
        word = "wrote" if created else "cached"
        typer.echo(f"{word} {snap.task} snapshot {snap.version} at {snap.path}: "
                   + ", ".join(f"{k} {v:,}" for k, v in rows.items()), err=as_json)
        if as_json:
            emit_json({"task": snap.task, "version": snap.version, "path": str(snap.path), "rows": rows})

    @data.command("show")
    def show_cmd(
        task: str = typer.Argument(..., help="Task name: gsm8k, viggo, sql or jsonl."),
        split: str = typer.Option("train", "--split", "-s", help="train, valid or test."),
        n: int = typer.Option(3, "-n", help="How many examples."),
        data_dir: Optional[Path] = typer.Option(None, "--data-dir", help=DATA_DIR_HELP),
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help=CACHE_DIR_HELP),
    ) -> None:
        """Print examples formatted as the model sees them in training (special tokens included)."""
        from augscale.datasets_cache import resolve_snapshot
        from augscale.errors import AugscaleError

        if split not in ("train", "valid", "test"):
            raise AugscaleError(f"--split {split!r}: allowed values are train, valid, test")
        t = _task(task)
        snap = resolve_snapshot(t, data_dir=data_dir, cache_dir=cache_dir)
        for rec in snap.scan(split).head(n).collect().to_dicts():
            typer.echo(f"--- {rec['id']}  (difficulty {rec['difficulty']:g})")
            typer.echo(t.train_text(rec))

    @data.command("list")
    def list_cmd(
        cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help=CACHE_DIR_HELP),
        as_json: bool = typer.Option(False, "--json", help="Print the list as one JSON line."),
    ) -> None:
        """List the snapshots in the cache (prepared and augmented)."""
        from augscale.cli import emit_json
        from augscale.datasets_cache import list_snapshots

        snaps = list_snapshots(cache_dir)
        items = [{"task": s.task, "kind": s.manifest.get("kind"), "version": s.version, "path": str(s.path),
                  "rows": s.manifest.get("rows"), "created": s.manifest.get("created")} for s in snaps]
        if as_json:
            emit_json({"snapshots": items})
            return
        if not items:
            typer.echo("no snapshots in the cache")
        for it in items:
            rows = it["rows"] if isinstance(it["rows"], int) else sum((it["rows"] or {}).values())
            typer.echo(f"{it['task']:<8} {it['kind']:<10} {it['version']}  {rows:>8,} rows  {it['created']}  {it['path']}")
