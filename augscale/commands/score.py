"""``augscale score``: score a file of predictions with a task's scorer."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("score")
    def score_cmd(
        task: str = typer.Argument(..., help="Task name: gsm8k, viggo, sql or jsonl."),
        predictions: Path = typer.Argument(..., help="JSONL: one object per line with id, prediction, reference "
                                                     "(and context, the CREATE TABLE statements, for sql)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Write per-row scores here (JSONL, input order)."),
    ) -> None:
        """Score raw model outputs against references; print the summary as one JSON object.

        gsm8k: strict (number after the first ####) and flexible (last number), compared
        numerically. viggo: function, attribute set, attribute order and exact match of the
        meaning representation. sql: execution on databases synthesized from the context,
        sandboxed. jsonl: exact match after whitespace normalization. A malformed line stops
        with its file and line number.
        """
        from augscale.cli import emit_json
        from augscale.commands.data import _task
        from augscale.evaluate.scoring import score_file

        emit_json(score_file(_task(task), predictions, out))
