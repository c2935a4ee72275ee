"""Each LLM strategy against a local OpenAI-compatible server with scripted answers: accepted and
rejected examples, with their reasons. Real HTTP to 127.0.0.1, the real openai client; no Ray
(the pipeline runs are in test_llm_faults.py)."""

from __future__ import annotations

import json
import threading
from collections import Counter

import polars as pl
import pytest

from augscale.augment.blocks import verify_candidate
from augscale.augment.llm.prompts import PROMPTS_DIR, load_template
from augscale.augment.strategies import StrategyError, get_strategy
from augscale.config import GeneratorConfig
from augscale.tasks import get_task
from fake_openai import FakeOpenAI

NATALIA = {"id": "gsm8k-train-00000", "prompt": "Natalia sold clips to 48 of her friends in April, and then she sold "
           "half as many clips in May. How many clips did Natalia sell altogether in April and May?",
           "target": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
           "altogether in April and May.\n#### 72", "answer": "72", "context": None}
WENG = {"id": "gsm8k-train-00001", "prompt": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 "
        "minutes of babysitting. How much did she earn?",
        "target": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = "
        "$<<0.2*50=10>>10.\n#### 10", "answer": "10", "context": None}
BETTY = {"id": "gsm8k-train-00002", "prompt": "Betty is saving money for a new wallet which costs $100. Betty has "
         "only half of the money she needs. Her parents decided to give her $15 for that purpose, and her "
         "grandparents twice as much as her parents. How much more money does Betty need to buy the wallet?",
         "target": "In the beginning, Betty has only 100 / 2 = $<<100/2=50>>50.\nBetty's grandparents gave her 15 * 2 = "
         "$<<15*2=30>>30.\nThis means, Betty needs 100 - 50 - 30 - 15 = $<<100-50-30-15=5>>5 more.\n#### 5",
         "answer": "5", "context": None}
WORDS = {"id": "gsm8k-train-00003", "prompt": "Tom has three apples and eats one. How many are left?",
         "target": "Tom has 3-1=<<3-1=2>>2 apples left.\n#### 2", "answer": "2", "context": None}


def last_field(body: dict, label: str) -> str:
    """The text after the last ``label:`` line of the request's user message."""
    text = body["messages"][-1]["content"]
    return text.rsplit(f"\n{label}:", 1)[1].split("\n")[0].strip()


class Script:
    """A responder: per template (recognized by a phrase) and per key, answers in order
    (the last one repeats). Thread-safe: the fake server answers requests concurrently."""

    def __init__(self):
        self.answers: dict[tuple[str, str], list] = {}
        self.served: Counter = Counter()
        self.lock = threading.Lock()

    def on(self, phrase: str, key: str, *answers):
        self.answers[(phrase, key)] = list(answers)
        return self

    def __call__(self, body: dict):
        text = body["messages"][-1]["content"]
        for (phrase, key), answers in self.answers.items():
            if phrase in text and key in text.rsplit("\n\n", 1)[-1]:
                with self.lock:
                    i = self.served[(phrase, key)]
                    self.served[(phrase, key)] += 1
                return answers[min(i, len(answers) - 1)]
        return "I do not know."


def gen_config(server: FakeOpenAI, **over) -> dict:
    cfg = {"base_url": server.url, "model": "fake-model", "api_key_env": "AUGSCALE_TEST_KEY", "concurrency": 4,
           "timeout_s": 5, "max_attempts": 2, "initial_backoff_s": 0.01, **over}
    return GeneratorConfig(**cfg).model_dump()


def build(name: str, task: str, server: FakeOpenAI, seeds: list[dict], params: dict | None = None, **gen):
    """A strategy as the pipeline builds it: params validated, init_kwargs, resources, __init__."""
    cls = get_strategy(name, task)
    kwargs = cls.init_kwargs(cls.Params.model_validate(params or {}), {"generator": gen_config(server, **gen)})
    resources = cls.build_resources(get_task(task), pl.LazyFrame(seeds), **kwargs)
    return cls(get_task(task), seed=0, resources=resources, **kwargs)


def run(strategy, seeds) -> dict[str, dict]:
    """Candidates as verified block rows (the pipeline's verify step), by id."""
    try:
        cands = strategy.generate(seeds)
    finally:
        strategy.close()
    rows = [verify_candidate(strategy.task_obj, strategy.name, c) for c in cands]
    assert len({r["id"] for r in rows}) == len(rows)
    return {r["id"]: r for r in rows}


def reasons(rows: dict[str, dict]) -> dict[str, str | None]:
    return {rid: r["reject"] for rid, r in rows.items()}


@pytest.fixture
def server():
    with FakeOpenAI() as s:
        yield s


SOLVE = "Solve the grade-school math problem"


def test_answer_augment(server):
    script = (Script()
              .on(SOLVE, "Natalia sold clips to 48",
                  "Answer: In May she sold 48/2 = <<48/2=24>>24 clips.\nIn all she sold 48+24 = <<48+24=72>>72 clips."
                  "\n#### 72",
                  "She sold 48/2 = <<48/2=25>>25 clips in May.\n#### 73",         # wrong annotation
                  "She sold 48/2 = <<48/2=24>>24 clips in May.\n#### 70")         # annotations fine, wrong answer
              .on(SOLVE, "Weng earns", "I'm sorry, but I can't help with that.", "She earned ten dollars.",
                  WENG["target"])                                                  # the seed's own solution
              .on(SOLVE, "Betty is saving",
                  "Betty has 100/2 = <<100/2=50>>50 dollars. Grandparents: 15*2 = <<15*2=30>>30.\n"
                  "She needs 100-50-30-15 = <<100-50-30-15=5>>5 more.\n#### $5.",
                  "Betty has 100/2 = <<100/2=50>>50 dollars. Grandparents: 15*2 = <<15*2=30>>30.\n"
                  "She needs 100-50-30-15 = <<100-50-30-15=5>>5 more.\n#### 5",     # the same solution again
                  "Betty needs 5 more dollars.\n#### 5"))                          # no annotations
    server.reset(script)
    rows = run(build("answer_augment", "gsm8k", server, [NATALIA, WENG, BETTY], {"samples": 3}), [NATALIA, WENG, BETTY])
    assert reasons(rows) == {
        "gsm8k-train-00000~answer_augment-0": None, "gsm8k-train-00000~answer_augment-1": "wrong_annotation",
        "gsm8k-train-00000~answer_augment-2": "wrong_answer",
        "gsm8k-train-00001~answer_augment-0": "refusal", "gsm8k-train-00001~answer_augment-1": "no_final_answer",
        "gsm8k-train-00001~answer_augment-2": "duplicate_solution",
        "gsm8k-train-00002~answer_augment-0": None, "gsm8k-train-00002~answer_augment-1": "duplicate_solution",
        "gsm8k-train-00002~answer_augment-2": "no_annotations"}
    kept = rows["gsm8k-train-00002~answer_augment-0"]
    assert kept["target"].endswith("more.\n#### 5") and kept["answer"] == "5" and kept["prompt"] == BETTY["prompt"]
    meta = json.loads(kept["meta"])["answer_augment"]
    sha = load_template("gsm8k_solve").sha256
    assert meta["prompts"] == {"solve": {"name": "gsm8k_solve", "sha256": sha}} and meta["model"] == "fake-model"
    assert meta["usage"]["prompt_tokens"] > 0 and meta["usage"]["completion_tokens"] > 0
    assert server.request_count == 3  # one request per seed, n=3 samples each


def test_rephrase(server):
    new_q = "In April Natalia sold clips to 48 friends, and in May half as many. How many clips in the two months?"
    script = (Script()
              .on("rephrase math word problems", "Natalia sold clips", f"Rephrased question: {new_q}")
              .on(SOLVE, new_q, "In May: 48/2 = <<48/2=24>>24.\nBoth months: 48+24 = <<48+24=72>>72.\n#### 72")
              .on("rephrase math word problems", "Weng earns", WENG["prompt"])             # not reworded
              .on("rephrase math word problems", "Betty is saving",
                  "Betty wants a $100 wallet and has half of it; her parents give $15 and her grandparents twice "
                  "that. How much is she missing?")
              .on(SOLVE, "Betty wants a $100 wallet", "She has 100/2 = <<100/2=50>>50.\n#### 50"))  # wrong answer
    server.reset(script)
    rows = run(build("rephrase", "gsm8k", server, [], {}), [NATALIA, WENG, BETTY])
    assert reasons(rows) == {"gsm8k-train-00000~rephrase-0": None, "gsm8k-train-00001~rephrase-0": "unchanged",
                             "gsm8k-train-00002~rephrase-0": "wrong_answer"}
    kept = rows["gsm8k-train-00000~rephrase-0"]
    assert kept["prompt"] == new_q and kept["answer"] == "72" and kept["parent_id"] == NATALIA["id"]
    assert set(json.loads(kept["meta"])["rephrase"]["prompts"]) == {"rephrase", "solve"}
    assert server.request_count == 5  # no solve request after a failed rephrase


def test_backward(server):
    script = (Script()
              .on("unknown number x", "Natalia sold clips to x of her friends",
                  "In May she sold x/2, so x + x/2 = 72 and x = 72/1.5 = <<72/1.5=48>>48.\n#### 48")
              .on("unknown number x", "Weng earns", "x = 10/(50/60) = <<10/(50/60)=13>>13\n#### 13"))
    server.reset(script)
    rows = run(build("backward", "gsm8k", server, [], {}), [NATALIA, WENG, WORDS])
    assert reasons(rows) == {"gsm8k-train-00000~backward-0": None, "gsm8k-train-00001~backward-0": "wrong_annotation",
                             "gsm8k-train-00003~backward-0": "no_maskable_number"}
    kept = rows["gsm8k-train-00000~backward-0"]
    assert kept["prompt"].startswith("Natalia sold clips to x of her friends in April")
    assert kept["prompt"].endswith("If we know the answer to the above question is 72, what is the value of "
                                   "unknown variable x?")
    assert kept["answer"] == "48" and json.loads(kept["meta"])["backward"]["masked"] == "48"
    from augscale.augment.llm.gsm8k import backward_question, maskable_numbers

    twelve = next(n for n in maskable_numbers(WENG["prompt"], WENG["target"]) if n.value == 12)
    assert backward_question(WENG["prompt"], twelve, "10").startswith("Weng earns $x an hour for babysitting.")


def test_evolve(server):
    sam = "Sam has 5 boxes with 4 pens in each box. How many pens does Sam have?"
    lea = "Lea reads 12 pages a day for 3 days. How many pages does she read?"
    kim = "Kim buys 3 cakes for $7 each. How much does she pay?"
    good = "Sam has 5*4 = <<5*4=20>>20 pens.\n#### 20"
    script = (Script()
              .on("Write a new grade-school", "Natalia sold clips", f"New problem: {sam}")
              .on(SOLVE, sam, good, good, "Sam has 5*4+1 = <<5*4+1=21>>21 pens.\n#### 21", good)
              .on("Write a new grade-school", "Weng earns", lea)
              .on(SOLVE, lea, "12*3 = <<12*3=36>>36\n#### 36", "12*3 = <<12*3=36>>36\n#### 36",
                  "12+3 = <<12+3=15>>15\n#### 15", "12+3 = <<12+3=15>>15\n#### 15")   # 2 against 2
              .on("Write a new grade-school", "Betty is saving", "Sorry, I cannot write that problem.")
              .on("Write a new grade-school", "Tom has three", kim)
              .on(SOLVE, kim, "3*7 = <<3*7=20>>20\n#### 20", "She pays 21.\n#### 21"))  # no valid solution
    server.reset(script)
    rows = run(build("evolve", "gsm8k", server, [], {"samples": 4, "min_agreement": 0.6}),
               [NATALIA, WENG, BETTY, WORDS])
    assert reasons(rows) == {"gsm8k-train-00000~evolve-0": None, "gsm8k-train-00001~evolve-0": "no_agreement",
                             "gsm8k-train-00002~evolve-0": "refusal", "gsm8k-train-00003~evolve-0": "no_valid_solution"}
    kept = rows["gsm8k-train-00000~evolve-0"]
    assert kept["prompt"] == sam and kept["target"] == good and kept["answer"] == "20"
    meta = json.loads(kept["meta"])["evolve"]
    assert meta["votes"] == {"20": 3, "21": 1} and meta["agreement"] == 0.75 and meta["k"] == 4
    assert meta["operation"] in ("change_numbers", "add_condition", "harder", "new_question")
    assert json.loads(rows["gsm8k-train-00001~evolve-0"]["meta"])["evolve"]["votes"] == {"36": 2, "15": 2}


DIRT_MR = ("inform(name[Dirt: Showdown], release_year[2012], esrb[E 10+ (for Everyone 10 and Older)], "
           "genres[driving/racing, sport], platforms[PlayStation, Xbox, PC], available_on_steam[no], "
           "has_linux_release[no], has_mac_release[no])")
DIRT = {"id": "viggo-train-00000", "prompt": "Dirt: Showdown from 2012 is a sport racing game for the PlayStation, "
        "Xbox, PC rated E 10+ (for Everyone 10 and Older). It's not available on Steam, Linux, or Mac.",
        "target": DIRT_MR, "answer": DIRT_MR, "context": None}
SPELL_MR = "give_opinion(name[SpellForce 3], rating[poor], genres[real-time strategy, role-playing], player_perspective[bird view])"
SPELL = {"id": "viggo-train-00001", "prompt": "I think that SpellForce 3 is one of the worst games I've ever played. "
         "Trying to combine the real-time strategy and role-playing genres just doesn't work, and the bird view "
         "perspective makes it near impossible to play.", "target": SPELL_MR, "answer": SPELL_MR, "context": None}
HALO_MR = "request(release_year[2010], specifier[exciting], genres[shooter])"
HALO = {"id": "viggo-train-00002", "prompt": "Were there any exciting shooter games released in 2010?",
        "target": HALO_MR, "answer": HALO_MR, "context": None}


def test_viggo_rephrase(server):
    script = Script().on("Rewrite the sentence about a video game", "Dirt: Showdown from 2012",
                         "New sentence: Released in 2012, Dirt: Showdown is a sport racing game on PlayStation, Xbox "
                         "and PC, rated E 10+ (for Everyone 10 and Older); it is not on Steam, Linux or Mac.",
                         "Dirt: Showdown is a racing game for PlayStation, Xbox and PC.")   # year, rating, sport lost
    server.reset(script)
    rows = run(build("rephrase", "viggo", server, [], {"samples": 2}), [DIRT])
    assert reasons(rows) == {"viggo-train-00000~rephrase-0": None, "viggo-train-00000~rephrase-1": "missing_value"}
    assert rows["viggo-train-00000~rephrase-0"]["target"] == DIRT_MR
    missing = json.loads(rows["viggo-train-00000~rephrase-1"]["meta"])["rephrase"]["missing"]
    assert missing == ["release_year[2012]", "esrb[E 10+ (for Everyone 10 and Older)]", "genres[sport]"]


def test_viggo_verbalize(server):
    from augscale.tasks.viggo import parse_mr

    def words(body, drop=0):
        mr = parse_mr(last_field(body, "Meaning representation"))
        values = [v for a, v in mr.attributes if v not in ("yes", "no")]
        return "Sentence: " + " and ".join(values[drop:]) + "."

    def respond(body):
        example = body["messages"][-1]["content"].split("Example\n", 1)[1]
        return words(body, drop=1 if "SpellForce" in example.split("\n\n")[0] else 0)

    server.reset(respond)
    seeds = [DIRT, SPELL, HALO]
    rows = run(build("verbalize", "viggo", server, seeds, {}), seeds)
    assert reasons(rows) == {"viggo-train-00000~verbalize-0": None, "viggo-train-00001~verbalize-0": "missing_value",
                             "viggo-train-00002~verbalize-0": None}
    new = parse_mr(rows["viggo-train-00000~verbalize-0"]["target"])
    old = parse_mr(DIRT_MR)
    assert new.function == old.function and new.names == old.names and new.render() != DIRT_MR
    assert json.loads(rows["viggo-train-00001~verbalize-0"]["meta"])["verbalize"]["missing"][0].startswith("name[")


HEAD_Q = {"id": "sql-train-00000", "prompt": "How many heads of the departments are older than 56 ?",
          "context": "CREATE TABLE head (age INTEGER)", "target": "SELECT COUNT(*) FROM head WHERE age > 56",
          "answer": "SELECT COUNT(*) FROM head WHERE age > 56"}


def sql_seed(i: int, prompt: str, context: str, query: str) -> dict:
    return {"id": f"sql-train-{i:05d}", "prompt": prompt, "context": context, "target": query, "answer": query}


def test_sql_rephrase(server):
    server.reset(Script().on("Rewrite the question below", "older than 56",
                             "New question: Count the department heads who are over 56 years old.",
                             "Count the old department heads."))
    rows = run(build("rephrase", "sql", server, [], {"samples": 2}), [HEAD_Q])
    assert reasons(rows) == {"sql-train-00000~rephrase-0": None, "sql-train-00000~rephrase-1": "missing_literal"}
    kept = rows["sql-train-00000~rephrase-0"]
    assert kept["target"] == HEAD_Q["target"] and kept["context"] == HEAD_Q["context"]
    assert json.loads(kept["meta"])["rephrase"]["literals"] == ["56"]


def test_sql_evolve(server):
    ctx2 = "CREATE TABLE head (name VARCHAR, born_state VARCHAR, age VARCHAR)"
    ctx3 = "CREATE TABLE department (creation VARCHAR, name VARCHAR, budget_in_billions VARCHAR)"
    seeds = [HEAD_Q,
             sql_seed(1, "List the name, born state and age of the heads of departments ordered by age.", ctx2,
                      "SELECT name, born_state, age FROM head ORDER BY age"),
             sql_seed(2, "List the creation year, name and budget of each department.", ctx3,
                      "SELECT creation, name, budget_in_billions FROM department"),
             sql_seed(3, "What are the names of the heads born in Alabama?", ctx2,
                      "SELECT name FROM head WHERE born_state = 'Alabama'"),
             sql_seed(4, "Which departments were created in 1900?", ctx3,
                      "SELECT name FROM department WHERE creation = '1900'"),
             sql_seed(5, "How many departments are there?", ctx3, "SELECT COUNT(*) FROM department")]
    ask = "Write a different question about the same tables"
    script = (Script()
              .on(ask, "older than 56", "Question: How many heads are younger than 30?\n"
                  "SQL: ```sql\nSELECT COUNT(*) FROM head WHERE age < 30;\n```")
              .on(ask, "ordered by age", "Question: List every head's name.\nSQL: SELECT name FROM head")
              .on(ask, "creation year, name and budget", "Question: Which departments have a budget over 5?\n"
                  "SQL: SELECT name FROM department WHERE budget > 5")
              .on(ask, "born in Alabama", "Question: Who was born in Alabama and in Ohio?\n"
                  "SQL: SELECT name FROM head WHERE born_state = 'Alabama' AND born_state = 'Ohio'")
              .on(ask, "created in 1900", "Question: Which departments?\nSQL: SELEC name FROM WHERE")
              .on(ask, "How many departments", "Here is a question: how many departments are big?"))
    server.reset(script)
    rows = run(build("evolve", "sql", server, [], {}), seeds)
    assert reasons(rows) == {"sql-train-00000~evolve-0": None, "sql-train-00001~evolve-0": "whole_table",
                             "sql-train-00002~evolve-0": "unknown_column", "sql-train-00003~evolve-0": "empty_result",
                             "sql-train-00004~evolve-0": "unparseable_sql",
                             "sql-train-00005~evolve-0": "unparseable_output"}
    kept = rows["sql-train-00000~evolve-0"]
    assert kept["target"] == "SELECT COUNT(*) FROM head WHERE age < 30"
    assert kept["prompt"] == "How many heads are younger than 30?" and kept["context"] == HEAD_Q["context"]
    assert json.loads(kept["meta"])["evolve"]["result_rows"]


def test_blocks_running_at_once_in_one_actor_count_their_own_usage(server):
    """Two blocks at once in one actor, on the same threads: each block's usage is what its own
    requests spent."""
    server.reset("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 24")
    server.latency = 0.05  # so that the two blocks overlap
    strategy = build("answer_augment", "gsm8k", server, [], {"samples": 1})
    used = {}

    def block(name, seeds):
        strategy.generate(seeds)
        used[name] = strategy.block_usage()

    threads = [threading.Thread(target=block, args=("a", [NATALIA])),
               threading.Thread(target=block, args=("b", [WENG, BETTY, WORDS]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    strategy.close()
    assert used["a"]["requests"] == 1 and used["b"]["requests"] == 3 and server.request_count == 4
    assert used["a"]["tokens"] + used["b"]["tokens"] == strategy.generator.usage()["tokens"]


def test_request_failures_are_rejections(server):
    """A request that fails after every retry is a rejection named after the failure."""
    from fake_openai import Fault

    server.reset("#### 5", faults=lambda n, body: Fault.server_error())
    rows = run(build("answer_augment", "gsm8k", server, [], {"samples": 2}), [NATALIA])
    assert set(reasons(rows).values()) == {"request_server_error"}
    assert server.request_count == 2  # max_attempts


def test_templates_and_config_errors(server, monkeypatch, tmp_path):
    cls = get_strategy("rephrase", "gsm8k")
    params = cls.Params.model_validate({})
    with pytest.raises(StrategyError, match="add a `generator` section"):
        cls.init_kwargs(params, {"generator": None})
    with pytest.raises(StrategyError, match="unknown role"):
        cls.init_kwargs(cls.Params.model_validate({"prompts": {"solv": "x"}}), {"generator": gen_config(server)})
    # endpoint and model from the environment when the config leaves them out
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("AUGSCALE_LLM_MODEL", "env-model")
    kwargs = cls.init_kwargs(params, {"generator": GeneratorConfig().model_dump()})
    assert kwargs["generator"]["base_url"] == server.url and kwargs["generator"]["model"] == "env-model"
    assert kwargs["generator"]["limit_share"] == 1.0  # one actor enforces the whole rate limit
    four = cls.init_kwargs(params, {"generator": GeneratorConfig(actors=2).model_dump(), "concurrency": 4})
    assert four["generator"]["limit_share"] == 0.25 and cls.ray_options(**four)["concurrency"] == 4
    # with a budget, an actor's blocks run one at a time (in order); without, Ray's default overlap
    budgeted = cls.init_kwargs(params, {"generator": GeneratorConfig(budget_usd=1.0).model_dump()})
    assert cls.ray_options(**budgeted)["tasks_per_actor"] == 1 and "tasks_per_actor" not in cls.ray_options(**four)
    monkeypatch.delenv("AUGSCALE_LLM_MODEL")
    with pytest.raises(StrategyError, match="AUGSCALE_LLM_MODEL is empty"):
        cls.init_kwargs(params, {"generator": GeneratorConfig().model_dump()})
    # a template file replacing the default changes the cache key (its hash), not the endpoint URL
    custom = tmp_path / "solve.txt"
    custom.write_text((PROMPTS_DIR / "gsm8k_solve.txt").read_text().replace("step by step", "briefly"))
    base = cls.cache_params(cls.init_kwargs(params, {"generator": gen_config(server)}))
    other = cls.cache_params(cls.init_kwargs(cls.Params.model_validate({"prompts": {"solve": str(custom)}}),
                                             {"generator": gen_config(server)}))
    moved = cls.cache_params(cls.init_kwargs(params, {"generator": gen_config(server, base_url="http://x/v1",
                                                                              concurrency=99)}))
    assert base != other and base == moved
    custom.write_text("Solve {problem}")
    with pytest.raises(StrategyError, match=r"lacks the field\(s\) \['question'\]"):
        cls.init_kwargs(cls.Params.model_validate({"prompts": {"solve": str(custom)}}), {"generator": gen_config(server)})


def test_every_llm_config_resolves_its_endpoint_from_the_environment(monkeypatch):
    """configs/augment/*: the LLM ones build their strategies' kwargs with the endpoint from the
    environment, and hold the key's variable name only."""
    from pathlib import Path

    from augscale.augment.llm.base import LLMStrategy
    from augscale.augment.run import strategy_specs
    from augscale.config import AugmentConfig, load_config

    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("AUGSCALE_LLM_MODEL", "some-model")
    seen = set()
    for path in sorted((Path(__file__).resolve().parents[1] / "configs" / "augment").glob("*.yaml")):
        cfg = load_config(path, AugmentConfig)
        for spec in strategy_specs(cfg):
            if issubclass(spec.cls, LLMStrategy):
                gen = spec.kwargs["generator"]
                assert gen["base_url"] == "http://127.0.0.1:9/v1" and gen["model"] == "some-model"
                assert cfg.generator.api_key_env == "OPENAI_API_KEY"
            seen.add((cfg.task.name, spec.name))
    assert {("gsm8k", "answer_augment"), ("gsm8k", "rephrase"), ("gsm8k", "backward"), ("gsm8k", "evolve"),
            ("gsm8k", "self_sample"), ("viggo", "rephrase"), ("viggo", "verbalize"), ("sql", "rephrase"),
            ("sql", "evolve")} <= seen
