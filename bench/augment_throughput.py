"""Throughput of the LLM generator in a Ray Data actor against a server with a fixed latency.

A local OpenAI-compatible server (tests/fake_openai.py, in its own process so that it does not
share the client's interpreter lock) answers every chat request after ``--latency`` seconds.
The generator (:class:`augscale.augment.llm.generator.LLMGenerator`, the one LLM strategies use:
rate limiter, budget and usage accounting included) runs in a Ray Data actor pool of
``--actors`` actors that together keep ``--concurrency`` requests in flight (as
``generator.actors`` and ``generator.concurrency`` split them in an augment config), over
``--requests`` prompts in batches of ``--batch``.

With a perfect client, requests/s = concurrency / latency. The achieved rate is the steady
state: answers received while every actor was generating, over that window (from the last
actor's first request to the first actor's last answer), so that Ray's start-up of the actors
is not counted as generation time; the gaps between an actor's batches are. The end-to-end
rate, start-up included, is printed too.

Ray starts its workers at nice 15 (``RAY_worker_niceness``) so that they yield to the driver and
Ray's own services; on a machine shared with other busy processes that measures the scheduler,
not the generator. The benchmark starts Ray with ``RAY_worker_niceness=0`` unless it is set.

    python bench/augment_throughput.py --concurrency 64 --latency 0.25

Last line: ``{"concurrency", "latency_s", "requests_per_s", "ideal_requests_per_s", "ratio_to_ideal",
"end_to_end_requests_per_s"}`` (the last one with Ray's start-up of the actors counted).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class _Step:
    """Ray Data step: one chat request per prompt through LLMGenerator; when each was sent and answered."""

    def __init__(self, generator_kwargs: dict):
        from augscale.augment.llm.generator import LLMGenerator

        self.gen = LLMGenerator(**generator_kwargs)

    def __call__(self, batch: dict) -> dict:
        from augscale.llm.endpoint import to_messages

        def one(prompt: str):
            sent = time.time()
            r = self.gen.chat(to_messages(prompt), n=1)
            return sent, time.time(), r.ok

        out = self.gen.map(one, list(batch["prompt"]))
        return {"sent": [o[0] for o in out], "received": [o[1] for o in out], "ok": [o[2] for o in out],
                "actor": [os.getpid()] * len(out)}


def steady_rate(rows: list[dict]) -> tuple[float, float]:
    """Answers per second while every actor was generating, and that window's length in seconds."""
    actors: dict[int, list[dict]] = {}
    for r in rows:
        actors.setdefault(r["actor"], []).append(r)
    start = max(min(r["sent"] for r in rs) for rs in actors.values())
    end = min(max(r["received"] for r in rs) for rs in actors.values())
    done = sum(start <= r["received"] <= end for r in rows)
    return done / (end - start), end - start


# Real servers (vLLM's uvicorn, OpenAI) send small responses without Nagle's delay; http.server
# does not by default, and its header and body writes then wait ~40 ms for the client's delayed
# ACK, which would be measured as server latency. TCP_NODELAY on the fake server's sockets:
_SERVER = ("import runpy, socketserver, sys; socketserver.StreamRequestHandler.disable_nagle_algorithm = True; "
           "sys.argv = [sys.argv[0]] + sys.argv[1:]; runpy.run_path({path!r}, run_name='__main__')")


def start_server(latency: float, reply: str) -> tuple[subprocess.Popen, str]:
    """The fake server in a subprocess; returns it and its base URL."""
    code = _SERVER.format(path=str(REPO / "tests" / "fake_openai.py"))
    proc = subprocess.Popen([sys.executable, "-c", code, "--latency", str(latency), "--reply", reply],
                            stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise RuntimeError(f"fake server did not start (printed {url!r})")
    return proc, url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", type=int, default=64, help="requests in flight, all actors together")
    ap.add_argument("--actors", type=int, default=4, help="Ray Data actors sharing the concurrency (4 x 16 in flight: measured 0.90 of ideal here, 2 x 32: 0.84)")
    ap.add_argument("--latency", type=float, default=0.25, help="server seconds per request")
    ap.add_argument("--requests", type=int, default=None, help="total requests (default: 40 x concurrency)")
    ap.add_argument("--batch", type=int, default=None, help="prompts per Ray Data batch (default: 10 x the requests in flight per actor)")
    args = ap.parse_args()
    n = args.requests or 40 * args.concurrency
    per_actor = -(-args.concurrency // args.actors)
    batch = args.batch or 10 * per_actor

    import ray

    from augscale.llm.raydata import map_batches

    proc, url = start_server(args.latency, "Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 24")
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a stranger's cluster
        started = time.time()
        ds = ray.data.from_items([{"prompt": f"Question {i}: how many clips?"} for i in range(n)],
                                 override_num_blocks=max(1, n // batch))
        gen = {"base_url": url, "model": "fake-model", "api_key_env": "AUGSCALE_BENCH_KEY",
               "concurrency": per_actor, "timeout_s": 30, "max_tokens": 32}
        ds = map_batches(ds, _Step, batch_size=batch, concurrency=args.actors, num_cpus=0.5, fn_constructor_kwargs={
            "generator_kwargs": gen})
        rows = ds.take_all()
        wall = time.time() - started
    finally:
        proc.kill()
        ray.shutdown()
    failed = sum(not r["ok"] for r in rows)
    rate, window = steady_rate(rows)
    took = sorted(r["received"] - r["sent"] for r in rows)  # seconds per request, as the actor saw it
    ideal = args.concurrency / args.latency
    print(f"{len(rows)} requests ({failed} failed), concurrency {args.concurrency} over {args.actors} actor(s), "
          f"latency {args.latency}s: {rate:.1f} requests/s while all actors ran ({window:.2f}s); ideal {ideal:.1f}; "
          f"request time in the actor: mean {1000 * sum(took) / len(took):.1f} ms, p50 {1000 * took[len(took) // 2]:.1f} "
          f"ms, p99 {1000 * took[int(len(took) * 0.99)]:.1f} ms; "
          f"end to end {len(rows) / wall:.1f} requests/s over {wall:.2f}s (Ray start-up included); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", file=sys.stderr)
    print(json.dumps({"concurrency": args.concurrency, "latency_s": args.latency, "requests_per_s": round(rate, 2),
                      "ideal_requests_per_s": round(ideal, 2), "ratio_to_ideal": round(rate / ideal, 4),
                      "end_to_end_requests_per_s": round(len(rows) / wall, 2)}))


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_worker_niceness", "0")
    main()
