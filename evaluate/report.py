"""The scaling-by-data report: results table, paired tests, scaling plot and report.md.

Input: one result dict per finished arm (what ``augscale ablate`` writes to
``arms/{arm}/result.json``) and, per arm, its per-item scores (``items.parquet``: ``id``,
``correct``). Output, in the run folder: ``results.csv``, ``results.md``, ``scaling.png`` and
``report.md``.

Arm result dict, e.g.::

    {"arm": "n2000-substitute-random-s0", "n_train": 2000, "n_original": 1000, "n_augmented": 1000,
     "strategy": "substitute", "curriculum": "random", "seed": 0, "baseline": false,
     "metrics": {"accuracy": 0.031, "format_validity": 0.94, "reference_loss": 1.82, "n": 200},
     "train_tokens": 310000, "train_seconds": 95.1, "optimizer_steps": 125,
     "generation_tokens": 0, "cost_usd": 0.0}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl
from scipy import stats as sps

from augscale.evaluate.stats import mcnemar_exact, wilson_interval

# Lower is better for these; the gain per doubling is still reported as a signed slope.
LOWER_IS_BETTER = {"reference_loss"}


def mean_ci(values: list[float], *, proportion_n: int | None = None) -> tuple[float, float, float, float]:
    """(mean, sd, low, high) over seeds; with one seed and a proportion, a Wilson interval on its n items."""
    k = len(values)
    mean = sum(values) / k
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1)) if k > 1 else 0.0
    if k > 1:
        half = float(sps.t.ppf(0.975, k - 1)) * sd / math.sqrt(k)
        return mean, sd, mean - half, mean + half
    if proportion_n:  # one seed: the mean is k / n exactly
        low, high = wilson_interval(round(mean * proportion_n), proportion_n)
        return mean, sd, low, high
    return mean, sd, mean, mean


def _group_key(r: dict[str, Any]) -> tuple:
    return (r["n_train"], r["strategy"], r["curriculum"])


def paired_against_baseline(results: list[dict[str, Any]], items: dict[str, pl.DataFrame],
                            headline: str) -> dict[str, dict[str, Any]]:
    """Per arm: difference in the headline metric against the baseline arm of the same seed, and McNemar.

    The baseline is the arm marked ``baseline`` (original data at the original size) of the same seed
    and curriculum, else the seed's random-order baseline.
    """
    baselines = {(r["seed"], r["curriculum"]): r for r in results if r.get("baseline")}
    by_seed = {r["seed"]: r for r in results if r.get("baseline") and r["curriculum"] == "random"}
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        base = baselines.get((r["seed"], r["curriculum"])) or by_seed.get(r["seed"])
        if base is None or base["arm"] == r["arm"]:
            continue
        a, b = items.get(base["arm"]), items.get(r["arm"])
        entry: dict[str, Any] = {"diff": r["metrics"][headline] - base["metrics"][headline], "p_value": None}
        if a is not None and b is not None:
            joined = a.select("id", pl.col("correct").alias("a")).join(
                b.select("id", pl.col("correct").alias("b")), on="id", how="inner")
            test = mcnemar_exact(joined["a"].to_list(), joined["b"].to_list())
            entry.update(p_value=test["p_value"], n_paired=joined.height,
                         gained=test["b_only"], lost=test["a_only"])
        out[r["arm"]] = entry
    return out


def results_table(results: list[dict[str, Any]], items: dict[str, pl.DataFrame], metrics: list[str],
                  headline: str) -> pl.DataFrame:
    """One row per (n_train, strategy, curriculum), aggregated over seeds, with CIs and paired tests."""
    paired = paired_against_baseline(results, items, headline)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(_group_key(r), []).append(r)
    rows = []
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2])):
        arms = sorted(groups[key], key=lambda r: r["seed"])
        first = arms[0]
        row: dict[str, Any] = {
            "arm": first["arm"].rsplit("-s", 1)[0], "n_train": first["n_train"],
            "n_original": first["n_original"], "n_augmented": first["n_augmented"],
            "strategy": first["strategy"], "curriculum": first["curriculum"],
            "seeds": ",".join(str(r["seed"]) for r in arms), "baseline": bool(first.get("baseline")),
        }
        for m in metrics:
            vals = [float(r["metrics"][m]) for r in arms if r["metrics"].get(m) is not None]
            if not vals:
                continue
            is_prop = m not in LOWER_IS_BETTER and all(0.0 <= v <= 1.0 for v in vals)
            mean, sd, lo, hi = mean_ci(vals, proportion_n=arms[0]["metrics"].get("n") if is_prop else None)
            if is_prop:
                lo, hi = max(0.0, min(lo, mean)), min(1.0, max(hi, mean))
            row.update({m: mean, f"{m}_sd": sd, f"{m}_ci_low": lo, f"{m}_ci_high": hi})
        diffs = [paired[r["arm"]] for r in arms if r["arm"] in paired]
        if diffs:
            row[f"{headline}_diff"] = sum(d["diff"] for d in diffs) / len(diffs)
            ps = [d["p_value"] for d in diffs if d["p_value"] is not None]
            row["mcnemar_p"] = max(ps) if ps else None  # the weakest evidence among seeds
        else:
            row[f"{headline}_diff"], row["mcnemar_p"] = None, None
        for col in ("train_tokens", "train_seconds", "optimizer_steps", "generation_tokens", "cost_usd"):
            row[col] = sum(float(r.get(col) or 0) for r in arms) / len(arms)
        rows.append(row)
    return pl.DataFrame(rows)


def gain_per_doubling(table: pl.DataFrame, headline: str) -> dict[str, float | None]:
    """Least-squares slope of the headline metric against log2(n_train), per strategy/curriculum line.

    Each line includes the baseline (original-only) point, so the slope is the gain per doubling of
    data that the strategy's rows buy (the log-linear view of RFT and MuggleMath).
    """
    out: dict[str, float | None] = {}
    base = table.filter(pl.col("baseline"))
    for (strategy, curriculum), grp in table.group_by(["strategy", "curriculum"], maintain_order=True):
        pts = grp if strategy == "original" else pl.concat([base, grp]).unique(subset=["n_train"], keep="last")
        pts = pts.filter(pl.col(headline).is_not_null())
        if pts["n_train"].n_unique() < 2:
            out[f"{strategy}/{curriculum}"] = None
            continue
        x = [math.log2(v) for v in pts["n_train"].to_list()]
        fit = sps.linregress(x, pts[headline].to_list())
        out[f"{strategy}/{curriculum}"] = float(fit.slope)
    return out


def scaling_plot(table: pl.DataFrame, headline: str, original_size: int, path: Path,
                 gains: dict[str, float | None], title: str) -> Path:
    """Headline metric against n_train on a log2 axis, a line per strategy and curriculum, CI bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    base = table.filter(pl.col("baseline"))
    for (strategy, curriculum), grp in table.group_by(["strategy", "curriculum"], maintain_order=True):
        pts = grp if strategy == "original" else pl.concat([base, grp]).unique(subset=["n_train"], keep="last")
        pts = pts.sort("n_train")
        y = pts[headline].to_list()
        # float noise can put a bound a hair past the mean (Wilson at p = 0): clamp the bar lengths
        lo = [max(0.0, m - l) for m, l in zip(y, pts[f"{headline}_ci_low"].to_list())]
        hi = [max(0.0, h - m) for m, h in zip(y, pts[f"{headline}_ci_high"].to_list())]
        gain = gains.get(f"{strategy}/{curriculum}")
        label = f"{strategy} / {curriculum}" + (f"  ({gain:+.3f} per doubling)" if gain is not None else "")
        ax.errorbar(pts["n_train"].to_list(), y, yerr=[lo, hi], marker="o", capsize=4, label=label)
    ax.axvline(original_size, color="grey", linestyle="--", linewidth=1)
    ax.annotate("original size", (original_size, ax.get_ylim()[1]), ha="right", va="top", fontsize=8,
                color="grey", rotation=90)
    ax.set_xscale("log", base=2)
    sizes = sorted(set(table["n_train"].to_list()))
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training examples (log2)")
    ax.set_ylabel(headline)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def markdown_table(table: pl.DataFrame, metrics: list[str], headline: str) -> str:
    head = ["arm", "n_train", "n_original", "n_augmented", "strategy", "curriculum", "seeds"]
    cols = head + [f"{m} [95% CI] (sd)" for m in metrics if m in table.columns]
    cols += [f"Δ{headline} vs original", "McNemar p", "train tokens", "train s", "gen tokens", "cost $"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in table.iter_rows(named=True):
        cells = [_fmt(r[c]) for c in head]
        for m in metrics:
            if m in table.columns:
                cells.append(f"{_fmt(r[m])} [{_fmt(r[f'{m}_ci_low'])}, {_fmt(r[f'{m}_ci_high'])}] "
                             f"({_fmt(r[f'{m}_sd'])})")
        diff = r.get(f"{headline}_diff")
        cells += [("baseline" if r["baseline"] else _fmt(diff)), _fmt(r.get("mcnemar_p"), 4),
                  f"{r['train_tokens']:,.0f}", f"{r['train_seconds']:.0f}", f"{r['generation_tokens']:,.0f}",
                  f"{r['cost_usd']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(run_dir: Path, results: list[dict[str, Any]], items: dict[str, pl.DataFrame], *,
                 metrics: list[str], headline: str, original_size: int, context: dict[str, Any]) -> Path:
    """Write results.csv, results.md, scaling.png and report.md into ``run_dir``; return report.md."""
    run_dir = Path(run_dir)
    table = results_table(results, items, metrics, headline)
    table.write_csv(run_dir / "results.csv")
    md_table = markdown_table(table, metrics, headline)
    (run_dir / "results.md").write_text(md_table + "\n")
    gains = gain_per_doubling(table, headline)
    plot = scaling_plot(table, headline, original_size, run_dir / "scaling.png", gains,
                        f"{context.get('task', '')}: {headline} vs training data")
    report = run_dir / "report.md"
    other = {m: gain_per_doubling(table, m) for m in metrics if m != headline}
    report.write_text(_report_text(table, md_table, gains, headline, original_size, plot.name, context, other))
    return report


def _report_text(table: pl.DataFrame, md_table: str, gains: dict[str, float | None], headline: str,
                 original_size: int, plot_name: str, ctx: dict[str, Any],
                 other_gains: dict[str, dict[str, float | None]] | None = None) -> str:
    base = table.filter(pl.col("baseline"))
    base_line = (f"{_fmt(base[headline][0])} [{_fmt(base[f'{headline}_ci_low'][0])}, "
                 f"{_fmt(base[f'{headline}_ci_high'][0])}]") if base.height else "–"
    best = table.sort(headline, descending=headline not in LOWER_IS_BETTER).row(0, named=True)
    sig = table.filter(pl.col("mcnemar_p").is_not_null() & (pl.col("mcnemar_p") < 0.05))
    total_tokens = (table["train_tokens"] * table["seeds"].str.split(",").list.len()).sum()
    total_seconds = (table["train_seconds"] * table["seeds"].str.split(",").list.len()).sum()
    other_lines = "\n".join(
        f"- {m}: " + "; ".join(f"`{k}` {_fmt(v)}" for k, v in g.items() if v is not None) + " per doubling"
        for m, g in (other_gains or {}).items() if any(v is not None for v in g.values()))
    if other_lines:
        other_lines = ("Other metrics, same fit (reference_loss is the mean per-token loss of the reference answers: "
                       "lower is better, and it moves even when a small model's accuracy is near zero):\n"
                       + other_lines)
    # what augmentation spent in all; without it (an older run folder), the largest arm's share per
    # strategy (arms share rows, so their shares overlap and are not summed)
    spent = ctx.get("generation")
    if not spent:
        per = table.group_by("strategy").agg(pl.col("generation_tokens").max(), pl.col("cost_usd").max())
        spent = {"tokens": per["generation_tokens"].sum(), "cost_usd": per["cost_usd"].sum()}
    gen_tokens, cost = spent["tokens"], spent["cost_usd"]
    gain_lines = "\n".join(f"- `{k}`: {_fmt(v)} {headline} per doubling of training data" if v is not None
                           else f"- `{k}`: one data size only, no slope" for k, v in gains.items())
    return f"""# Scaling by data: {ctx.get('task', '')}

**Question.** How much does {headline} on {ctx.get('eval_split', 'test')} improve when the training set
grows beyond its original {original_size:,} examples, and with which data?

## What was run
- Task `{ctx.get('task')}`; seed snapshot `{ctx.get('seed_snapshot')}`; augmented snapshot(s) {ctx.get('augmented', '–')}.
- Model: {ctx.get('model')}; budget mode `{ctx.get('budget_mode')}` ({ctx.get('budget_text', '')}).
- {table.height} arm groups x seeds {sorted({s for ss in table['seeds'] for s in ss.split(',')})}; evaluation on
  {ctx.get('eval_n', '?')} {ctx.get('eval_split', 'test')} items, the same items for every arm (so tests are paired).
- Cost: {total_tokens:,.0f} training tokens in {total_seconds:,.0f} s of training, all arms together;
  {gen_tokens:,.0f} LLM generation tokens for augmentation (${cost:,.2f}); an arm's "gen tokens" and
  "cost $" are its augmented rows' share of that (spend per accepted row, rejected attempts included).

## Results
{md_table}

CIs: with several seeds, a t interval over seeds (sd in brackets); with one seed, a Wilson interval over
the evaluation items. Δ is against the original-size, original-only arm of the same seed; the McNemar p-value
is the exact test on the same items (the largest over seeds).

![scaling plot]({plot_name})

## What changed, and how sure we are
- Original-size baseline: {headline} {base_line}.
- Best arm: `{best['arm']}` with {headline} {_fmt(best[headline])} [{_fmt(best[f'{headline}_ci_low'])}, {_fmt(best[f'{headline}_ci_high'])}].
- Arms that differ from the baseline at p < 0.05 (exact McNemar): {', '.join(sig['arm'].to_list()) or 'none'}.
- Fitted gain per doubling of data (slope against log2 n_train):
{gain_lines}

{other_lines}

{ctx.get('notes', '')}
"""


def load_results(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, pl.DataFrame]]:
    """Every finished arm's result.json and items.parquet under ``run_dir/arms``."""
    results, items = [], {}
    for path in sorted(Path(run_dir).glob("arms/*/result.json")):
        r = json.loads(path.read_text())
        results.append(r)
        ip = path.parent / "items.parquet"
        if ip.is_file():
            items[r["arm"]] = pl.read_parquet(ip)
    return results, items
