"""gencourse.text against independent computations: a brute-force Kneser-Ney written from the
formula with dictionaries, maximum-likelihood counts, hand-made bracket strings."""
import math
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from gencourse import text


# ----------------------------------------------------------------------------------------------
# Corpus, splits, tokenizer
# ----------------------------------------------------------------------------------------------

def test_corpus_is_the_sorted_pydoc_topics():
    from pydoc_data.topics import topics
    s = text.corpus()
    assert s == "\n\n".join(topics[k] for k in sorted(topics))
    assert len(s) > 300_000
    info = text.corpus_info()
    assert "PSF License Agreement" in info and f"{sys.version_info.major}.{sys.version_info.minor}" in info
    assert f"{len(s):,}" in info and "\n" not in info


def _paragraphs(n, length=995, seed=0):
    """``n`` distinct paragraphs of ``length`` letters (with the blank line between them, 997 characters each)."""
    rng = np.random.default_rng(seed)
    return ["".join(chr(97 + c) for c in rng.integers(0, 26, length)) for _ in range(n)]


def test_deduplicate_keeps_first_occurrences_and_short_paragraphs():
    a, b, c = (p[:50] for p in _paragraphs(3))
    s = "\n\n".join([a, "Note:", b, a, "Note:", c, b + " ", a])
    assert text.deduplicate(s) == "\n\n".join([a, "Note:", b, "Note:", c])
    assert text.deduplicate(a) == a


def test_splits_deal_chunks_of_paragraphs_to_train_val_and_test():
    paragraphs = _paragraphs(200)  # 997 characters each: a chunk closes after 6 of them, 34 chunks
    train, val, test = text.splits("\n\n".join(paragraphs))
    pieces = {name: part.split("\n\n") for name, part in (("train", train), ("val", val), ("test", test))}
    chunks = [paragraphs[i:i + 6] for i in range(0, 200, 6)]
    assert pieces["val"] == chunks[9] + chunks[29]  # the 10th of every 20 chunks
    assert pieces["test"] == chunks[19]               # the 20th
    assert pieces["train"] == [p for i, ch in enumerate(chunks) if i not in (9, 19, 29) for p in ch]
    with pytest.raises(ValueError, match="str"):
        text.splits(["not", "a", "string"])
    with pytest.raises(ValueError, match="at least"):
        text.splits("short")
    with pytest.raises(ValueError, match="too short to split"):
        text.splits("\n\n".join(paragraphs[:60]))


def test_corpus_splits_share_no_paragraph_and_few_verbatim_strings():
    train, val, test = text.splits(text.corpus())
    total = len(train) + len(val) + len(test)
    assert 0.85 < len(train) / total < 0.95 and 0.02 < len(val) / total < 0.08 and 0.02 < len(test) / total < 0.08
    seen = {p.strip() for p in train.split("\n\n") if len(p.strip()) >= 40}
    train_32 = {train[i:i + 32] for i in range(len(train) - 31)}
    for held_out in (val, test):
        assert not any(p.strip() in seen for p in held_out.split("\n\n"))
        assert np.mean([held_out[i:i + 32] in train_32 for i in range(0, len(held_out) - 31, 4)]) < 0.06


def test_char_tokenizer_round_trip_and_unknown_characters():
    tok = text.CharTokenizer("hello, world")
    assert tok.itos == sorted(set("hello, world")) and tok.vocab_size == 9  # " ,dehlorw"
    assert all(tok.stoi[c] == i for i, c in enumerate(tok.itos))
    ids = tok.encode("world, hello")
    assert ids.dtype == torch.long and ids.shape == (12,)
    assert ids.tolist() == [tok.itos.index(c) for c in "world, hello"]
    assert tok.decode(ids) == "world, hello" and tok.decode(ids.tolist()) == "world, hello"
    assert tok.encode("").shape == (0,)
    with pytest.raises(ValueError, match="'z'"):
        tok.encode("hello z")
    with pytest.raises(ValueError, match=r"\[0, 9\)"):
        tok.decode([0, 9])
    with pytest.raises(ValueError, match="str"):
        tok.encode(b"bytes")
    # non-ASCII characters of the corpus (curly quotes, dashes) round-trip too
    tok = text.CharTokenizer("a\u2019b\u2014c\n")
    assert tok.decode(tok.encode("c\u2014a\u2019\n")) == "c\u2014a\u2019\n"


# ----------------------------------------------------------------------------------------------
# Kneser-Ney against a brute-force implementation of the formula
# ----------------------------------------------------------------------------------------------

def _brute_kneser_ney(train, V, n, discount=None):
    """p(w | h) by interpolated Kneser-Ney, straight from the formula: tuples in Counters, every sum
    recomputed by scanning all n-grams. Slow and simple."""
    raw = {k: Counter(tuple(train[i:i + k]) for i in range(len(train) - k + 1)) for k in range(1, n + 1)}
    # N1+(. g): the distinct characters seen before g = the (k+1)-grams ending in g
    cont = {k: Counter(g[1:] for g in raw[k + 1]) for k in range(1, n)}

    def disc(counts):
        if discount is not None:
            return discount
        n1 = sum(1 for c in counts.values() if c == 1)
        n2 = sum(1 for c in counts.values() if c == 2)
        return n1 / (n1 + 2 * n2) if n1 > 0 else 0.5

    def p(w, h, top):
        k = len(h) + 1
        lower = 1.0 / V if k == 1 else p(w, h[1:], top)
        table = raw[k] if k == top else cont[k]
        D = disc(table)
        total = sum(c for g, c in table.items() if g[:-1] == h)
        if total == 0:
            return lower
        types = sum(1 for g, c in table.items() if g[:-1] == h and c > 0)
        return (max(table.get(h + (w,), 0) - D, 0.0) + D * types * lower) / total

    def prob(w, context, order):
        h = tuple(context[max(0, len(context) - (order - 1)):]) if order > 1 else ()
        return p(w, h, len(h) + 1)

    return prob


TINY = "abracadabra, cadabra! a bra; barbara's abacab. dabra abra"


@pytest.fixture(scope="module")
def tiny():
    tok = text.CharTokenizer(TINY + "zq")  # z and q never occur in training: unseen characters
    train = tok.encode(TINY).tolist()
    return tok, train


@pytest.mark.parametrize("discount", [None, 0.75])
def test_kneser_ney_matches_brute_force(tiny, discount):
    tok, train = tiny
    V, n = tok.vocab_size, 4
    lm = text.KneserNey(max_order=n, discount=discount).fit(torch.tensor(train), V)
    brute = _brute_kneser_ney(train, V, n, discount)
    query = tok.encode("cabrazabra, dabq abacad").tolist()  # seen, unseen contexts and characters
    for order in range(1, n + 1):
        lp = lm.token_log_probs(torch.tensor(query), order)
        assert lp.dtype == torch.float64 and lp.shape == (len(query),)
        expected = [math.log(brute(w, query[:i], order)) for i, w in enumerate(query)]
        np.testing.assert_allclose(lp.numpy(), expected, rtol=1e-12, atol=1e-12)
        for i in (0, 1, 2, 3, 7, len(query) - 1):  # full distributions, short contexts included
            got = lm.next_probs(torch.tensor(query[:i]), order).numpy()
            want = [brute(w, query[:i], order) for w in range(V)]
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_zero_discount_is_maximum_likelihood(tiny):
    tok, train = tiny
    lm = text.KneserNey(max_order=2, discount=0.0).fit(torch.tensor(train), tok.vocab_size)
    counts = Counter(train)
    unigram = lm.next_probs(torch.tensor([], dtype=torch.long), 1).numpy()
    np.testing.assert_allclose(unigram, [counts[w] / len(train) for w in range(tok.vocab_size)], atol=1e-15)
    # order 2 after "a": the share of each character among the characters that follow "a"
    a = tok.stoi["a"]
    after = Counter(train[i + 1] for i in range(len(train) - 1) if train[i] == a)
    bigram = lm.next_probs(torch.tensor([a]), 2).numpy()
    np.testing.assert_allclose(bigram, [after[w] / sum(after.values()) for w in range(tok.vocab_size)],
                               atol=1e-15)


@pytest.fixture(scope="module")
def docs():
    train_text, val_text, _ = text.splits(text.corpus())
    train_text, val_text = train_text[:55_000], val_text[:5_000]
    tok = text.CharTokenizer(train_text + val_text)
    train, val = tok.encode(train_text), tok.encode(val_text)
    return tok, train, val, text.KneserNey(max_order=10).fit(train, tok.vocab_size)


def test_kneser_ney_probabilities_sum_to_one_and_are_positive(docs):
    tok, train, val, lm = docs
    g = torch.Generator().manual_seed(0)
    for order in range(1, 11):
        for _ in range(5):
            start = int(torch.randint(0, len(val) - 12, (1,), generator=g))
            length = int(torch.randint(0, 12, (1,), generator=g))
            for context in (val[start:start + length], torch.randint(0, tok.vocab_size, (length,), generator=g)):
                p = lm.next_probs(context, order)
                assert p.dtype == torch.float64 and p.shape == (tok.vocab_size,)
                assert abs(float(p.sum()) - 1.0) < 1e-9 and bool((p > 0).all())


def test_token_log_probs_agree_with_next_probs_and_nll(docs):
    tok, train, val, lm = docs
    x = val[:300]
    for order in (1, 3, 10):
        lp = lm.token_log_probs(x, order)
        for i in (0, 1, 5, 9, 10, 150, 299):
            assert math.isclose(float(lp[i]), math.log(float(lm.next_probs(x[:i], order)[x[i]])), rel_tol=1e-12)
        assert math.isclose(lm.nll(x, order), float(-lp.mean()) / math.log(2), rel_tol=1e-12)
    best, table = lm.choose_order(val[:2000], orders=range(1, 11))
    assert sorted(table) == list(range(1, 11)) and table[best] == min(table.values())
    assert math.isclose(table[4], lm.nll(val[:2000], 4), rel_tol=1e-12)
    # more context helps at first: order 3 beats order 1 by a wide margin on English
    assert table[3] < table[1] - 1.0


def test_sample_is_seeded_keeps_the_prompt_and_follows_the_unigram(docs):
    tok, train, val, lm = docs
    prompt = tok.encode("The ")
    a = lm.sample(50, 5, seed=1, prompt_ids=prompt)
    assert a.dtype == torch.long and a.shape == (54,) and a[:4].tolist() == prompt.tolist()
    assert torch.equal(a, lm.sample(50, 5, seed=1, prompt_ids=prompt))
    assert not torch.equal(a, lm.sample(50, 5, seed=2, prompt_ids=prompt))
    # order 1: character frequencies of a long sample match the unigram (chi-square-sized tolerance)
    n = 4000
    freq = torch.bincount(lm.sample(n, 1, seed=0), minlength=tok.vocab_size).double() / n
    p = lm.next_probs(torch.tensor([], dtype=torch.long), 1)
    assert float(((freq - p).abs() / (p / n).sqrt()).max()) < 5


def test_training_text_shorter_than_the_order():
    lm = text.KneserNey(max_order=6).fit(torch.tensor([0, 1, 0]), 3)
    for order in range(1, 7):
        p = lm.next_probs(torch.tensor([0, 1, 0, 1, 2]), order)
        assert abs(float(p.sum()) - 1) < 1e-12 and bool((p > 0).all())
        assert bool(torch.isfinite(lm.token_log_probs(torch.tensor([2, 0, 1, 0, 1, 2, 2]), order)).all())


def test_kneser_ney_rejects_bad_input(docs):
    tok, train, val, lm = docs
    with pytest.raises(ValueError, match="max_order"):
        text.KneserNey(max_order=0)
    with pytest.raises(ValueError, match="discount"):
        text.KneserNey(discount=1.5)
    with pytest.raises(ValueError, match="not fitted"):
        text.KneserNey().nll(val, 2)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        text.KneserNey(3).fit(torch.tensor([0, 1, 7]), 5)
    with pytest.raises(ValueError, match="1-D integer"):
        text.KneserNey(3).fit(torch.zeros(2, 3, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="1-D integer"):
        text.KneserNey(3).fit(torch.tensor([0.0, 1.0]), 5)
    with pytest.raises(ValueError, match="order"):
        lm.nll(val, 11)
    with pytest.raises(ValueError, match="order"):
        lm.choose_order(val, orders=range(0, 3))
    with pytest.raises(ValueError, match="empty"):
        lm.nll(val[:0], 2)
    with pytest.raises(ValueError, match="n_chars"):
        lm.sample(-1, 2, seed=0)


# ----------------------------------------------------------------------------------------------
# Brackets
# ----------------------------------------------------------------------------------------------

def test_bracket_positions_on_hand_made_strings():
    pos, dist = text.bracket_positions("f(a[b]{c})")
    assert pos.tolist() == [5, 8, 9] and dist.tolist() == [2, 2, 8]
    assert pos.dtype == torch.long and dist.dtype == torch.long
    pos, dist = text.bracket_positions("() x) (( y ) z")   # the stray ")" and the outer "(" match nothing
    assert pos.tolist() == [1, 11] and dist.tolist() == [1, 4]
    pos, dist = text.bracket_positions("(a\n\nb)")          # no matching across a paragraph break
    assert pos.tolist() == [] and dist.tolist() == []
    pos, dist = text.bracket_positions("(a\nb)")            # a single newline is no break
    assert pos.tolist() == [4] and dist.tolist() == [4]
    pos, dist = text.bracket_positions("([)]")              # brackets nest: ")" is not the innermost's
    assert pos.tolist() == [3] and dist.tolist() == [2]
    pos, dist = text.bracket_positions("<a(b)>", pairs=("<>",))
    assert pos.tolist() == [5] and dist.tolist() == [5]
    with pytest.raises(ValueError, match="2-character"):
        text.bracket_positions("()", pairs="()")
    with pytest.raises(ValueError, match="one pair"):
        text.bracket_positions("()", pairs=("()", "(]"))
    with pytest.raises(ValueError, match="str"):
        text.bracket_positions(None)


def test_unbalanced_share_on_hand_made_strings():
    assert text.unbalanced_share("f(a[b]{c}) and (x)") == 0.0
    assert text.unbalanced_share(")") == 1.0
    assert text.unbalanced_share(")(") == 1.0                   # 1 unmatched closer + 1 left open
    assert text.unbalanced_share("(a) b)") == 0.5               # 1 pair, 1 unmatched closer
    assert text.unbalanced_share("((a)") == 0.5                 # 1 pair, 1 left open
    assert text.unbalanced_share("(a\n\nb)") == 1.0             # open at the paragraph's end, then a stray ")"
    assert text.unbalanced_share("([)]") == 2 / 3               # "[]" a pair, ")" unmatched, "(" left open
    assert math.isnan(text.unbalanced_share("no brackets"))
    with pytest.raises(ValueError, match="str"):
        text.unbalanced_share(42)


def test_real_text_is_nearly_balanced():
    assert text.unbalanced_share(text.corpus()) < 0.01


def test_bpe_example_merges_into_longer_tokens():
    pytest.importorskip("tokenizers")
    train, val, _ = text.splits(text.corpus())
    train, val = train[:40_000], val[:4_000]
    sentence = "The return statement leaves the function."
    out = text.bpe_example(train, vocab_sizes=(128, 512), val_text=val, sentence=sentence)
    assert sorted(out) == [128, 512]
    assert 1.0 < out[128]["chars_per_token"] < out[512]["chars_per_token"]
    for size in out:  # the tokens spell the sentence, "\u2581" standing for a space
        assert "".join(out[size]["tokens"]).replace("\u2581", " ").strip() == sentence
    assert len(out[512]["tokens"]) < len(out[128]["tokens"])
    with pytest.raises(ValueError, match="vocab_sizes"):
        text.bpe_example(train, vocab_sizes=(), val_text=val)
