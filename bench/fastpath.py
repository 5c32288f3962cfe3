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
prepared articles (text, content hash, key, rejections; and signature, shingle hashes and wire
record when both sides have the same fingerprint identity: a commit before the shingle hashes
came from word hashes, 02ca52d, has other hashes by design), then both are timed side by side on
the 700-word articles. (F6, the n-gram xxhash32 values and the MinHash in numba loops, was
measured and rejected: numba is about 150 MB and seconds of JIT per process, and production no
longer hashes n-grams one by one.)

Matcher (``--part matcher``): its prototypes (M1 ``compare`` by concatenate + sort + adjacent
equality; M2/M3 the LSH as band keys of r = 1 instead of datasketch's MinHashLSH, now packed
sorted uint64 runs plus a dict of recent inserts; GC a higher gen-0 threshold during a batch) are
in production, so this part compares production (``consumers.matching.match_batch``) with the
matcher of an earlier commit (``--matcher-against``, default the one before them), loaded from git
into the same process: first every decision, story and member similarity on ``--check`` derived
articles must be identical, then both run from an empty index to ``--matcher-articles``, each in a
forked child (CPU time, RSS growth per article), alternating which goes first.

    python bench/fastpath.py [--part fingerprint|matcher|all] [--articles 1000] [--against REV]
                             [--matcher-articles 100000] [--matcher-against REV]
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import time
import types
from collections.abc import Iterable
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from benchlib import ROOT, Deriver, emit, median, note, prepare_all, print_header, settled_rss
from corpus import Corpus, load_dev
from evalsets import DEFAULT_EVAL_DIR, load_sets

import consumers.prepare as prepare_module
from consumers.matcher import Matcher
from consumers.matching import match_batch
from consumers.prepare import Lineage
from consumers.settings import load_settings
from consumers.stages import fingerprint as fp
from ingest.contract import article_from_dict

# -- fingerprint: production beside an earlier commit ------------------------------------------

# The prepare chain before the fast path (F1-F5 and what followed) was moved into production.
BASELINE = "9693181"
# Loaded from git in this order, so each one's imports find the old modules before it.
PREPARE_CHAIN = ("consumers.stages.extract", "consumers.stages.normalise", "consumers.stages.fingerprint",
                 "consumers.prepare")


def prepare_chain_at(rev: str) -> types.ModuleType:
    """consumers/prepare.py and the stages it calls, as they were at git revision ``rev``."""
    return modules_at(rev, PREPARE_CHAIN)["consumers.prepare"]


def modules_at(rev: str, chain: tuple[str, ...]) -> dict[str, types.ModuleType]:
    """These modules as they were at git revision ``rev``.

    Each old module is executed from ``git show`` while it stands in sys.modules under its own
    name (so a later one imports the old versions of the earlier ones), and the live modules are
    put back after.
    """
    saved = {name: sys.modules.get(name) for name in chain}
    loaded: dict[str, types.ModuleType] = {}
    try:
        for name in chain:
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
    return loaded


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


# Fields that differ by design between fingerprint identities (another shingle hash scheme).
HASH_FIELDS = ("signature", "shingle_hashes", "fingerprint_identity")


def _equal(a: object, b: object) -> bool:
    return np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b


def same_fingerprint_identity(old_module: types.ModuleType, config: fp.FingerprintConfig) -> bool:
    """Whether the old chain names ``config`` as production does (each side's identity property:
    the records carry the identity of the config object passed in, production's on both sides)."""
    return old_module.FingerprintConfig.identity.fget(config) == config.identity


def differences(old_module: types.ModuleType, old: list, new: list, same_scheme: bool = True) -> list[str]:
    """Why each differing article differs: every field, and the wire record both ways (the hash
    fields and the wire record only when both sides have the same fingerprint identity)."""
    lineage = Lineage("articles.raw", 0, 0, None)
    found = []
    for index, (a, b) in enumerate(zip(old, new, strict=True)):
        if isinstance(a, str) or isinstance(b, str):
            if a != b:
                found.append(f"#{index}: {a!r} vs {b!r}")
            continue
        fields = [name for name in a.__slots__
                  if (same_scheme or name not in HASH_FIELDS) and not _equal(getattr(a, name), getattr(b, name))]
        wire = prepare_module.encode_prepared(b, lineage)
        if same_scheme and old_module.encode_prepared(a, lineage) != wire:
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
    same_scheme = same_fingerprint_identity(old_module, config)
    compared = ("text, content hash, key, signature, shingle hashes, wire record" if same_scheme else
                "text, content hash, key; not the hashes: another fingerprint identity")
    for name, articles in sets.items():
        found = differences(old_module, _prepare_or_error(old_module, articles, config),
                            _prepare_or_error(prepare_module, articles, config), same_scheme)
        identical[name] = not found
        print(f"{name}: {len(articles):,} articles, "
              + (f"identical ({compared})" if not found else f"{len(found)} DIFFER, first: {'; '.join(found[:3])}"))

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
            "ratio": round(median(ratios), 2), "same_fingerprint_identity": same_scheme}


# -- matcher: production beside an earlier commit ----------------------------------------------

# The matcher before M1-M3 and GC (datasketch's MinHashLSH, a numpy array per article) moved to production.
MATCHER_BASELINE = "9693181"
MATCHER_CHAIN = ("consumers.stages.match", "consumers.matcher")


def matcher_at(rev: str) -> types.ModuleType:
    """consumers/matcher.py and the match stage as they were at ``rev`` (see ``prepare_chain_at``)."""
    return modules_at(rev, MATCHER_CHAIN)["consumers.matcher"]


class NoStoredKeys:
    """The one store call ``match_batch`` makes: no article is stored from before."""

    @staticmethod
    def stored_keys(keys: object) -> set[str]:
        return set()


def _run_matcher(module: types.ModuleType | None, articles: Iterable) -> tuple[object, list, float]:
    """Articles through production's ``match_batch`` (module None) or an old matcher's ``process``
    loop (what its runners did), 500 a batch, made as they go (so that what the index keeps of
    them counts in its RSS); returns the matcher, every decision and the CPU seconds matching took."""
    settings = load_settings({})
    cls = Matcher if module is None else module.Matcher
    matcher = cls(settings.fingerprint_config(), settings.match_config(), settings.preferred_source_list,
                  settings.retention)
    lineage = Lineage("bench", 0, 0)
    decisions: list = []
    seconds = 0.0
    stream = iter(articles)
    while batch := list(islice(stream, 500)):
        started = time.process_time()
        if module is None:
            decisions += match_batch(matcher, NoStoredKeys(), [(a, lineage) for a in batch])  # type: ignore[arg-type]
        else:
            decisions += [matcher.process(a, lineage) for a in batch]
        seconds += time.process_time() - started
        matcher.take_changes()
    return matcher, decisions, seconds


def _outcome(matcher, decisions: list) -> tuple:  # type: ignore[no-untyped-def]
    """What must not change: every decision, every story (canonical, members) and member similarity."""
    return ([(d.outcome, d.story_id, d.candidates, d.similarity, d.story_size) for d in decisions],
            sorted((s.id, s.canonical_key, sorted(s.members)) for s in matcher.stories.values()),
            sorted((k, a.story_id, a.method, a.similarity.jaccard, a.similarity.containment)
                   for k, a in matcher.articles.items()))


def _timed_child(rev: str | None, deriver: Deriver, count: int, results) -> None:  # type: ignore[no-untyped-def]
    module = matcher_at(rev) if rev else None
    rss0 = settled_rss()
    matcher, _, seconds = _run_matcher(module, deriver.articles(count))
    results.put({"articles_per_s": count / seconds,
                 "rss_bytes_per_article": (settled_rss() - rss0) / len(matcher.articles)})


def matcher_part(count: int, check: int, rounds: int, against: str) -> dict:
    dev = load_dev()
    deriver = Deriver(prepare_all(list(Corpus(dev, seed=21).records(len(dev)))))
    old = matcher_at(against)
    checked = list(deriver.articles(check))
    same = _outcome(*_run_matcher(old, checked)[:2]) == _outcome(*_run_matcher(None, checked)[:2])
    print(f"identical decisions, stories and similarities on {check:,} derived articles: {'yes' if same else 'NO'}")

    # Side by side, each run in a forked child (its own RSS), alternating which goes first.
    context = multiprocessing.get_context("fork")
    runs: dict[str, list[dict]] = {"baseline": [], "production": []}
    for r in range(rounds):
        order = [("baseline", against), ("production", None)]
        for name, rev in order if r % 2 == 0 else order[::-1]:
            results = context.Queue()
            child = context.Process(target=_timed_child, args=(rev, deriver, count, results))
            child.start()
            runs[name].append(results.get())
            child.join()
    rate = {name: median([r["articles_per_s"] for r in rs]) for name, rs in runs.items()}
    rss = {name: median([r["rss_bytes_per_article"] for r in rs]) for name, rs in runs.items()}
    print(f"matcher from empty to {count:,} derived articles, {rounds} rounds (CPU time; RSS growth per article):")
    for name, label in (("baseline", against), ("production", "production")):
        ratio = rate[name] / rate["baseline"]
        print(f"  {label:12} {rate[name]:>8,.0f} articles/s  {ratio:5.2f}x  {rss[name]:>7,.0f} B/article")
    return {"against": against, "identical": same, "articles": count,
            "articles_per_s": {k: round(v) for k, v in rate.items()},
            "ratio": round(rate["production"] / rate["baseline"], 2),
            "rss_bytes_per_article": {k: round(v) for k, v in rss.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("fingerprint", "matcher", "all"), default="all")
    parser.add_argument("--articles", type=int, default=1000, help="700-word articles per fingerprint round")
    parser.add_argument("--rounds", type=int, default=3, help="fingerprint rounds (default 3)")
    parser.add_argument("--against", default=BASELINE,
                        help=f"git revision whose prepare chain production is compared with (default {BASELINE})")
    parser.add_argument("--matcher-articles", type=int, default=100_000,
                        help="articles in the matcher comparison (default 100,000)")
    parser.add_argument("--check", type=int, default=20_000, help="articles checked identical (default 20,000)")
    parser.add_argument("--matcher-rounds", type=int, default=2, help="matcher rounds (default 2)")
    parser.add_argument("--matcher-against", default=MATCHER_BASELINE,
                        help=f"git revision whose matcher production is compared with (default {MATCHER_BASELINE})")
    args = parser.parse_args()
    found = print_header("fast-path prototypes beside production (identical output required)")
    result: dict = {"script": "fastpath"}
    if args.part in ("fingerprint", "all"):
        note(f"fingerprint stage: production beside {args.against}")
        result["fingerprint"] = fingerprint_part(args.articles, args.rounds, args.against)
    if args.part in ("matcher", "all"):
        note(f"matcher: production beside {args.matcher_against}")
        result["matcher"] = matcher_part(args.matcher_articles, args.check, args.matcher_rounds, args.matcher_against)
    emit({**result, "versions": found})
    return 0


if __name__ == "__main__":
    sys.exit(main())
