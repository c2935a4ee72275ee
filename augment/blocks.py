"""One input block of seeds -> its verified candidates: the Ray Data step, and the block files.

The seeds are cut into blocks of ``block_size`` consecutive rows (block ``i`` holds rows
``[i * block_size, (i + 1) * block_size)``). :class:`BlockRunner` runs in a Ray Data actor
pool: it reads its block's seeds, asks the strategy for candidates, verifies each with the
task's verifier and scores its difficulty, and returns every attempt as a row, kept or
rejected. The driver writes each finished block to ``{work_dir}/{block:06d}.parquet``
(temporary file, then rename): a block on disk is finished, and is never generated again.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from augscale.augment.strategies import Candidate, Strategy
from augscale.tasks import RECORD_COLUMNS, Task, get_task, make_record

# A block file: the canonical columns plus ``reject`` (null when the row passed).
BLOCK_SCHEMA = pa.schema(
    [(c, pa.float64() if c == "difficulty" else pa.string()) for c in RECORD_COLUMNS] + [("reject", pa.string())]
)
# What BlockRunner returns: a block file's rows plus where they belong.
RESULT_SCHEMA = BLOCK_SCHEMA.append(pa.field("_block", pa.int64())).append(
    pa.field("_block_rows", pa.int64())).append(pa.field("_block_info", pa.string()))
INFO_KEY = b"augscale_block"


def row_id(parent_id: str, strategy: str, index: int) -> str:
    """An augmented row's id: ``gsm8k-train-00012~substitute-1`` (parent, strategy, index)."""
    return f"{parent_id}~{strategy}-{index}"


def strategy_of(row_id_: str) -> str:
    """The strategy in a row id made by :func:`row_id` (``...~substitute-1`` -> ``substitute``)."""
    return row_id_.rsplit("~", 1)[1].rsplit("-", 1)[0]


def verify_candidate(task: Task, strategy: str, cand: Candidate) -> dict[str, Any]:
    """A candidate as a block-file row: the canonical record, verified, with its difficulty.

    The task's verdict evidence goes into ``meta["verify"]``, the strategy's into
    ``meta[strategy]``. A rejected candidate keeps the fields it has and ``reject`` says why.
    """
    rid = row_id(cand.parent_id, strategy, cand.index)
    meta = {strategy: cand.evidence} if cand.evidence else {}
    if cand.reason is not None:
        return {**make_record(id=rid, task=task.name, split="train", prompt=cand.prompt or "", target=cand.target or "",
                              answer=cand.answer or "", context=cand.context, source=strategy,
                              parent_id=cand.parent_id, meta=meta), "reject": cand.reason}
    record = make_record(id=rid, task=task.name, split="train", prompt=cand.prompt or "", target=cand.target or "",
                         answer=cand.answer if cand.answer is not None else task.answer_from_target(cand.target or ""),
                         context=cand.context, source=strategy, parent_id=cand.parent_id)
    verdict = task.verify(record)
    meta["verify"] = verdict.evidence
    record["meta"] = json.dumps(meta, sort_keys=True, default=str)
    if not verdict.ok:
        return {**record, "reject": verdict.reason or "unverified"}
    record["difficulty"] = float(task.difficulty(record))
    return {**record, "reject": None}


def run_block(task: Task, strategy: Strategy, seeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every candidate of one block of seeds, verified (the pure part of :class:`BlockRunner`).

    A seed the strategy returned nothing for gets one ``no_candidate`` rejection, so that every
    seed is accounted for.

    Raises:
        ValueError: the strategy returned two candidates with one id (a bug in the strategy).
    """
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    parents = set()
    for cand in strategy.generate(seeds):
        row = verify_candidate(task, strategy.name, cand)
        if row["id"] in seen:
            raise ValueError(f"strategy {strategy.name!r} produced the id {row['id']!r} twice")
        seen.add(row["id"])
        parents.add(cand.parent_id)
        rows.append(row)
    for seed in seeds:
        if seed["id"] not in parents:
            rows.append(verify_candidate(task, strategy.name, Candidate.reject(seed["id"], 0, "no_candidate")))
    return rows


class BlockRunner:
    """Ray Data step: a batch of block descriptions ``{block, start, stop}`` -> their candidates.

    ``__init__`` builds the task and the strategy once per actor (an LLM strategy opens its
    client there). Reads the seeds of each block from ``seeds_path`` (a Parquet file of
    canonical records, on storage the workers can read).

    One output row (columns of :data:`RESULT_SCHEMA`): ``{"id": "gsm8k-train-00001~substitute-0",
    ..., "reject": None, "_block": 0, "_block_rows": 192, "_block_info": '{"seconds": 0.4,
    "usage": {}}'}``.
    """

    def __init__(self, *, strategy_cls: type[Strategy], task_name: str, task_params: dict[str, Any],
                 strategy_kwargs: dict[str, Any], resources: dict[str, Any], seed: int, seeds_path: str):
        self.task = get_task(task_name, **task_params)
        self.strategy = strategy_cls(self.task, seed=seed, resources=resources, **strategy_kwargs)
        self.seeds_path = seeds_path

    def __call__(self, batch: dict[str, Any]) -> pa.Table:
        tables = []
        for block, start, stop in zip(batch["block"], batch["start"], batch["stop"]):
            started = time.time()
            seeds = read_seed_rows(self.seeds_path, int(start), int(stop))
            rows = run_block(self.task, self.strategy, seeds)
            usage = self.strategy.block_usage()
            info = {"seconds": round(time.time() - started, 3), "seeds": len(seeds), "usage": usage}
            if usage.get("skipped_for_budget"):  # this actor spent its share of the budget: say how much
                info["stopped"] = self.strategy.budget_spent()
            info = json.dumps(info)
            for r in rows:
                r.update(_block=int(block), _block_rows=len(rows), _block_info=info)
            tables.append(pa.Table.from_pylist(rows, schema=RESULT_SCHEMA))
        return pa.concat_tables(tables) if tables else RESULT_SCHEMA.empty_table()

    def __del__(self):
        strategy = getattr(self, "strategy", None)
        if strategy is not None:
            strategy.close()


def read_seed_rows(path: str | Path, start: int, stop: int) -> list[dict[str, Any]]:
    """Rows ``[start, stop)`` of a seed Parquet file, as dicts (only those rows are read)."""
    import polars as pl

    return pl.scan_parquet(path).slice(start, stop - start).collect().to_dicts()


# ----- block files -----------------------------------------------------------------------------
def block_path(work_dir: Path, block: int) -> Path:
    return work_dir / f"{block:06d}.parquet"


def write_block(work_dir: Path, block: int, table: pa.Table, info: dict[str, Any]) -> Path:
    """Write one finished block atomically (temporary file, fsync, rename); the info rides in
    the Parquet metadata, so a block file is complete or absent, never half-written."""
    work_dir.mkdir(parents=True, exist_ok=True)
    final = block_path(work_dir, block)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    table = table.select(BLOCK_SCHEMA.names).cast(BLOCK_SCHEMA)
    table = table.replace_schema_metadata({INFO_KEY: json.dumps(info).encode()})
    pq.write_table(table, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    return final


def block_info(path: Path) -> dict[str, Any]:
    """The info stored with a block file (``seconds``, ``seeds``, ``usage``)."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(INFO_KEY, b"{}"))


def finished_blocks(work_dir: Path) -> set[int]:
    """Indices of the blocks on disk."""
    if not work_dir.is_dir():
        return set()
    return {int(p.stem) for p in work_dir.glob("[0-9]*.parquet")}
