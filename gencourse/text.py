"""Text for lesson 09: a corpus that ships with Python, characters as tokens, and an n-gram baseline.

**Corpus.** :func:`corpus` is the Python reference documentation that every CPython carries as
``pydoc_data.topics.topics`` (what ``help("assert")`` prints): English prose with code, about 465,000
characters, under the PSF License Agreement for Python, and on every machine without a download.
:func:`splits` removes its repeated paragraphs and deals it, in chunks of contiguous text, into about 90% / 5% /
5% train / validation / test pieces.

**Tokens.** :class:`CharTokenizer` maps each of the ``V`` (about 100) characters to an integer. A model
of text is a chain of next-character distributions, scored in bits per character:

    bits/char = -(1/N) sum_{i=0}^{N-1} log2 p(x_i | x_{<i})

**Baseline.** :class:`KneserNey` is an interpolated Kneser-Ney n-gram model (Chen & Goodman 1998): the
next character depends on the last ``n - 1`` only, and every order ``k`` mixes its discounted counts
with order ``k - 1``, down to the uniform distribution over the vocabulary (eq. KN below). It is the
classic count-based language model and the baseline the GPT of lesson 09 has to beat;
:func:`bracket_positions` finds where it cannot see enough: a closing bracket whose opener lies
farther back than ``n - 1`` characters.

    text = corpus(); tok = CharTokenizer(text); train, val, test = (tok.encode(s) for s in splits(text))
    lm = KneserNey(max_order=10).fit(train, tok.vocab_size)          # about half a second
    order, val_bits = lm.choose_order(val)                            # {order: val bits/char}
    lm.nll(test, order)                                               # test bits/char
    tok.decode(lm.sample(300, order, seed=0))
"""
from __future__ import annotations

import functools
import math
import sys
from typing import NamedTuple

import numpy as np
import torch

SPLIT_CHUNK = 5000    # characters per chunk, cut at paragraph breaks
SPLIT_PERIOD = 20     # of every 20 chunks: the 10th to validation, the 20th to test, the rest to training
DEDUP_MIN_LENGTH = 40  # shorter paragraphs (headings, "Note:") may repeat
PAIRS = ("()", "[]", "{}")
PARAGRAPH_BREAK = "\n\n"


# ----------------------------------------------------------------------------------------------
# The corpus and its splits
# ----------------------------------------------------------------------------------------------

def _topics() -> dict:
    try:
        from pydoc_data.topics import topics
    except ImportError as err:  # a few stripped-down Python builds leave pydoc_data out
        raise RuntimeError("this Python has no pydoc_data.topics (the reference documentation that "
                           "CPython ships); use a standard CPython build") from err
    return topics


@functools.lru_cache(maxsize=1)
def corpus() -> str:
    """The Python reference documentation shipped with CPython (``pydoc_data.topics.topics``, a dict
    topic -> text), its topics joined in sorted key order with a blank line, so that the same Python
    always gives the same string. About 465,000 characters; other Python versions differ slightly."""
    topics = _topics()
    return PARAGRAPH_BREAK.join(topics[k] for k in sorted(topics))


def corpus_info() -> str:
    """One line: where :func:`corpus` comes from, the Python version, its licence and its size."""
    v = sys.version_info
    return (f"Python {v.major}.{v.minor}.{v.micro} reference documentation (pydoc_data.topics.topics, "
            f"{len(_topics())} topics in sorted order), PSF License Agreement for Python, "
            f"{len(corpus()):,} characters")


def deduplicate(text: str, *, min_length: int = DEDUP_MIN_LENGTH) -> str:
    """``text`` without the paragraphs (pieces between blank lines, at least ``min_length`` characters once
    stripped) that already appeared earlier in it, verbatim. The manual restates itself: the topic on ``try``
    repeats a section of the topic on compound statements, and about a fifth of its characters are such repeats.
    A repeat in the training text and the held-out text would score memory, not modelling."""
    seen, kept = set(), []
    for paragraph in text.split(PARAGRAPH_BREAK):
        key = paragraph.strip()
        if len(key) >= min_length and key in seen:
            continue
        seen.add(key)
        kept.append(paragraph)
    return PARAGRAPH_BREAK.join(kept)


def splits(text: str) -> tuple[str, str, str]:
    """(train, val, test) from ``text``: :func:`deduplicate` it, cut it at paragraph breaks into chunks of about
    ``SPLIT_CHUNK`` characters, and of every ``SPLIT_PERIOD`` consecutive chunks give the middle one to
    validation, the last one to test and the rest to training (about 90/5/5; each split's chunks are joined in
    order with a blank line).

    Each chunk is contiguous text, so a model predicts text that follows on from itself; interleaving makes the
    validation and test texts the same mix of topics, so that neither is easier, and deduplication keeps
    paragraphs of the training text out of both (verbatim 32-character repeats of the training text: about 3% of
    each, printed in lesson 09)."""
    if not isinstance(text, str) or len(text) < 20:
        raise ValueError(f"expected a str of at least 20 characters, got "
                         f"{type(text).__name__ if not isinstance(text, str) else f'{len(text)} characters'}")
    chunks, current, size = [], [], 0
    for paragraph in deduplicate(text).split(PARAGRAPH_BREAK):
        current.append(paragraph)
        size += len(paragraph) + len(PARAGRAPH_BREAK)
        if size >= SPLIT_CHUNK:
            chunks.append(PARAGRAPH_BREAK.join(current))
            current, size = [], 0
    if current:
        chunks.append(PARAGRAPH_BREAK.join(current))
    val_slot, test_slot = SPLIT_PERIOD // 2 - 1, SPLIT_PERIOD - 1
    parts = {"train": [], "val": [], "test": []}
    for i, chunk in enumerate(chunks):
        slot = i % SPLIT_PERIOD
        parts["val" if slot == val_slot else "test" if slot == test_slot else "train"].append(chunk)
    if not parts["val"] or not parts["test"]:
        raise ValueError(f"text too short to split: {len(chunks)} chunks of about {SPLIT_CHUNK} characters, "
                         f"need at least {SPLIT_PERIOD} (pass a longer text)")
    return tuple(PARAGRAPH_BREAK.join(parts[k]) for k in ("train", "val", "test"))


# ----------------------------------------------------------------------------------------------
# Characters as tokens
# ----------------------------------------------------------------------------------------------

class CharTokenizer:
    """Characters <-> integers. The vocabulary is the sorted set of characters of ``text`` (pass the
    full corpus, so that no split meets a character the tokenizer lacks).

    ``itos[i]`` is character ``i``, ``stoi[c]`` its id; ``encode(s) -> LongTensor (len(s),)``,
    ``decode(ids) -> str``."""

    def __init__(self, text: str):
        if not isinstance(text, str) or not text:
            raise ValueError(f"expected a non-empty str to build the vocabulary from, got {text!r:.40}")
        self.itos = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.itos)}
        # sorted characters have sorted code points: encode by binary search, vectorized
        self._codes = np.array([ord(c) for c in self.itos], dtype=np.int64)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, s: str) -> torch.Tensor:
        """``s`` -> LongTensor ``(len(s),)`` of ids; a character outside the vocabulary -> ValueError."""
        if not isinstance(s, str):
            raise ValueError(f"expected a str, got {type(s).__name__}")
        codes = np.frombuffer(s.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        ids = np.minimum(np.searchsorted(self._codes, codes), len(self._codes) - 1)
        unknown = self._codes[ids] != codes
        if unknown.any():
            chars = sorted({chr(c) for c in codes[unknown]})
            raise ValueError(f"character(s) {chars[:10]!r} not in the vocabulary of {self.vocab_size} "
                             f"characters (build the tokenizer on the full corpus)")
        return torch.from_numpy(ids)

    def decode(self, ids) -> str:
        """ids (a 1-D integer tensor, array or list) -> str."""
        x = _as_ids(ids, self.vocab_size, "ids")
        return "".join(self.itos[i] for i in x.tolist())


def _as_ids(ids, vocab_size: int, name: str) -> np.ndarray:
    """Check a 1-D sequence of token ids in [0, vocab_size) and return it as an int64 numpy array."""
    if isinstance(ids, torch.Tensor):
        x = ids.detach().cpu().numpy()
    else:
        x = np.asarray(ids)
    if x.ndim != 1 or not (np.issubdtype(x.dtype, np.integer) or x.size == 0):
        raise ValueError(f"expected {name} as a 1-D integer tensor of token ids, got shape "
                         f"{tuple(x.shape)} and dtype {x.dtype}")
    x = x.astype(np.int64)
    if x.size and (x.min() < 0 or x.max() >= vocab_size):
        raise ValueError(f"expected {name} in [0, {vocab_size}), got values in [{x.min()}, {x.max()}]")
    return x


# ----------------------------------------------------------------------------------------------
# Interpolated Kneser-Ney
# ----------------------------------------------------------------------------------------------

def _gather(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """values[index] as float64, 0 where index is -1 (an n-gram or context never seen in training)."""
    out = np.zeros(len(index))
    ok = index >= 0
    out[ok] = values[index[ok]]
    return out


def _count_of_counts_discount(counts: np.ndarray) -> float:
    """D = n1 / (n1 + 2 n2), n_r = number of n-grams seen exactly r times (Ney et al. 1994). Where
    the data has no singletons the estimate is 0, and unseen characters would get no probability:
    fall back to 0.5 there."""
    n1, n2 = int(np.sum(counts == 1)), int(np.sum(counts == 2))
    return n1 / (n1 + 2 * n2) if n1 > 0 else 0.5


class KneserNey:
    """Interpolated Kneser-Ney character n-gram model (Chen & Goodman 1998, sec. 3), one absolute
    discount per order.

    An order-``n`` model predicts ``x_i`` from its context ``h``, the ``n - 1`` characters before it
    (fewer at the start of a sequence: the first positions use what exists). With ``h'`` = ``h``
    without its first character, every order ``k = 1..n`` interpolates with the order below (KN):

        p_k(w | h) = max(c_k(h w) - D_k, 0) / c_k(h .)  +  D_k N1+(h .) / c_k(h .) * p_{k-1}(w | h')
        p_0(w)     = 1 / V                                  (uniform: every probability is > 0)

    where ``c_k(h .) = sum_w c_k(h w)`` and ``N1+(h .)`` is the number of characters ``w`` with
    ``c_k(h w) > 0``; a context never seen (``c_k(h .) = 0``) leaves ``p_k = p_{k-1}``.
    The top order ``n`` counts occurrences, ``c_n = c``. Every lower order uses *continuation* counts
    ``c_k(g) = N1+(. g)``, the number of distinct characters seen before ``g``: a lower order only
    speaks where the longer context was not seen, so it should ask in how many contexts ``w`` appears,
    not how often. ``D_k = n1 / (n1 + 2 n2)`` from the count-of-counts of the counts that order uses
    (raw for the top order, continuation below), or the fixed ``discount`` if given (``0`` gives
    maximum likelihood, where unseen characters get probability 0: for checks only).

    One :meth:`fit` up to ``max_order`` serves every order ``1..max_order`` (order ``n`` reads the raw
    counts of order ``n`` and the continuation counts below it). Storage: the ``k``-grams of the
    training ids get dense numbers order by order, a ``k``-gram being the pair (number of its first
    ``k - 1`` characters, last character); sorted integer keys then give vectorized look-ups.
    """

    def __init__(self, max_order: int = 10, *, discount: float | None = None):
        if not isinstance(max_order, (int, np.integer)) or isinstance(max_order, bool) or max_order < 1:
            raise ValueError(f"expected max_order an int >= 1, got {max_order!r}")
        if discount is not None and not (isinstance(discount, (int, float)) and 0.0 <= discount <= 1.0):
            raise ValueError(f"expected discount None (estimate per order) or a number in [0, 1], "
                             f"got {discount!r}")
        self.max_order = int(max_order)
        self.discount = None if discount is None else float(discount)
        self.vocab_size = None

    # -- fitting ---------------------------------------------------------------------------------

    def fit(self, train_ids, vocab_size: int) -> "KneserNey":
        """Count every ``k``-gram (``k = 1..max_order``) of ``train_ids`` (1-D LongTensor of ids in
        ``[0, vocab_size)``). Returns ``self``."""
        if not isinstance(vocab_size, (int, np.integer)) or isinstance(vocab_size, bool) or vocab_size < 1:
            raise ValueError(f"expected vocab_size an int >= 1, got {vocab_size!r}")
        x = _as_ids(train_ids, vocab_size, "train_ids")
        if len(x) < 2:
            raise ValueError(f"expected train_ids with at least 2 tokens, got {len(x)}")
        V, N, K = int(vocab_size), len(x), self.max_order
        self.vocab_size = V
        # Per order k (index k; index 0 unused): sorted keys (context number * V + last character),
        # raw counts and continuation counts of the k-grams, and per context: c_k(h .), N1+(h .).
        self._keys, self._raw, self._cont = [None] * (K + 1), [None] * (K + 1), [None] * (K + 1)
        self._raw_ctx, self._cont_ctx = [None] * (K + 1), [None] * (K + 1)
        self._d_raw, self._d_cont = [0.0] * (K + 1), [0.0] * (K + 1)
        n_grams = [1]  # how many distinct k-grams; one 0-gram, the empty context
        prev_pos = None  # the number of the (k-1)-gram ending at each position of x
        for k in range(1, K + 1):
            ends = np.arange(k - 1, N)  # the k-gram x[i-k+1 .. i] ends at i
            ctx = np.zeros(len(ends), np.int64) if k == 1 else prev_pos[ends - 1]
            keys, first, inverse, counts = np.unique(ctx * V + x[ends], return_index=True,
                                                     return_inverse=True, return_counts=True)
            self._keys[k], self._raw[k] = keys, counts.astype(np.float64)
            self._raw_ctx[k] = self._context_sums(keys // V, self._raw[k], n_grams[k - 1])
            self._d_raw[k] = self._discount(counts)
            if k > 1:
                # N1+(. g) for the (k-1)-gram g: the number of distinct k-grams whose last k-1
                # characters are g, i.e. whose occurrence (any one, here the first) ends where g does
                suffix = prev_pos[ends[first]]
                cont = np.bincount(suffix, minlength=n_grams[k - 1]).astype(np.float64)
                self._cont[k - 1] = cont
                self._cont_ctx[k - 1] = self._context_sums(self._keys[k - 1] // V, cont, n_grams[k - 2])
                self._d_cont[k - 1] = self._discount(cont[cont > 0])
            pos = np.full(N, -1, np.int64)
            pos[ends] = inverse.reshape(-1)
            prev_pos = pos
            n_grams.append(len(keys))
        return self

    def _discount(self, counts: np.ndarray) -> float:
        return self.discount if self.discount is not None else _count_of_counts_discount(counts)

    @staticmethod
    def _context_sums(ctx: np.ndarray, counts: np.ndarray, n_ctx: int) -> tuple[np.ndarray, np.ndarray]:
        """Per context number: (c(h .) = sum of the counts, N1+(h .) = number of characters with count > 0)."""
        total = np.bincount(ctx, weights=counts, minlength=n_ctx)
        types = np.bincount(ctx, weights=(counts > 0).astype(np.float64), minlength=n_ctx)
        return total, types

    # -- look-ups --------------------------------------------------------------------------------

    def _check_fitted(self):
        if self.vocab_size is None:
            raise ValueError("the model is not fitted: call fit(train_ids, vocab_size) first")

    def _check_order(self, order) -> int:
        self._check_fitted()
        if not isinstance(order, (int, np.integer)) or isinstance(order, bool) or not 1 <= order <= self.max_order:
            raise ValueError(f"expected order an int in [1, {self.max_order}] (max_order), got {order!r}")
        return int(order)

    def _gram_numbers(self, x: np.ndarray, upto: int) -> list[np.ndarray]:
        """numbers[k][i] = number of the training k-gram x[i-k+1 .. i], or -1 where it was never seen
        (or i < k - 1). numbers[0] is 0 everywhere (the empty context)."""
        L, V = len(x), self.vocab_size
        numbers = [np.zeros(L, np.int64)]
        for k in range(1, upto + 1):
            ctx = np.zeros(L, np.int64) if k == 1 else np.concatenate([[-1], numbers[k - 1][:-1]])
            out = np.full(L, -1, np.int64)
            ok = np.flatnonzero(ctx >= 0)
            keys, query = self._keys[k], ctx[ok] * V + x[ok]
            if len(keys) == 0:  # training text shorter than k
                numbers.append(out)
                continue
            j = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
            hit = keys[j] == query
            out[ok[hit]] = j[hit]
            numbers.append(out)
        return numbers

    def _level(self, k: int, top: bool, ctx: np.ndarray, gram: np.ndarray, lower: np.ndarray) -> np.ndarray:
        """Eq. KN at order k for many positions at once: ``ctx`` the context numbers (-1 unseen),
        ``gram`` the k-gram numbers (-1 unseen), ``lower`` = p_{k-1}; raw counts if ``top``."""
        counts, (total, types), D = ((self._raw[k], self._raw_ctx[k], self._d_raw[k]) if top else
                                     (self._cont[k], self._cont_ctx[k], self._d_cont[k]))
        p = lower.copy()
        T = _gather(total, ctx)
        seen = T > 0
        c = _gather(counts, gram)
        p[seen] = (np.maximum(c[seen] - D, 0.0) + D * types[ctx[seen]] * lower[seen]) / T[seen]
        return p

    def _log_probs_all_orders(self, x: np.ndarray, upto: int) -> np.ndarray:
        """(upto, L) natural-log probabilities: row n-1 holds log p_n(x_i | context) of order n."""
        V, L = self.vocab_size, len(x)
        numbers = self._gram_numbers(x, upto)
        out = np.empty((upto, L))
        lower = np.full(L, 1.0 / V)  # p_0, uniform
        for k in range(1, upto + 1):
            ctx = numbers[k - 1] if k == 1 else np.concatenate([[-1], numbers[k - 1][:-1]])
            out[k - 1] = np.log(self._level(k, True, ctx, numbers[k], lower))
            # positions i < k - 1 have only i characters before them: order k is order i + 1 there
            if k > 1:
                out[k - 1, :k - 1] = out[k - 2, :k - 1]
            if k < upto:
                lower = self._level(k, False, ctx, numbers[k], lower)
        return out

    # -- the public API --------------------------------------------------------------------------

    def token_log_probs(self, ids, order: int) -> torch.Tensor:
        """``ids: (N,)`` -> ``(N,)`` float64: ``log p(x_i | x_{i-order+1..i-1})`` in nats, of each actual
        token given the (up to) ``order - 1`` tokens before it in ``ids``. One vectorized pass."""
        order = self._check_order(order)
        x = _as_ids(ids, self.vocab_size, "ids")
        if len(x) == 0:
            return torch.zeros(0, dtype=torch.float64)
        return torch.from_numpy(self._log_probs_all_orders(x, order)[order - 1].copy())

    def nll(self, ids, order: int) -> float:
        """Mean bits per character of ``ids`` under the order-``order`` model:
        ``-(1/N) sum_i log2 p(x_i | context)``."""
        lp = self.token_log_probs(ids, order)
        if len(lp) == 0:
            raise ValueError("expected at least one token to score, got an empty sequence")
        return float(-lp.mean() / math.log(2))

    def choose_order(self, val_ids, orders=range(1, 11)) -> tuple[int, dict]:
        """Validation bits/char at every order in ``orders`` (one pass for all of them) ->
        (the order with the fewest bits, {order: bits/char}). Select on validation, never on test."""
        self._check_fitted()
        orders = [self._check_order(n) for n in orders]
        if not orders:
            raise ValueError("expected at least one order to compare")
        x = _as_ids(val_ids, self.vocab_size, "val_ids")
        if len(x) == 0:
            raise ValueError("expected non-empty val_ids")
        bits = -self._log_probs_all_orders(x, max(orders)).mean(axis=1) / math.log(2)
        table = {n: float(bits[n - 1]) for n in orders}
        return min(table, key=lambda n: (table[n], n)), table

    def _next_probs(self, context: np.ndarray, order: int) -> np.ndarray:
        V = self.vocab_size
        h = context[max(0, len(context) - (order - 1)):]  # the last order - 1 characters, or all there are
        numbers = self._gram_numbers(h, len(h)) if len(h) else [np.zeros(0, np.int64)]
        p = np.full(V, 1.0 / V)
        top = len(h) + 1
        for k in range(1, top + 1):
            # the context of order k: the last k - 1 characters of h
            ctx = 0 if k == 1 else int(numbers[k - 1][-1])
            if ctx < 0:  # never seen: no longer context was seen either
                break
            counts, (total, types), D = ((self._raw[k], self._raw_ctx[k], self._d_raw[k]) if k == top else
                                         (self._cont[k], self._cont_ctx[k], self._d_cont[k]))
            if total[ctx] <= 0:
                continue
            keys = self._keys[k]
            lo, hi = np.searchsorted(keys, [ctx * V, ctx * V + V])
            c = np.zeros(V)
            c[keys[lo:hi] - ctx * V] = counts[lo:hi]
            p = (np.maximum(c - D, 0.0) + D * types[ctx] * p) / total[ctx]
        return p

    def next_probs(self, context_ids, order: int) -> torch.Tensor:
        """The next-character distribution after ``context_ids`` (1-D, any length; the last
        ``order - 1`` are used) -> ``(vocab_size,)`` float64, summing to 1, every entry > 0
        (unless a fixed ``discount=0`` was asked for)."""
        order = self._check_order(order)
        x = _as_ids(context_ids, self.vocab_size, "context_ids")
        return torch.from_numpy(self._next_probs(x, order))

    def sample(self, n_chars: int, order: int, *, seed: int, prompt_ids=None) -> torch.Tensor:
        """Draw ``n_chars`` characters one at a time from the order-``order`` model (temperature 1)
        -> LongTensor ``(len(prompt) + n_chars,)``, the prompt kept (as ``GPT.generate`` does)."""
        order = self._check_order(order)
        if not isinstance(n_chars, (int, np.integer)) or isinstance(n_chars, bool) or n_chars < 0:
            raise ValueError(f"expected n_chars an int >= 0, got {n_chars!r}")
        prompt = (np.zeros(0, np.int64) if prompt_ids is None
                  else _as_ids(prompt_ids, self.vocab_size, "prompt_ids"))
        rng = np.random.default_rng(seed)
        seq = prompt.tolist()
        for _ in range(int(n_chars)):
            p = self._next_probs(np.asarray(seq[max(0, len(seq) - (order - 1)):], np.int64), order)
            seq.append(int(rng.choice(self.vocab_size, p=p)))
        return torch.tensor(seq, dtype=torch.long)


# ----------------------------------------------------------------------------------------------
# Long-range structure: brackets
# ----------------------------------------------------------------------------------------------

class BracketPositions(NamedTuple):
    positions: torch.Tensor  # (M,) int64: index of each matched closing bracket in the text
    distances: torch.Tensor  # (M,) int64: its index minus its opener's index (>= 1)


def _check_pairs(pairs) -> tuple[str, ...]:
    if isinstance(pairs, str) or not all(isinstance(p, str) and len(p) == 2 and p[0] != p[1] for p in pairs):
        raise ValueError(f"expected pairs as a sequence of 2-character strings such as ('()', '[]'), got {pairs!r}")
    chars = "".join(pairs)
    if len(set(chars)) != len(chars):
        raise ValueError(f"expected each bracket character in one pair only, got {pairs!r}")
    return tuple(pairs)


def _scan_brackets(text: str, pairs) -> tuple[list, list, int, int]:
    """One pass with a stack of open brackets, emptied at every paragraph break (a blank line):
    (matched closer positions, their distances, unmatched closers, openers left open)."""
    if not isinstance(text, str):
        raise ValueError(f"expected a str, got {type(text).__name__}")
    pairs = _check_pairs(pairs)
    opener_of = {p[1]: p[0] for p in pairs}
    openers = {p[0] for p in pairs}
    stack = []  # (opener character, its index), innermost last
    positions, distances = [], []
    unmatched_close = left_open = 0
    prev = ""
    for i, ch in enumerate(text):
        if ch == "\n" and prev == "\n":  # paragraph break: whatever is still open stays unclosed
            left_open += len(stack)
            stack.clear()
        elif ch in openers:
            stack.append((ch, i))
        elif ch in opener_of:
            if stack and stack[-1][0] == opener_of[ch]:
                positions.append(i)
                distances.append(i - stack.pop()[1])
            else:  # nothing open, or the innermost open bracket is of another kind: "(]"
                unmatched_close += 1
        prev = ch
    left_open += len(stack)
    return positions, distances, unmatched_close, left_open


def bracket_positions(text: str, pairs=PAIRS) -> BracketPositions:
    """Every closing bracket of ``text`` that closes an opener of its kind -> (positions, distances),
    two int64 tensors ``(M,)``: the closer's index in ``text`` and its distance in characters to its
    opener (``distances = positions - opener index``, so ``"(a)"`` gives distance 2).

    Brackets must nest: a closer matches the innermost bracket still open, if that is its own kind
    (in ``"([)]"`` the ``)`` matches nothing, the ``]`` closes the ``[`` and the ``(`` stays open). The stack of open brackets is emptied at a
    paragraph break (two newlines in a row), so a stray ``(`` in one paragraph never pairs with a
    ``)`` pages later; in :func:`corpus` (Python 3.11) all but 2 of its 3,248 closers match this way.
    An order-``n`` model sees the opener exactly when ``distance <= n - 1``."""
    positions, distances, _, _ = _scan_brackets(text, pairs)
    return BracketPositions(torch.tensor(positions, dtype=torch.long), torch.tensor(distances, dtype=torch.long))


def unbalanced_share(text: str, pairs=PAIRS) -> float:
    """The share of bracket events in ``text`` that are unbalanced:

        (unmatched closers + unclosed openers) / (matched pairs + unmatched closers + unclosed openers)

    with the matching of :func:`bracket_positions` (brackets nest; the stack is emptied at each
    paragraph break): an *unmatched closer* finds no open bracket in its paragraph, or the innermost
    one is of another kind (it is then counted and the opener stays open); an *unclosed opener* is
    still open when its paragraph (or the text) ends. 0 = every bracket balanced, 1 = none;
    real text is near 0, not at 0 (smileys, "1)" list items). NaN for a text with no brackets."""
    positions, _, unmatched_close, left_open = _scan_brackets(text, pairs)
    events = len(positions) + unmatched_close + left_open
    return (unmatched_close + left_open) / events if events else float("nan")


# ----------------------------------------------------------------------------------------------
# Optional: subword tokens (byte-pair encoding)
# ----------------------------------------------------------------------------------------------

EXAMPLE_SENTENCE = "The return statement leaves the current function call with the expression list."


def bpe_example(train_text: str, vocab_sizes=(256, 512, 1024), *, val_text: str | None = None,
                sentence: str = EXAMPLE_SENTENCE) -> dict:
    """Train a byte-pair encoding (Sennrich et al. 2016) on ``train_text`` for each vocabulary size
    with HuggingFace ``tokenizers`` (offline, a second or two each) -> {vocab_size: {"chars_per_token":
    characters of ``val_text`` (default: the val split of :func:`corpus`) per token, "tokens": the
    tokens of ``sentence``}}. BPE starts from the
    characters and repeatedly merges the most frequent adjacent pair: larger vocabularies mean fewer,
    longer tokens, so a model with the same context length sees farther back."""
    try:
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    except ImportError as err:
        raise RuntimeError("bpe_example needs the tokenizers package: pip install tokenizers") from err
    if val_text is None:
        val_text = splits(corpus())[1]
    for name, s in (("train_text", train_text), ("val_text", val_text), ("sentence", sentence)):
        if not isinstance(s, str) or not s:
            raise ValueError(f"expected {name} a non-empty str, got {s!r:.40}")
    if not vocab_sizes or not all(isinstance(v, int) and v >= 2 for v in vocab_sizes):
        raise ValueError(f"expected vocab_sizes a non-empty sequence of ints >= 2, got {vocab_sizes!r}")
    alphabet = sorted(set(train_text) | set(val_text) | set(sentence))
    paragraphs = train_text.split(PARAGRAPH_BREAK)
    out = {}
    for size in vocab_sizes:
        tok = Tokenizer(models.BPE())
        # split on whitespace, keeping the space with the word that follows it (as GPT-2 does), so
        # that tokens never span two words and the text is recovered by joining the tokens
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=max(size, len(alphabet) + 1), initial_alphabet=alphabet,
                                      show_progress=False, special_tokens=[])
        tok.train_from_iterator(paragraphs, trainer=trainer)
        out[size] = {"chars_per_token": len(val_text) / len(tok.encode(val_text).ids),
                     "tokens": tok.encode(sentence).tokens}
    return out
