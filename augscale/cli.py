"""The ``augscale`` command line. Each command group lives in ``augscale/commands/``.

Configs are parsed and checked here, at the edge, then unpacked into plain arguments.
User errors (bad config, malformed file, unknown name) print one message and exit 2.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

import click
import typer

from augscale.errors import AugscaleError

app = typer.Typer(
    name="augscale",
    help=(
        "Grow a fine-tuning set with verified generated samples, fine-tune at several data sizes, "
        "and report what the extra data buys.\n\n"
        "Typical flow: `augscale data prepare gsm8k` -> `augscale augment CONFIG` -> "
        "`augscale train CONFIG` -> `augscale evaluate` -> `augscale ablate CONFIG` / `augscale report`. "
        "`augscale demo` runs all of it small, end to end."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)

# Modules in augscale/commands that define `register(app)`; each adds its commands.
COMMAND_MODULES = ("data", "model", "score", "evaluate", "augment", "train", "experiment")


def emit_json(obj: dict[str, Any]) -> None:
    """Print the one-line JSON summary that ``--json`` promises (last line of stdout)."""
    sys.stdout.flush()
    print(json.dumps(obj, default=str), flush=True)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"augscale.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"augscale.commands.{name}":
                continue  # that command group is not part of this build yet
            raise
        module.register(app)


_register_all()


def main() -> None:
    """Console entry point: runs the app and turns user errors into a message and exit code 2."""
    try:
        rv = app(standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except AugscaleError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
