"""``augscale augment``: grow a seed set into an augmented snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def _describe(summary: dict) -> str:
    lines = []
    for name, c in summary["counts"].items():
        reasons = ", ".join(f"{k} {v:,}" for k, v in c["rejected"].items()) or "none"
        lines.append(f"  {name}: {c['candidates']:,} candidates, {c['verified']:,} verified, "
                     f"{c['accepted']:,} accepted; rejected: {reasons}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("augment")
    def augment_cmd(
        config: Path = typer.Argument(..., help="Augment config YAML (see configs/augment/)."),
        seeds: Optional[Path] = typer.Option(None, "--seeds", help="A raw file in the task's format (gsm8k JSONL, "
                                             "viggo CSV, sql JSONL) that replaces the seed rows."),
        set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a key: --set target_size=500."),
        as_json: bool = typer.Option(False, "--json", help="Print a one-line JSON summary as the last line."),
        no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    ) -> None:
        """Generate, verify, dedup and decontaminate new rows; write an augmented snapshot.

        Candidates are persisted per block of seeds: a killed run, rerun with the same config,
        continues where it stopped. A finished config returns its cached snapshot at once.
        An unreachable target_size is not an error: the run keeps what passed and says so.
        """
        from augscale.augment.run import run_augment
        from augscale.cli import emit_json
        from augscale.config import AugmentConfig, load_config

        cfg = load_config(config, AugmentConfig, set_ or [])
        result = run_augment(cfg, seeds_file=seeds, progress=not no_progress)
        s = result.summary
        word = "wrote" if result.created else "cached"
        typer.echo(f"{word} augmented {s['task']} snapshot {s['name']}-{s['version']} at {s['path']}: "
                   f"{s['rows']:,} new rows (target {s['target_size']:,})", err=as_json)
        typer.echo(_describe(s), err=as_json)
        if not s["target_reached"]:
            typer.echo(f"target not reached: {s['shortfall']:,} rows short; every seed was tried once "
                       "(raise variants_per_seed, add strategies or lower target_size)", err=True)
        if s.get("stopped"):
            typer.echo(f"stopped early: {s['stopped']}", err=True)
        if as_json:
            emit_json(s)
