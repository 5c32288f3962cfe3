"""Fast-path prototypes, measured side by side with production and checked to give identical results.

Not production code: each prototype is what we propose for consumers/, written here so that its
gain is measured on the same articles in the same run, and its output compared with production's,
article by article (a prototype whose output differs is reported as such, not timed as a win).

Fingerprint stage (``--part fingerprint``): its prototypes (F1 literal needles before the code
regex, F2 the chrome-line patterns as one alternation, F3 whitespace by split/join, F4 n-grams by
zip over bytes tokens, F5 MinHash with numpy on the hash array) are all in production now, so this
part compares production with the prepare chain of an earlier commit (``--against``, default the
one before the fast path), loaded from git into the same process: first every article of the
eval sets (dev, dev-real, the Helsinki scrapes) and of the 700-word corpus must give identical
prepared articles (text, content hash, key, signature, shingle hashes, wire record, rejections),
then both are timed side by side on the 700-word articles. One prototype remains:

  F6  the n-gram xxhash32 values and the MinHash in numba-compiled loops (xxhash32 re-implemented,
      checked identical on every article). Needs numba, which is not a dependency: skipped when
      it is not installed.

Matcher (``--part matcher``):

  M1  ``compare``: the shared count of two unique arrays by concatenate + sort + adjacent equality,
      without ``np.intersect1d``'s wrapper (which builds the intersection array itself);
  M2  LSH as one dict of band keys (band << 32 | value, for r = 1) → article key(s), instead of
      datasketch's MinHashLSH (a LeanMinHash object per call, per-band byteswap + bytes keys, a
      set per bucket and a second table of every key's band keys);
  GC  a higher gen-0 threshold of Python's collector while the index grows (gc.set_threshold);
  M3  LSH as sorted numpy arrays (uint64 band keys + int32 ordinals, searchsorted to query) with
      a small dict for recent inserts, merged in bulk: about 12 bytes per band entry.

    python bench/fastpath.py [--part fingerprint|matcher|all] [--articles 1000] [--against REV]
                             [--index 100000]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import subprocess
import sys
import time
import types
from collections.abc import Callable, Hashable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from benchlib import ROOT, Deriver, emit, median, note, prepare_all, print_header, settled_rss
from corpus import Corpus, load_dev
from evalsets import DEFAULT_EVAL_DIR, load_sets

import consumers.prepare as prepare_module
from consumers.matcher import Matcher
from consumers.prepare import Lineage
from consumers.settings import load_settings
from consumers.stages import fingerprint as fp
from consumers.stages import match as match_stage
from consumers.stages.normalise import clean_text, normalise_text
from ingest.contract import article_from_dict

# -- fingerprint: production beside an earlier commit ------------------------------------------

# The prepare chain before the fast path (F1-F5 and what followed) was moved into production.
BASELINE = "9693181"
# Loaded from git in this order, so each one's imports find the old modules before it.
PREPARE_CHAIN = ("consumers.stages.extract", "consumers.stages.normalise", "consumers.stages.fingerprint",
                 "consumers.prepare")


def prepare_chain_at(rev: str) -> types.ModuleType:
    """consumers/prepare.py and the stages it calls, as they were at git revision ``rev``.

    Each old module is executed from ``git show`` while it stands in sys.modules under its own
    name (so the old prepare.py imports the old stages), and the live modules are put back after.
    """
    saved = {name: sys.modules.get(name) for name in PREPARE_CHAIN}
    loaded: dict[str, types.ModuleType] = {}
    try:
        for name in PREPARE_CHAIN:
            path = name.replace(".", "/") + ".py"
            source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], capture_output=True,
                                    text=True, check=True).stdout
            module = types.ModuleType(name)
            module.__file__ = f"{rev}:{path}"
            sys.modules[name] = module
            exec(compile(source, module.__file__, "exec"), module.__dict__)
            loaded[name] = module
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return loaded["consumers.prepare"]


# Characters where a fast path could part from the regexes it replaces: C0/C1 controls and the
# separators str.split knows (\x1c-\x1f, NEL), no-break and zero-width spaces, entities (double
# escaped too), case folds that change length or need NFKC again, non-word symbols, combining
# marks, CJK and Thai (character shingles), code and chrome lines.
EDGE_CASES = ("\x0b", "\x0c", "\x1c\x1f", "\x85", "\x7f\x9f", "\u00a0", "\u200b", "\u2028", "&amp;amp;lt;b&gt;",
              "&#10;&#x2014;", "&nbsp;", "Straße STRASSE", "\u017f\u212a \u0130stanbul", "e\u0301te\u0301",
              "£5 €7 ¥9 №1 ½", "x\u00b2\u2460", "ﬁnance ＡＢＣ", "渡轮公司暂停了服务。渡轮公司暂停", "เรือข้ามฟาก",
              "_under_score_", "\t\r\n", "window.dataLayer = [];", "Advertisement", "Share this article",
              "By Jane Doe, Reuters", "\u201cquoted\u201d \u2014 dash\u2026", "ΣΊΣΥΦΟΣ ὈΔΥΣΣΕΎΣ")


def edge_case_articles(dev: list[dict]) -> list:
    """Dev articles with EDGE_CASES put into the text: in a line, as a line, as a paragraph, as all of it."""
    articles = []
    for index, record in enumerate(dev[:4 * len(EDGE_CASES)]):
        edge = EDGE_CASES[index % len(EDGE_CASES)]
        words = (record.get("body") or "").split(" ")
        middle = len(words) // 2
        where = index // len(EDGE_CASES)
        if where == 3:
            body = " ".join([edge, "word"] * 40)
        else:
            joiner = (edge, f"\n{edge}\n", f"\n\n{edge}\n\n")[where]
            body = " ".join(words[:middle]) + joiner + " ".join(words[middle:])
        articles.append(article_from_dict({**record, "body": body}))
    return articles


def check_articles(count: int) -> dict[str, list]:
    """Every article the fingerprint check runs on: the eval sets' real texts and long synthetic ones."""
    sets: dict[str, list] = {s.name: [article_from_dict(dict(r)) for r in s.records]
                             for s in load_sets(DEFAULT_EVAL_DIR)}
    dev = load_dev()
    sets["edge cases"] = edge_case_articles(dev)
    sets["700-word corpus"] = [article_from_dict(r) for r in Corpus(dev, words=700, seed=11).records(count)]
    return sets


def _prepare_or_error(prepare_module: types.ModuleType, articles: list, config: fp.FingerprintConfig) -> list:
    out = []
    for article in articles:
        try:
            out.append(prepare_module.prepare_article(article, config))
        except Exception as exc:  # an article one side rejects must be rejected alike
            out.append(f"{type(exc).__name__}: {exc}")
    return out


def differences(old_module: types.ModuleType, old: list, new: list) -> list[str]:
    """Why each differing article differs: every field, and the wire record both ways."""
    lineage = Lineage("articles.raw", 0, 0, None)
    found = []
    for index, (a, b) in enumerate(zip(old, new, strict=True)):
        if isinstance(a, str) or isinstance(b, str):
            if a != b:
                found.append(f"#{index}: {a!r} vs {b!r}")
            continue
        fields = [name for name in a.__slots__
                  if not (np.array_equal(getattr(a, name), getattr(b, name)) if isinstance(getattr(a, name), np.ndarray)
                          else getattr(a, name) == getattr(b, name))]
        wire = old_module.encode_prepared(a, lineage)
        if wire != prepare_module.encode_prepared(b, lineage):
            fields.append("wire record")
        elif prepare_module.encode_prepared(prepare_module.decode_prepared(wire)[0], lineage) != wire:
            fields.append("wire record read back")
        if fields:
            found.append(f"#{index} ({a.input_id}): {', '.join(fields)}")
    return found


def fingerprint_part(count: int, rounds: int, against: str) -> dict:
    """Identical output first (every eval article), then speed side by side with ``against``."""
    config = load_settings({}).fingerprint_config()
    old_module = prepare_chain_at(against)
    sets = check_articles(count)
    identical = {}
    for name, articles in sets.items():
        found = differences(old_module, _prepare_or_error(old_module, articles, config),
                            _prepare_or_error(prepare_module, articles, config))
        identical[name] = not found
        print(f"{name}: {len(articles):,} articles, "
              + ("identical (text, hashes, signature, shingle hashes, key, wire record)" if not found
                 else f"{len(found)} DIFFER, first: {'; '.join(found[:3])}"))

    long_articles = sets["700-word corpus"]
    sides = {f"at {against}": old_module.prepare_article, "production": prepare_module.prepare_article}
    rates: dict[str, list[float]] = {side: [] for side in sides}
    ratios = []
    for r in range(rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        this = {}
        for side in order:
            prepare = sides[side]
            started = time.process_time()
            for article in long_articles:
                prepare(article, config)
            this[side] = len(long_articles) / (time.process_time() - started)
            rates[side].append(this[side])
        ratios.append(this["production"] / this[f"at {against}"])
    print(f"prepare_article on {len(long_articles):,} articles of 700 words, {rounds} rounds (CPU time, medians):")
    for side in sides:
        print(f"  {side:18} {median(rates[side]):>8,.0f} articles/s per core")
    print(f"  production / at {against}: {median(ratios):.2f}x (median of per-round ratios)")
    return {"against": against, "identical": identical,
            "articles_per_s": {side: round(median(rates[side])) for side in sides},
            "ratio": round(median(ratios), 2), "numba": numba_part(sets, config, rounds)}


# -- fingerprint prototype F6: shingle hashes and MinHash compiled with numba (optional) ------------

def numba_fingerprint() -> Callable[[str, fp.FingerprintConfig], fp.Fingerprint] | None:
    """F6: production's fingerprint() with xxhash32 of every n-gram and the MinHash in numba loops.

    Not production: numba is not a dependency (about 150 MB with llvmlite, and seconds of JIT
    compilation per process unless its cache can be written). Measured here so that the choice is
    made on figures; None when numba is not installed (``pip install numba`` into a scratch target
    and add it to PYTHONPATH to run it).
    """
    try:
        import numba
    except ImportError:
        return None
    u64 = np.uint64
    mask = u64(0xFFFFFFFF)
    p1, p2, p3, p4, p5 = (u64(v) for v in (2654435761, 2246822519, 3266489917, 668265263, 374761393))
    v1_start, v4_start = u64((2654435761 + 2246822519) & 0xFFFFFFFF), u64(-2654435761 & 0xFFFFFFFF)

    @numba.njit(inline="always")
    def rotl(x, r):
        return ((x << u64(r)) | (x >> u64(32 - r))) & mask

    @numba.njit(inline="always")
    def read32(d, p):
        return u64(d[p]) | (u64(d[p + 1]) << u64(8)) | (u64(d[p + 2]) << u64(16)) | (u64(d[p + 3]) << u64(24))

    @numba.njit
    def xxh32(d, start, end):  # XXH32 with seed 0, as xxhash.xxh32_intdigest
        p = start
        if end - start >= 16:
            v1, v2, v3, v4 = v1_start, p2, u64(0), v4_start
            while p <= end - 16:
                v1 = (rotl((v1 + read32(d, p) * p2) & mask, 13) * p1) & mask
                v2 = (rotl((v2 + read32(d, p + 4) * p2) & mask, 13) * p1) & mask
                v3 = (rotl((v3 + read32(d, p + 8) * p2) & mask, 13) * p1) & mask
                v4 = (rotl((v4 + read32(d, p + 12) * p2) & mask, 13) * p1) & mask
                p += 16
            h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) & mask
        else:
            h = p5
        h = (h + u64(end - start)) & mask
        while p + 4 <= end:
            h = (rotl((h + read32(d, p) * p3) & mask, 17) * p4) & mask
            p += 4
        while p < end:
            h = (rotl((h + u64(d[p]) * p5) & mask, 11) * p1) & mask
            p += 1
        h ^= h >> u64(15)
        h = (h * p2) & mask
        h ^= h >> u64(13)
        h = (h * p3) & mask
        return h ^ (h >> u64(16))

    @numba.njit
    def gram_hashes(d, n):  # d: non-word bytes already spaces
        joined = np.empty(d.shape[0], np.uint8)  # the tokens joined by one space
        starts = np.empty(d.shape[0] // 2 + 1, np.int64)
        ends = np.empty(d.shape[0] // 2 + 1, np.int64)
        k = tokens = i = 0
        while i < d.shape[0]:
            while i < d.shape[0] and d[i] == 32:
                i += 1
            if i == d.shape[0]:
                break
            if tokens:
                joined[k] = 32
                k += 1
            starts[tokens] = k
            while i < d.shape[0] and d[i] != 32:
                joined[k] = d[i]
                k += 1
                i += 1
            ends[tokens] = k
            tokens += 1
        if tokens == 0:
            return np.empty(0, np.uint32)
        count = max(tokens - n + 1, 1)
        out = np.empty(count, np.uint32)
        for j in range(count):
            out[j] = xxh32(joined, starts[j], ends[min(j + n, tokens) - 1])
        return out

    @numba.njit
    def minhash(hashes, a, b):
        mixed = np.empty(hashes.shape[0], np.uint64)
        for i in range(hashes.shape[0]):
            h = u64(hashes[i])
            h ^= h >> u64(16)
            h = (h * u64(0x85EBCA6B)) & mask
            h ^= h >> u64(13)
            h = (h * u64(0xC2B2AE35)) & mask
            mixed[i] = h ^ (h >> u64(16))
        signature = np.empty(a.shape[0], np.uint32)
        for k in range(a.shape[0]):
            ak, bk, low = u64(a[k]), u64(b[k]), mask
            for i in range(mixed.shape[0]):
                low = min(low, (ak * mixed[i] + bk) & mask)
            signature[k] = low
        return signature

    def fingerprint(normalised: str, config: fp.FingerprintConfig) -> fp.Fingerprint:
        if not normalised.isascii() and fp._uses_characters(normalised):
            return _production_fingerprint(normalised, config)
        text = normalised if normalised.isascii() else fp._NON_ASCII_NON_WORD.sub(" ", normalised)
        data = np.frombuffer(text.encode("utf-8").translate(fp._ASCII_NON_WORD_TO_SPACE), dtype=np.uint8)
        hashes = np.sort(gram_hashes(data, config.word_shingle_size))
        hashes = hashes[np.concatenate(([True], hashes[1:] != hashes[:-1]))] if len(hashes) else hashes
        a, b = fp._permutations(config)
        return fp.Fingerprint(fp.content_hash(normalised), minhash(hashes, a, b), hashes)

    return fingerprint


_production_fingerprint = fp.fingerprint


def numba_part(sets: dict[str, list], config: fp.FingerprintConfig, rounds: int) -> dict | None:
    """F6 beside production: identical prepared articles, then prepare_article timed side by side."""
    started = time.perf_counter()
    fast = numba_fingerprint()
    if fast is None:
        print("F6 (numba): numba is not installed, skipped")
        return None
    fast("warm up the compiler", load_settings({}).fingerprint_config())
    print(f"F6 (numba): compiled in {time.perf_counter() - started:.1f} s")

    def with_fast(articles: list) -> list:
        prepare_module.fingerprint = fast
        try:
            return _prepare_or_error(prepare_module, articles, config)
        finally:
            prepare_module.fingerprint = _production_fingerprint

    same = all(not differences(prepare_module, _prepare_or_error(prepare_module, articles, config),
                               with_fast(articles)) for articles in sets.values())
    print(f"F6 (numba): {'identical' if same else 'DIFFERENT'} prepared articles on every set")
    long_articles = sets["700-word corpus"]
    ratios, stage_ratios = [], []
    normalised = [normalise_text(clean_text(a.body or "")) for a in long_articles]
    for r in range(rounds):
        this = {}
        for side in (("production", "F6") if r % 2 == 0 else ("F6", "production")):
            fingerprint = _production_fingerprint if side == "production" else fast
            prepare_module.fingerprint = fingerprint
            try:
                begun = time.process_time()
                for article in long_articles:
                    prepare_module.prepare_article(article, config)
                this[side] = time.process_time() - begun
                begun = time.process_time()
                for text in normalised:
                    fingerprint(text, config)
                this[side + " stage"] = time.process_time() - begun
            finally:
                prepare_module.fingerprint = _production_fingerprint
        ratios.append(this["production"] / this["F6"])
        stage_ratios.append(this["production stage"] / this["F6 stage"])
    print(f"F6 (numba): prepare_article {median(ratios):.2f}x production, fingerprint() alone "
          f"{median(stage_ratios):.2f}x (medians of per-round ratios)")
    return {"identical": same, "prepare_ratio": round(median(ratios), 2),
            "fingerprint_ratio": round(median(stage_ratios), 2)}


# -- matcher prototypes --------------------------------------------------------------------------

def fast_compare(hashes_a: np.ndarray, hashes_b: np.ndarray) -> match_stage.Similarity:
    """M1: production ``compare`` without np.intersect1d's wrapper: one concatenate, sort, adjacent compare."""
    size_a, size_b = len(hashes_a), len(hashes_b)
    if not size_a or not size_b:
        return match_stage.Similarity(0.0, 0.0)
    both = np.concatenate((hashes_a, hashes_b))
    both.sort()
    shared = int(np.count_nonzero(both[1:] == both[:-1]))
    return match_stage.Similarity(shared / (size_a + size_b - shared), shared / min(size_a, size_b))


class DictBandIndex:
    """M2: the CandidateIndex interface over one dict of band keys (same candidate sets as MinHashLSH)."""

    def __init__(self, bands: int, rows: int) -> None:
        self.bands_, self.rows = bands, rows
        self._table: dict[Hashable, object] = {}  # band key → article key, or a list of them
        self._signatures: dict[Hashable, np.ndarray] = {}  # article key → signature (shared with the matcher)

    @property
    def bands(self) -> tuple[int, int]:
        return self.bands_, self.rows

    def _keys(self, signature: np.ndarray) -> list:
        if self.rows == 1:
            return [(band << 32) | value for band, value in enumerate(signature[: self.bands_].tolist())]
        return [(band, signature[band * self.rows:(band + 1) * self.rows].tobytes()) for band in range(self.bands_)]

    def insert(self, key: Hashable, signature: np.ndarray) -> None:
        self._signatures[key] = signature
        table = self._table
        for band_key in self._keys(signature):
            held = table.get(band_key)
            if held is None:
                table[band_key] = key
            elif type(held) is list:
                held.append(key)
            else:
                table[band_key] = [held, key]

    def remove(self, key: Hashable) -> None:
        for band_key in self._keys(self._signatures.pop(key)):
            held = self._table[band_key]
            if type(held) is list:
                held.remove(key)
                if len(held) == 1:
                    self._table[band_key] = held[0]
            else:
                del self._table[band_key]

    def find_candidates(self, signature: np.ndarray) -> list[Hashable]:
        found = set()
        table = self._table
        for band_key in self._keys(signature):
            held = table.get(band_key)
            if held is None:
                continue
            if type(held) is list:
                found.update(held)
            else:
                found.add(held)
        return list(found)

    def __len__(self) -> int:
        return len(self._signatures)


class SortedBandIndex:
    """M3: band keys in sorted numpy arrays (12 bytes per band entry) plus a dict of recent inserts.

    r = 1 only (the production setting). Removal marks the article's ordinal dead; a merge drops
    dead entries. Article keys live once, in a list indexed by ordinal.
    """

    def __init__(self, bands: int, rows: int, merge_every: int = 20_000) -> None:
        if rows != 1:
            raise ValueError("prototype for r = 1 only")
        self.bands_ = bands
        self.merge_every = merge_every
        self._sorted = np.empty(0, dtype=np.uint64)
        self._ordinals = np.empty(0, dtype=np.int32)
        self._recent = DictBandIndex(bands, 1)
        self._recent_ordinal: dict[Hashable, int] = {}
        self._keys: list[Hashable] = []
        self._ordinal_of: dict[Hashable, int] = {}
        self._alive = np.zeros(0, dtype=bool)
        self._shift = (np.arange(bands, dtype=np.uint64) << np.uint64(32))

    @property
    def bands(self) -> tuple[int, int]:
        return self.bands_, 1

    def insert(self, key: Hashable, signature: np.ndarray) -> None:
        ordinal = len(self._keys)
        self._keys.append(key)
        self._ordinal_of[key] = ordinal
        if ordinal >= len(self._alive):
            self._alive = np.concatenate([self._alive, np.zeros(max(1024, ordinal), dtype=bool)])
        self._alive[ordinal] = True
        self._recent.insert(key, signature)
        self._recent_ordinal[key] = ordinal
        if len(self._recent) >= max(self.merge_every, len(self._ordinals) // (8 * self.bands_)):
            self._merge()

    def _merge(self) -> None:
        keys = list(self._recent._signatures)
        signatures = np.stack([self._recent._signatures[k] for k in keys])[:, : self.bands_].astype(np.uint64)
        band_keys = (signatures | self._shift).ravel()
        ordinals = np.repeat(np.array([self._recent_ordinal[k] for k in keys], dtype=np.int32), self.bands_)
        keep = self._alive[self._ordinals] if len(self._ordinals) else np.zeros(0, dtype=bool)
        merged_keys = np.concatenate([self._sorted[keep], band_keys])
        merged_ordinals = np.concatenate([self._ordinals[keep], ordinals])
        order = np.argsort(merged_keys, kind="stable")
        self._sorted, self._ordinals = merged_keys[order], merged_ordinals[order]
        self._recent = DictBandIndex(self.bands_, 1)
        self._recent_ordinal = {}

    def remove(self, key: Hashable) -> None:
        ordinal = self._ordinal_of.pop(key)
        self._alive[ordinal] = False
        if key in self._recent_ordinal:
            self._recent.remove(key)
            del self._recent_ordinal[key]

    def find_candidates(self, signature: np.ndarray) -> list[Hashable]:
        found = set(self._recent.find_candidates(signature))
        if len(self._sorted):
            probes = signature[: self.bands_].astype(np.uint64) | self._shift
            left = np.searchsorted(self._sorted, probes, "left")
            right = np.searchsorted(self._sorted, probes, "right")
            for lo, hi in zip(left.tolist(), right.tolist(), strict=True):
                for ordinal in self._ordinals[lo:hi].tolist():
                    if self._alive[ordinal]:
                        found.add(self._keys[ordinal])
        return list(found)

    def __len__(self) -> int:
        return len(self._ordinal_of)


def _index_child(kind: str, deriver: Deriver, entries: int, queries: int, results) -> None:
    settings = load_settings({})
    production = match_stage.CandidateIndex(settings.fingerprint_config(), settings.match_config())
    bands, rows = production.bands
    index = {"production": lambda: production, "M2": lambda: DictBandIndex(bands, rows),
             "M3": lambda: SortedBandIndex(bands, rows)}[kind]()
    items = [(a.key, a.signature) for a in deriver.articles(entries, start=len(deriver))]
    probes = [a.signature for a in deriver.articles(queries, start=len(deriver))]  # these find themselves
    rss0 = settled_rss()
    started = time.process_time()
    for key, signature in items:
        index.insert(key, signature)
    if isinstance(index, SortedBandIndex):
        index._merge()
    insert_seconds = time.process_time() - started
    rss = settled_rss()
    started = time.process_time()
    found = [sorted(index.find_candidates(signature)) for signature in probes]
    query_seconds = time.process_time() - started
    results.put({"kind": kind, "insert_per_s": entries / insert_seconds, "query_per_s": queries / query_seconds,
                 "rss_bytes_per_entry": (rss - rss0) / entries, "candidates": found})


def _timed_matcher(deriver: Deriver, count: int, swaps: str) -> tuple[float, list]:
    settings = load_settings({})
    matcher = Matcher(settings.fingerprint_config(), settings.match_config(), settings.preferred_source_list,
                      settings.retention)
    saved = None
    if "M1" in swaps:
        import consumers.matcher as matcher_module

        saved = matcher_module.compare
        matcher_module.compare = fast_compare
    if "M2" in swaps:
        matcher.index = DictBandIndex(*matcher.index.bands)
    if "M3" in swaps:
        matcher.index = SortedBandIndex(*matcher.index.bands)
    thresholds = gc.get_threshold()
    if "GC" in swaps:
        gc.set_threshold(100_000, 50, 100)  # fewer collections of the ever-growing, acyclic index
    lineage = Lineage("bench", 0, 0)
    articles = list(deriver.articles(count))
    try:
        started = time.process_time()
        decisions = []
        for start in range(0, count, 500):
            decisions += [matcher.process(a, lineage) for a in articles[start:start + 500]]
            matcher.take_changes()
        seconds = time.process_time() - started
    finally:
        gc.set_threshold(*thresholds)
        if saved is not None:
            import consumers.matcher as matcher_module

            matcher_module.compare = saved
    stories = sorted(sorted(story.members) for story in matcher.stories.values())
    return count / seconds, [d.outcome for d in decisions] + [stories]  # type: ignore[list-item]


def matcher_part(index_size: int, queries: int, matcher_articles: int) -> dict:
    dev = load_dev()
    deriver = Deriver(prepare_all(list(Corpus(dev, seed=21).records(len(dev)))))
    context = multiprocessing.get_context("fork")
    indexes = {}
    for kind in ("production", "M2", "M3"):
        results = context.Queue()
        child = context.Process(target=_index_child, args=(kind, deriver, index_size, queries, results))
        child.start()
        indexes[kind] = results.get()
        child.join()
    same = {kind: indexes[kind]["candidates"] == indexes["production"]["candidates"] for kind in ("M2", "M3")}
    print(f"LSH index alone, {index_size:,} entries, {queries:,} queries (CPU time; RSS growth per entry):")
    for kind, r in indexes.items():
        tag = "" if kind == "production" else f"  same candidates as production: {'yes' if same[kind] else 'NO'}"
        print(f"  {kind:10} insert {r['insert_per_s']:>9,.0f}/s  query {r['query_per_s']:>9,.0f}/s  "
              f"{r['rss_bytes_per_entry']:>7,.0f} B/entry{tag}")

    # Whole matcher, side by side; decisions and stories must be identical.
    rates: dict[str, list[float]] = {}
    outputs = {}
    variants = ["production", "GC", "M1", "M1,M2", "M1,M3", "M1,M2,GC"]
    for r in range(3):
        for variant in variants[r % len(variants):] + variants[:r % len(variants)]:
            rate, output = _timed_matcher(deriver, matcher_articles, "" if variant == "production" else variant)
            rates.setdefault(variant, []).append(rate)
            outputs[variant] = output
    print(f"Matcher.process on {matcher_articles:,} derived articles (index from empty), 3 rounds, CPU time:")
    for variant in variants:
        identical = "" if variant == "production" else \
            f"  same decisions and stories: {'yes' if outputs[variant] == outputs['production'] else 'NO'}"
        ratio = median(rates[variant]) / median(rates["production"])
        print(f"  {variant:10} {median(rates[variant]):>8,.0f} articles/s  {ratio:5.2f}x{identical}")
    return {
        "lsh": {k: {"insert_per_s": round(v["insert_per_s"]), "query_per_s": round(v["query_per_s"]),
                    "rss_bytes_per_entry": round(v["rss_bytes_per_entry"])} for k, v in indexes.items()},
        "lsh_same_candidates": same,
        "matcher_articles_per_s": {v: round(median(rates[v])) for v in variants},
        "matcher_identical": {v: outputs[v] == outputs["production"] for v in variants[1:]},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("fingerprint", "matcher", "all"), default="all")
    parser.add_argument("--articles", type=int, default=1000, help="700-word articles per fingerprint round")
    parser.add_argument("--rounds", type=int, default=3, help="fingerprint rounds (default 3)")
    parser.add_argument("--against", default=BASELINE,
                        help=f"git revision whose prepare chain production is compared with (default {BASELINE})")
    parser.add_argument("--index", type=int, default=50_000, help="entries in the LSH-alone comparison")
    parser.add_argument("--matcher-articles", type=int, default=30_000, help="articles in the matcher comparison")
    args = parser.parse_args()
    found = print_header("fast-path prototypes beside production (identical output required)")
    result: dict = {"script": "fastpath"}
    if args.part in ("fingerprint", "all"):
        note(f"fingerprint stage: production beside {args.against}")
        result["fingerprint"] = fingerprint_part(args.articles, args.rounds, args.against)
    if args.part in ("matcher", "all"):
        note("matcher prototypes")
        result["matcher"] = matcher_part(args.index, 5000, args.matcher_articles)
    emit({**result, "versions": found})
    return 0


if __name__ == "__main__":
    sys.exit(main())
