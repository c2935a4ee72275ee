"""Helpers for tests that kill -9 a run together with the Ray processes it started."""

from __future__ import annotations

from pathlib import Path


def session_pids(sid: int) -> list[int]:
    """Processes of a session (a killed run's driver, Ray's services and workers)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            pids.append(int(stat.parent.name))
    return pids
