"""data.py - byte vocabulary and synthetic retrieval documents for tome's own model.

Purpose: everything about *what* the model reads, with no dependency on PyTorch (tools/mkdoc.py
imports it too). A training example is laid out exactly as `tome run` lays out a prompt for a
model without a chat template:

    <s> DOCUMENT "\n\n" QUESTION ANSWER </s>

where QUESTION is e.g. "Q: What is the pass key? A:" and ANSWER is " 48213" (a space, then the
value). tome prints what the model generates after the question; the model ends the answer with
</s>. A document is filler text with one or more facts ("The pass key is 48213. Remember it.")
inserted at chosen depths (0 = start, 1 = end), always at a sentence boundary.

Vocabulary (ids): 0 <unk>, 1 <s>, 2 </s>, 3..258 the bytes <0x00>..<0xFF>, 259 "\u2581".
The last one exists because SentencePiece-style tokenizers (llama.cpp's and tome's) replace every
space by U+2581 before looking pieces up; without a "\u2581" piece a space would fall back to the
three bytes E2 96 81. With it, every byte of ASCII text is exactly one token: a space is id 259,
any other byte b is id 3 + b. <0x20> (id 35) exists but is never produced.

Filler sources: generated sentences from a small grammar (seeded), and prose read at run time
from text files on the machine (never copied into the repository), cut into ASCII sentences.

Limits: documents are ASCII (non-ASCII bytes in prose files are dropped) so that byte count ==
token count; facts never collide with filler because filler never contains the fact phrases.
"""
import glob
import os
import random
import re

UNK, BOS, EOS = 0, 1, 2
BYTE0 = 3
SPACE_ID = 259
N_VOCAB = 260

QUESTION_SEP = "\n\n"


def vocab_tokens():
    """Token strings, scores and SentencePiece token types (2 unknown, 3 control, 6 byte,
    1 normal) in id order."""
    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + ["\u2581"]
    types = [2, 3, 3] + [6] * 256 + [1]
    scores = [0.0] * len(toks)
    return toks, scores, types


def encode(text):
    """Text (str or bytes) -> ids, one per byte, spaces as the U+2581 piece. No BOS/EOS."""
    if isinstance(text, str):
        text = text.encode("utf-8")
    return [SPACE_ID if b == 0x20 else BYTE0 + b for b in text]


def decode(ids):
    """ids -> bytes; control tokens are dropped."""
    out = bytearray()
    for i in ids:
        if i == SPACE_ID:
            out.append(0x20)
        elif BYTE0 <= i < BYTE0 + 256:
            out.append(i - BYTE0)
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Facts. Each kind has a statement, a question and a value generator; the answer is " VALUE".
NAMES = ["Mara", "Tobias", "Ilse", "Oskar", "Priya", "Jonas", "Leila", "Haruto", "Nadia", "Bruno",
         "Yusuf", "Greta", "Anton", "Selma", "Dmitri", "Esther", "Kofi", "Ingrid", "Rafael", "Zora"]
CITIES = ["Lisbon", "Oslo", "Cairo", "Quito", "Hanoi", "Dakar", "Lima", "Perth", "Riga", "Tunis",
          "Kyoto", "Bern", "Accra", "Minsk", "Porto", "Turin", "Sofia", "Izmir", "Malmo", "Nantes"]

FACT_KINDS = {
    "passkey": ("The pass key is {v}. Remember it. {v} is the pass key.",
                "Q: What is the pass key? A:",
                lambda r: "%05d" % r.randrange(100000)),
    "name": ("The name of the captain is {v}. Remember it.",
             "Q: What is the name of the captain? A:",
             lambda r: r.choice(NAMES)),
    "city": ("The secret city is {v}. Remember it.",
             "Q: What is the secret city? A:",
             lambda r: r.choice(CITIES)),
    "number": ("The magic number is {v}. Remember it.",
               "Q: What is the magic number? A:",
               lambda r: str(r.randrange(100, 1000))),
}


# ---------------------------------------------------------------------------------------------
# Filler: generated sentences.
_SUBJ = ["the river", "an old farmer", "the small dog", "a tired clerk", "the north wind", "my aunt",
         "the grey cat", "a young painter", "the ferry", "the baker", "our neighbour", "the train",
         "a quiet student", "the orchard", "the lighthouse keeper", "a stray goat"]
_VERB = ["walks past", "looks at", "waits for", "sings about", "forgets", "carries", "follows",
         "paints", "remembers", "mends", "counts", "visits", "ignores", "finds", "loses"]
_OBJ = ["the bridge", "a basket of apples", "the hills", "an empty chair", "the blue door",
        "the market", "a letter", "the winter fields", "the harbour", "a broken clock",
        "the garden wall", "the evening bells", "a pile of books", "the long road"]
_TAIL = ["", "", " in the morning", " after the rain", " again and again", " without a word",
         " before dinner", " near the station", " every summer", " under the trees"]


def gen_sentence(r):
    s = "%s %s %s%s." % (r.choice(_SUBJ), r.choice(_VERB), r.choice(_OBJ), r.choice(_TAIL))
    return s[0].upper() + s[1:]


# ---------------------------------------------------------------------------------------------
# Filler: prose read from files at run time.
def load_prose(patterns, max_bytes=4 << 20):
    """Reads ASCII sentences from the files matching the glob patterns (a list). Returns a list of
    sentences (may be empty when nothing matches)."""
    sents, total = [], 0
    files = []
    for p in patterns:
        files += sorted(glob.glob(os.path.expanduser(p)))
    for f in files:
        try:
            raw = open(f, "rb").read()
        except OSError:
            continue
        text = raw.decode("ascii", "ignore")
        text = re.sub(r"[^\x20-\x7e]+", " ", text)
        text = re.sub(r" {2,}", " ", text)
        for s in re.split(r"(?<=[.!?])\s+", text):
            s = s.strip()
            low = s.lower()
            if len(s) < 20 or len(s) > 300 or "pass key" in low or "remember it" in low:
                continue
            if sum(c.isalpha() for c in s) < 0.6 * len(s):
                continue
            sents.append(s)
            total += len(s)
            if total > max_bytes:
                return sents
    return sents


class Filler:
    """Sentence source: generated grammar sentences and/or prose, mixed by prose_frac."""

    def __init__(self, prose=None, prose_frac=0.5):
        self.prose = prose or []
        self.prose_frac = prose_frac if self.prose else 0.0

    def sentence(self, r):
        if self.prose_frac > 0 and r.random() < self.prose_frac:
            # consecutive prose sentences read more naturally; pick a start, take one
            return self.prose[r.randrange(len(self.prose))]
        return gen_sentence(r)

    def text(self, r, n):
        """Exactly n bytes of filler made of whole sentences joined by spaces (the last one cut
        and closed with a period when needed)."""
        parts, size = [], 0
        while size <= n:
            s = self.sentence(r)
            parts.append(s)
            size += len(s) + 1
        t = " ".join(parts)[:n]
        if n >= 2 and not t.endswith("."):
            t = t[:-1] + "."
        return t


def make_example(r, n_tokens, filler, kinds=("passkey",), n_facts=1, depths=None, ask=None):
    """One training/test example of exactly n_tokens tokens (BOS .. EOS).

    kinds: fact kinds to draw from; n_facts distinct kinds are inserted (at most len(kinds)).
    depths: list of depths in [0, 1] (one per fact) or None for uniform random.
    ask: index of the fact asked about, or None for random.
    Returns dict(doc=str, question=str, answer=str, facts=[(kind, value, depth)], ids=[...],
    answer_start=index of the first answer token in ids)."""
    kinds = list(kinds)
    n_facts = max(1, min(n_facts, len(kinds)))
    chosen = r.sample(kinds, n_facts)
    facts = []
    for i, k in enumerate(chosen):
        stmt, q, gen = FACT_KINDS[k]
        v = gen(r)
        d = depths[i] if depths is not None else r.random()
        facts.append((k, v, d, stmt.format(v=v)))
    qi = ask if ask is not None else r.randrange(n_facts)
    k, v, _, _ = facts[qi]
    question = FACT_KINDS[k][1]
    answer = " " + v
    fixed = 1 + len(QUESTION_SEP) + len(question) + len(answer) + 1
    fixed += sum(len(f[3]) + 1 for f in facts)
    n_fill = n_tokens - fixed
    if n_fill < 1:
        raise ValueError("%d tokens cannot hold the facts and the question" % n_tokens)
    doc = insert_facts(filler.text(r, n_fill), [(f[2], f[3]) for f in facts])
    ids = [BOS] + encode(doc + QUESTION_SEP + question + answer) + [EOS]
    assert len(ids) == n_tokens, (len(ids), n_tokens)
    return dict(doc=doc, question=question, answer=answer,
                facts=[(f[0], f[1], f[2]) for f in facts], ids=ids,
                answer_start=n_tokens - 1 - len(answer))


def insert_facts(filler, facts):
    """Inserts each (depth, statement) into filler at the sentence boundary nearest depth*len.
    Each statement adds len(statement) + 1 bytes (one joining space)."""
    bounds = [0] + [m.end() for m in re.finditer(r"\. ", filler)]
    # insert deepest first so earlier offsets stay valid
    out = filler
    for d, stmt in sorted(facts, key=lambda x: -x[0]):
        target = d * len(filler)
        pos = min(bounds, key=lambda b: abs(b - target)) if d < 1 else len(filler)
        if pos >= len(out):
            out = out + " " + stmt
        else:
            out = out[:pos] + stmt + " " + out[pos:]
    return out


def default_prose_globs():
    return ["/usr/share/common-licenses/*"]


def heldout_prose_globs():
    """Prose the model never trains on (for the 'unseen prose' measurement)."""
    return [os.path.join(os.path.dirname(os.__file__), "idlelib", "NEWS*.txt"),
            os.path.join(os.path.dirname(os.__file__), "idlelib", "*.txt")]


def make_rng(seed):
    return random.Random(seed)
