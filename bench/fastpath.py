"""Fast-path prototypes, measured side by side with production and checked to give identical results.

Not production code: each prototype is what we propose for consumers/, written here so that its
gain is measured on the same articles in the same run, and its output compared with production's,
article by article (a prototype whose output differs is reported as such, not timed as a win).

Fingerprint stage (``--part fingerprint``), applied to the live production code by swapping module
globals for the duration of a measurement (so it follows the current code, and fails loudly if a
name it swaps is gone):

  F1  code-paragraph regex: look for its literal needles ("{", "}", ";", "window.", "function",
      "_taboola", "googletag", "document.") with ``in`` before running the regex, which otherwise
      tries 7 alternatives at every character of every paragraph;
  F2  chrome lines: the 22 anchored patterns as one alternation, one ``fullmatch`` per line;
  F3  whitespace: ``" ".join(text.split())`` for ``_WHITESPACE.sub(" ", text).strip()``;
  F4  shingles + hashes: n-grams by ``zip`` and ``map`` (no per-slice joins in Python), no set of
      bytes (``np.unique`` deduplicates the hashes anyway), ASCII text tokenised and hashed as
      bytes (one encode per text instead of one per shingle), and no CJK/Thai script scan of ASCII text;
  F5  MinHash: the datasketch affine32 permutation applied with numpy directly on the uint32
      hash array (datasketch's own ``_fmix`` and permutation parameters), skipping ``tolist()``,
      one ``int()`` per shingle and the MinHash object.

Matcher (``--part matcher``):

  M1  ``compare``: the shared count of two unique arrays by concatenate + sort + adjacent equality,
      without ``np.intersect1d``'s wrapper (which builds the intersection array itself);
  M2  LSH as one dict of band keys (band << 32 | value, for r = 1) → article key(s), instead of
      datasketch's MinHashLSH (a LeanMinHash object per call, per-band byteswap + bytes keys, a
      set per bucket and a second table of every key's band keys);
  GC  a higher gen-0 threshold of Python's collector while the index grows (gc.set_threshold);
  M3  LSH as sorted numpy arrays (uint64 band keys + int32 ordinals, searchsorted to query) with
      a small dict for recent inserts, merged in bulk: about 12 bytes per band entry.

    python bench/fastpath.py [--part fingerprint|matcher|all] [--articles 1000] [--index 100000]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import multiprocessing
import re
import sys
import time
from collections.abc import Hashable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import xxhash
from benchlib import Deriver, emit, median, note, prepare_all, print_header, settled_rss
from corpus import Corpus, load_dev
from datasketch import MinHash
from datasketch.minhash import _fmix

import consumers.prepare as prepare_module
from consumers.matcher import Matcher
from consumers.prepare import Lineage, prepare_article
from consumers.settings import load_settings
from consumers.stages import fingerprint as fp
from consumers.stages import match as match_stage
from consumers.stages import normalise
from ingest.contract import article_from_dict

# -- fingerprint prototypes ----------------------------------------------------------------------

# The literal needles each known version of normalise._CODE needs before it can match.
CODE_NEEDLES = {
    r"[{}]\s*$|\)\s*;\s*$|\bwindow\.\w|\bfunction\s*\(|_taboola|\bgoogletag\b|\bdocument\.\w":
        ("{", "}", ";", "window.", "function", "_taboola", "googletag", "document."),
    r"\bwindow\.\w|\bfunction\s*\(|_taboola|\bgoogletag\b|\bdocument\.\w":
        ("window.", "function", "_taboola", "googletag", "document."),
}


class PrototypeUnavailable(RuntimeError):
    """The production code a prototype swaps changed: the prototype needs revisiting."""


class NeedleFirst:
    """F1: a regex that can only match text holding one of its literal needles."""

    def __init__(self, pattern: re.Pattern, needles: tuple[str, ...]) -> None:
        self.pattern, self.needles = pattern, needles

    def search(self, text: str) -> re.Match | None:
        for needle in self.needles:
            if needle in text:
                return self.pattern.search(text)
        return None


class Collapse:
    """F3: stands in for ``_WHITESPACE`` where it is only used as ``.sub(" ", text).strip()``."""

    pattern = r"\s+"

    @staticmethod
    def sub(replacement: str, text: str) -> str:
        assert replacement == " "
        return " ".join(text.split())


def one_chrome_pattern(patterns: list[re.Pattern]) -> re.Pattern:
    """F2: any(p.fullmatch(s) for p in patterns) as one alternation, each keeping its own flags."""
    parts = []
    for pattern in patterns:
        flags = "i" if pattern.flags & re.IGNORECASE else ""
        parts.append(f"(?{flags}:{pattern.pattern})" if flags else f"(?:{pattern.pattern})")
    return re.compile("|".join(parts))


_ASCII_WORD = re.compile(rb"\w+")


def fast_fingerprint(normalised: str, config: fp.FingerprintConfig) -> fp.Fingerprint:
    """F4 + F5: the same Fingerprint as production's ``fingerprint`` (checked by ``compare_prepared``)."""
    ascii_only = normalised.isascii()  # no CJK/Thai letter is ASCII: skip the script scan
    if not ascii_only and fp._uses_characters(normalised):
        return _production_fingerprint(normalised, config)
    n = config.word_shingle_size
    if ascii_only:
        words = _ASCII_WORD.findall(normalised.encode("ascii"))
        grams: Iterator[bytes] = map(b" ".join, zip(*(words[i:] for i in range(n)), strict=False)) \
            if len(words) >= n else iter([b" ".join(words)] if words else [])
    else:
        words = fp.tokenise(normalised)
        grams = map(str.encode, map(" ".join, zip(*(words[i:] for i in range(n)), strict=False))) \
            if len(words) >= n else iter([" ".join(words).encode()] if words else [])
    count = max(0, len(words) - n + 1) if len(words) >= n else (1 if words else 0)
    hashes = np.unique(np.fromiter(map(xxhash.xxh32_intdigest, grams), dtype=np.uint32, count=count))
    return fp.Fingerprint(fp.content_hash(normalised), numpy_minhash(hashes, config), hashes)


_PERMUTATIONS: dict[fp.FingerprintConfig, tuple[np.ndarray, np.ndarray]] = {}


def numpy_minhash(hashes: np.ndarray, config: fp.FingerprintConfig) -> np.ndarray:
    """F5: datasketch's affine32 update_batch, with numpy on the array itself."""
    if config not in _PERMUTATIONS:
        a, b = MinHash(num_perm=config.num_perm, seed=config.seed, hashfunc=int, scheme=fp.SCHEME).permutations
        _PERMUTATIONS[config] = (a.astype(np.uint32), b.astype(np.uint32))
    a, b = _PERMUTATIONS[config]
    if not len(hashes):
        return np.full(config.num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
    mixed = _fmix(hashes.astype(np.uint32).reshape(-1, 1), 32)
    return (mixed * a + b).min(axis=0)


_production_fingerprint = fp.fingerprint


@contextlib.contextmanager
def fingerprint_prototypes(which: str = "F1,F2,F3,F4,F5") -> Iterator[None]:
    """Swap the chosen prototypes into the live production modules, and back."""
    chosen = set(which.split(","))
    saved = []

    def swap(module: object, name: str, value: object) -> None:
        if not hasattr(module, name):
            raise PrototypeUnavailable(f"{getattr(module, '__name__', module)}.{name} is gone: production changed")
        saved.append((module, name, getattr(module, name)))
        setattr(module, name, value)

    try:
        if "F1" in chosen:
            needles = CODE_NEEDLES.get(normalise._CODE.pattern)
            if needles is None:
                raise PrototypeUnavailable("normalise._CODE is a pattern F1 does not know: re-derive its needles")
            swap(normalise, "_CODE", NeedleFirst(normalise._CODE, needles))
        if "F2" in chosen:
            swap(normalise, "_CHROME_LINES", [one_chrome_pattern(normalise._CHROME_LINES)])
        if "F3" in chosen:
            swap(normalise, "_WHITESPACE", Collapse())
        if "F4" in chosen or "F5" in chosen:
            swap(prepare_module, "fingerprint", fast_fingerprint)
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)


def compare_prepared(left: list, right: list) -> int:
    """How many prepared articles differ in text, content hash, signature or shingle hashes."""
    differ = 0
    for a, b in zip(left, right, strict=True):
        if (a.text != b.text or a.content_hash != b.content_hash or a.key != b.key
                or not np.array_equal(a.signature, b.signature)
                or not np.array_equal(a.shingle_hashes, b.shingle_hashes)):
            differ += 1
    return differ


def fingerprint_part(count: int, rounds: int) -> dict:
    config = load_settings({}).fingerprint_config()
    dev = load_dev()
    long_articles = [article_from_dict(r) for r in Corpus(dev, words=700, seed=11).records(count)]
    check_articles = [article_from_dict(dict(r)) for r in dev] + long_articles[:200]

    def run(articles: list) -> list:
        out = []
        for article in articles:
            try:
                out.append(prepare_article(article, config))
            except Exception as exc:  # an article production rejects must be rejected alike
                out.append(type(exc).__name__)
        return out

    # Equality first: every prototype alone and all together, on the dev set + 200 long articles.
    reference = run(check_articles)
    ok_reference = [p for p in reference if not isinstance(p, str)]
    variants = []
    for variant in ["F1", "F2", "F3", "F4", "F5"]:
        try:
            with fingerprint_prototypes(variant):
                variants.append(variant)
        except PrototypeUnavailable as exc:
            print(f"{variant} unavailable: {exc}")
    variants.append(",".join(variants))
    differences = {}
    for variant in variants:
        with fingerprint_prototypes(variant):
            mine = run(check_articles)
        rejected_alike = all(isinstance(a, str) == isinstance(b, str) for a, b in zip(reference, mine, strict=True))
        differences[variant] = (compare_prepared(ok_reference, [p for p in mine if not isinstance(p, str)])
                                if rejected_alike else -1)
    print(f"identical output on {len(check_articles):,} articles (the dev set and 200 of 700 words): "
          + ", ".join(f"{v}: {'yes' if d == 0 else f'NO ({d} differ)'}" for v, d in differences.items()))

    # Speed, side by side, rotating order; CPU time of this process.
    rates: dict[str, list[float]] = {v: [] for v in ["production", *variants]}
    ratios: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(rounds):
        order = ["production", *variants]
        order = order[r % len(order):] + order[:r % len(order)]
        this = {}
        for variant in order:
            context = contextlib.nullcontext() if variant == "production" else fingerprint_prototypes(variant)
            with context:
                started = time.process_time()
                for article in long_articles:
                    prepare_article(article, config)
                this[variant] = len(long_articles) / (time.process_time() - started)
            rates[variant].append(this[variant])
        for variant in variants:
            ratios[variant].append(this[variant] / this["production"])
    print(f"prepare_article on {count:,} articles of 700 words, {rounds} rounds (CPU time, medians):")
    for variant in ["production", *variants]:
        ratio = "" if variant == "production" else f"  {median(ratios[variant]):.2f}x production"
        print(f"  {variant:18} {median(rates[variant]):>8,.0f} articles/s per core{ratio}")
    return {"production_articles_per_s": round(median(rates["production"])),
            "prototype_articles_per_s": {v: round(median(rates[v])) for v in variants},
            "prototype_ratio": {v: round(median(ratios[v]), 2) for v in variants},
            "identical": {v: d == 0 for v, d in differences.items()}}


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


def _index_child(kind: str, deriver: Deriver, entries: int, queries: int, results) -> None:  # type: ignore[no-untyped-def]
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
    parser.add_argument("--index", type=int, default=50_000, help="entries in the LSH-alone comparison")
    parser.add_argument("--matcher-articles", type=int, default=30_000, help="articles in the matcher comparison")
    args = parser.parse_args()
    found = print_header("fast-path prototypes beside production (identical output required)")
    result: dict = {"script": "fastpath"}
    if args.part in ("fingerprint", "all"):
        note("fingerprint prototypes")
        result["fingerprint"] = fingerprint_part(args.articles, args.rounds)
    if args.part in ("matcher", "all"):
        note("matcher prototypes")
        result["matcher"] = matcher_part(args.index, 5000, args.matcher_articles)
    emit({**result, "versions": found})
    return 0


if __name__ == "__main__":
    sys.exit(main())
