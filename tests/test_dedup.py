"""Exact and near-duplicate removal, and test-set decontamination (augment/dedup.py, augment/decontam.py)."""

from __future__ import annotations

import json
import pickle
import random

import pytest

from augscale.augment import dedup
from augscale.augment.decontam import NgramIndex, find_contaminated, ngram_hashes
from augscale.augment.dedup import (
    NearDuplicateIndex,
    exact_duplicates,
    find_near_duplicates,
    normalize_text,
    word_ngrams,
)

# GSM8k train rows 0, 2 and 19 (31, 50 and 51 normalized words). Jaccard values in the
# comments are exact, on 3-gram shingles.
NATALIA = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
           "How many clips did Natalia sell altogether in April and May?")
BETTY = ("Betty is saving money for a new wallet which costs $100. Betty has only half of the money she needs. "
         "Her parents decided to give her $15 for that purpose, and her grandparents twice as much as her parents. "
         "How much more money does Betty need to buy the wallet?")
TIM = ("Tim rides his bike back and forth to work for each of his 5 workdays.  His work is 20 miles away.  "
       "He also goes for a weekend bike ride of 200 miles.    If he can bike at 25 mph how much time does he "
       "spend biking a week?")
BETTY_EDITED = BETTY.replace("new wallet", "new leather wallet")  # one word inserted: 0.90


@pytest.fixture(scope="module")
def gsm8k_questions(data_dir) -> dict[str, list[str]]:
    out = {}
    for split in ("train", "test"):
        with open(data_dir / "gsm8k" / f"{split}.jsonl") as f:
            out[split] = [json.loads(line)["question"] for line in f]
    return out


def test_normalize_keeps_digits_and_drops_punctuation():
    assert normalize_text("Weng earns $12 an hour.  Isn't it 1,000?\n3.5") == "weng earns 12 an hour isnt it 1000 3 5"
    assert normalize_text("Café’s “naïve” ﬁle — ok") == "cafés naïve file ok"
    assert normalize_text(" ,.!? ") == ""


def test_ascii_fast_path_matches_the_regexes():
    rng = random.Random(0)
    for _ in range(5000):
        s = "".join(chr(rng.randrange(128)) if rng.random() < 0.5 else rng.choice("ab1,' ") for _ in range(30))
        s = dedup._THOUSANDS_SEP.sub("", s)
        slow = dedup._NON_WORD.sub(" ", dedup._APOSTROPHES.sub("", s.casefold())).split()
        assert dedup.normalized_words(s) == slow, repr(s)


def test_word_ngrams_short_text_is_one_ngram():
    assert word_ngrams(["a", "b"], 3) == ["a b"]
    assert word_ngrams([], 3) == []
    assert word_ngrams(["a", "b", "c", "d"], 3) == ["a b c", "b c d"]


def test_exact_duplicates_first_kept_and_against():
    ids = ["a", "b", "c", "d"]
    texts = [NATALIA, NATALIA.upper().replace(",", ""), BETTY, "Something else."]
    assert exact_duplicates(ids, texts) == {"b": "a"}
    assert exact_duplicates(ids, texts, [BETTY], against_ids=["seed-2"]) == {"b": "a", "c": "seed-2"}
    assert exact_duplicates(ids, texts, [BETTY]) == {"b": "a", "c": "against[0]"}


def test_near_duplicate_found_for_light_edit_not_for_unrelated():
    index = NearDuplicateIndex()
    index.add("natalia", NATALIA)
    index.add("betty", BETTY)
    edited = BETTY_EDITED
    assert index.query(edited) == ["betty"]
    assert index.query(BETTY.replace("$100", "$100!")) == ["betty"]  # punctuation only
    assert index.query("Tom has 3 apples and buys 5 more. How many apples does he have now?") == []
    assert index.query("") == [] and index.query("?!") == []
    assert index.query_many([edited, NATALIA]) == [["betty"], ["natalia"]]


def test_order_determinism_first_kept():
    assert find_near_duplicates(["x", "y", "z"], [BETTY, NATALIA, BETTY_EDITED]) == {"z": "x"}
    assert find_near_duplicates(["z", "y", "x"], [BETTY_EDITED, NATALIA, BETTY]) == {"x": "z"}


def test_dropped_rows_are_not_indexed():
    # a ~ b (0.65) and b ~ c (0.65) but a !~ c (0.41) at threshold 0.55: b is dropped as a
    # duplicate of a, so c is compared with kept rows only and survives.
    words = (BETTY + " " + NATALIA).split()
    a, b, c = (" ".join(words[lo : lo + 40]) for lo in (0, 8, 16))
    assert find_near_duplicates(["a", "b", "c"], [a, b, c], threshold=0.55) == {"b": "a"}


def test_against_originals_mode():
    variant = BETTY.replace("$100", "$120")  # number substitution, one number changed: 0.88
    assert find_near_duplicates(["new-0"], [variant]) == {}
    assert find_near_duplicates(["new-0"], [variant], against_ids=["seed-2"], against_texts=[BETTY]) == {
        "new-0": "seed-2"}
    # all four numbers changed (0.59): a different problem, kept even when checked against its seed
    far = (TIM.replace("5 work", "6 work").replace("20 miles", "25 miles")
           .replace("200", "150").replace("25 mph", "20 mph"))
    assert find_near_duplicates(["new-1"], [far], against_ids=["seed-19"], against_texts=[TIM]) == {}
    with pytest.raises(ValueError, match="both"):
        find_near_duplicates(["new-0"], [variant], against_texts=[BETTY])
    with pytest.raises(ValueError, match="unique"):
        find_near_duplicates(["seed-2"], [variant], against_ids=["seed-2"], against_texts=[BETTY])


def test_add_unique_streams_like_one_call():
    texts = [BETTY, TIM, BETTY_EDITED, TIM.replace("His work is", "His office is")]  # 0.90, 0.88
    ids = [f"r{i}" for i in range(len(texts))]
    index = NearDuplicateIndex()
    streamed = {**index.add_unique(ids[:2], texts[:2]), **index.add_unique(ids[2:], texts[2:])}
    assert streamed == find_near_duplicates(ids, texts)
    assert len(index) == 2


def test_bad_arguments_say_how_to_fix():
    with pytest.raises(ValueError, match="threshold"):
        NearDuplicateIndex(threshold=1.5)
    with pytest.raises(ValueError, match="same length"):
        find_near_duplicates(["a"], [])


def test_no_near_duplicates_among_distinct_gsm8k_questions(gsm8k_questions):
    questions = gsm8k_questions["train"][:1500]  # the train split's one near pair is rows 2483/6691
    assert find_near_duplicates([str(i) for i in range(len(questions))], questions) == {}


def test_ngram_contamination_verbatim_and_one_word_changed(gsm8k_questions):
    test_q = gsm8k_questions["test"]
    long_q = max(test_q[:50], key=lambda q: len(q.split()))
    words = long_q.split()
    middle = len(words) // 2
    edited = " ".join(words[:middle] + ["purple"] + words[middle + 1 :])  # one word changed
    index = NgramIndex(test_q[:50])
    assert index.contaminated(long_q)
    assert index.contaminated(edited)
    assert index.matches(edited)[0] == " ".join(normalize_text(long_q).split()[:13])
    assert not index.contaminated(NATALIA)


def test_short_texts_match_whole():
    index = NgramIndex(["What is 2 + 2?", "How many legs does a spider have?"], n=13)
    assert index.contaminated("what is 2 2")
    assert not index.contaminated("What is 2 + 3?")
    assert not index.contaminated("How many legs does a cat have?")
    assert index.matches("How many legs does a spider have") == ["how many legs does a spider have"]


def test_ngram_index_agrees_with_string_sets():
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(20)]
    for _ in range(200):
        n = rng.randint(1, 6)
        evals = [" ".join(rng.choices(vocab, k=rng.randint(0, 10))) for _ in range(5)]
        queries = [" ".join(rng.choices(vocab, k=rng.randint(0, 10))) for _ in range(20)]
        index = NgramIndex(evals, n=n)
        grams = {g for t in evals for g in word_ngrams(t.split(), n)}
        assert len(index) == len(grams)
        assert index.contaminated_many(queries) == [any(g in grams for g in word_ngrams(q.split(), n)) for q in queries]
        assert [index.matches(q) for q in queries] == [[g for g in word_ngrams(q.split(), n) if g in grams]
                                                       for q in queries]


def test_ngram_hashes_are_stable_across_processes():
    hashes, rows = ngram_hashes([["a", "b", "c"], [], ["d"]], 2)
    assert rows.tolist() == [0, 0, 2]
    # pinned: blake2b word hashes and a fixed polynomial; Python's salted hash() would change per process
    assert hashes.tolist() == [17600707320206839748, 18286342832848802827, 8902676090269836725]
    index = pickle.loads(pickle.dumps(NgramIndex([BETTY])))
    assert index.contaminated(BETTY)


def test_find_contaminated_reasons_and_no_false_positives(gsm8k_questions):
    train, test = gsm8k_questions["train"], gsm8k_questions["test"]
    short_eval = "How many legs do 3 spiders and 2 ants have in total?"  # 12 words: one whole-text n-gram
    short_edit = "How many legs do 3 spiders and 2 ants have in total altogether?"  # 0.91: no shared 13-gram
    eval_texts = test[:200] + [short_eval]
    ids = ["verbatim", "near", "clean-0", "clean-1", "clean-2"]
    texts = [test[3], short_edit, train[0], train[1], train[2]]
    assert find_contaminated(ids, texts, eval_texts) == {"verbatim": "ngram_overlap", "near": "near_duplicate_of_test"}
    assert find_contaminated(ids, texts, eval_texts, near_threshold=None) == {"verbatim": "ngram_overlap"}
    # real train questions: no overlap with the test split (train rows 20, 406, 1314, 5162 do overlap it)
    assert find_contaminated([str(i) for i in range(400)], train[2000:2400], test) == {}
