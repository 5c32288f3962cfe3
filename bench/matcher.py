"""Matcher: articles/s of ``Matcher.process`` (LSH query + verify + insert) and index memory per article.

Pre-fingerprinted articles go through the production matcher (``consumers.embedded.build_matcher``
with default settings) in batches of 500, through ``consumers.matching.match_batch`` with
``take_changes()`` after each, as the runners do (a store that knows no key stands in for the
database; nothing is written anywhere). At each checkpoint (100k and 1M articles in the index;
``--quick``: 20k and 100k) it reports

- articles/s over the window since the previous checkpoint, in CPU time of this process ("per
  core") and in wall time; only ``process`` calls are timed, not making the inputs;
- memory per article: growth of this process's RSS (VmRSS of /proc/self/status; psutil is not
  installed) since the empty matcher, divided by the articles held, after a gc; beside it the
  split into the index's arrays (``CandidateIndex.nbytes``: LSH band entries, shingle hashes,
  ordinal bookkeeping) and the rest (Python objects per article and story), and the matcher's own
  ``estimated_bytes()`` (what the index-memory metric reports);
- candidates per article, and how the time splits between LSH query and the rest (verify,
  story bookkeeping, LSH insert), from the matcher's own Decision timings.

Inputs: a base set (the dev set as bench/corpus.py copies it, 4,948 articles, or ``--words 700``
synthetic articles) is fingerprinted once with the production prepare chain; the millions of
distinct articles after it are derived from it at numpy speed (bench/benchlib.py ``Deriver``:
per generation every signature value and shingle hash XORed with one random 32-bit mask, hash
arrays re-sorted, new keys and content hashes). Each generation thus repeats the dev set's copy
structure (about 8 LSH candidates per article, the same stories and verifications) as new,
unrelated stories; values of different generations collide only by chance, like unrelated news.

Beside it, in a forked child (so its memory does not count here), the LSH band table alone
(``match.band_table``; packed sorted uint64 runs for r = 1): inserts/s and queries/s and RSS per
entry at the first checkpoint size (the issue's reference for datasketch's MinHashLSH, which it
replaced: insert 17,400/s, query 34,500/s, ~4.5 KB/article).
Targets: matcher >= 10,000 articles/s, index <= 1 KB per article.

    python bench/matcher.py [--quick] [--sizes 100000,1000000] [--words 700] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import multiprocessing
import pstats
import sys
import time
from collections import Counter
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import Deriver, Progress, emit, median, note, prepare_all, print_header, settled_rss
from corpus import Corpus, load_dev

from consumers.embedded import build_matcher
from consumers.matching import match_batch
from consumers.prepare import Lineage
from consumers.settings import load_settings
from consumers.stages.match import band_table, lsh_bands

BATCH = 500


class NoStoredKeys:
    """The one store call ``match_batch`` makes: no article is stored from before."""

    @staticmethod
    def stored_keys(keys: object) -> set[str]:
        return set()


NO_STORE = NoStoredKeys()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="checkpoints at 20k and 100k (about a minute)")
    parser.add_argument("--sizes", help="comma-separated checkpoints (default 100000,1000000; quick 20000,100000)")
    parser.add_argument("--words", type=int, default=None,
                        help="base set of synthetic articles of this many words (default: dev lengths)")
    parser.add_argument("--base", type=int, default=None, help="base set size (default: the dev set's 4,948)")
    parser.add_argument("--lsh-queries", type=int, default=5000, help="queries in the LSH-alone measurement")
    parser.add_argument("--no-lsh", action="store_true", help="skip the LSH-alone measurement")
    parser.add_argument("--profile", action="store_true",
                        help="after the last checkpoint, cProfile the next 5,000 process() calls (top 15)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in (args.sizes or ("20000,100000" if args.quick else "100000,1000000")).split(","))

    found = print_header("matcher: Matcher.process (LSH query + verify + insert) and index memory")
    settings = load_settings({})
    dev = load_dev()
    corpus = Corpus(dev, words=args.words, seed=21)
    records = list(corpus.records(args.base or len(dev)))
    deriver = Deriver(prepare_all(records))
    shingles = median(len(p.shingle_hashes) for p in deriver.base)
    print(f"base set: {len(deriver):,} fingerprinted articles "
          f"({'dev lengths' if args.words is None else f'{args.words} words'}, {shingles:.0f} shingles median); "
          f"derived generations up to {sizes[-1]:,} articles")

    lsh = {} if args.no_lsh else lsh_alone(deriver, settings, sizes[0], args.lsh_queries)

    matcher = build_matcher(settings)
    print(f"LSH bands (b, r) = {matcher.index.bands}")
    lineage = Lineage("bench", 0, 0)
    rss0 = settled_rss()
    stream = deriver.articles(sizes[-1] + (5000 if args.profile else 0))
    outcomes: Counter[str] = Counter()
    done = 0
    checkpoints = []
    window = {"cpu": 0.0, "wall": 0.0, "query": 0.0, "rest": 0.0, "candidates": 0, "n": 0}
    progress = Progress("matcher", sizes[-1])
    for size in sizes:
        while done < size:
            batch = list(islice(stream, min(BATCH, size - done)))
            cpu, wall = time.process_time(), time.perf_counter()
            decisions = match_batch(matcher, NO_STORE, [(article, lineage) for article in batch])  # type: ignore[arg-type]
            window["cpu"] += time.process_time() - cpu
            window["wall"] += time.perf_counter() - wall
            matcher.take_changes()
            del batch
            for decision in decisions:
                outcomes[decision.outcome] += 1
                window["query"] += decision.query_seconds
                window["rest"] += decision.verify_seconds
                window["candidates"] += decision.candidates
            window["n"] += len(decisions)
            done += len(decisions)
            progress.update(len(decisions))
        rss = settled_rss()
        held = len(matcher.articles)
        arrays = matcher.index.nbytes()
        checkpoints.append({
            "articles": size, "held": held,
            "articles_per_s": window["n"] / window["cpu"], "articles_per_s_wall": window["n"] / window["wall"],
            "window": window["n"], "candidates_per_article": window["candidates"] / window["n"],
            "query_share": window["query"] / (window["query"] + window["rest"]),
            "rss_bytes_per_article": (rss - rss0) / held, "rss_growth_mb": (rss - rss0) / 1e6,
            "lsh_bytes_per_article": arrays["lsh"] / held,
            "shingle_hash_bytes_per_article": arrays["hashes"] / held,
            "bookkeeping_bytes_per_article": arrays["bookkeeping"] / held,
            "objects_bytes_per_article": (rss - rss0 - sum(arrays.values())) / held,
            "estimated_bytes_per_article": matcher.estimated_bytes() / held,
            "stories": len(matcher.stories),
        })
        progress.note(f"{size:,} in the index: {checkpoints[-1]['articles_per_s']:,.0f} articles/s, "
                      f"{checkpoints[-1]['rss_bytes_per_article']:,.0f} B/article")
        window = {"cpu": 0.0, "wall": 0.0, "query": 0.0, "rest": 0.0, "candidates": 0, "n": 0}
    progress.close()
    profile = profile_text(matcher, stream, lineage) if args.profile else None

    print()
    print(f"{'in index':>10} {'art/s CPU':>10} {'art/s wall':>10} {'cand/art':>9} {'query %':>8} "
          f"{'RSS B/art':>10} {'LSH B':>6} {'hashes B':>9} {'ords B':>7} {'objects B':>10} {'estimate B':>11} "
          f"{'stories':>9}")
    for c in checkpoints:
        print(f"{c['articles']:>10,} {c['articles_per_s']:>10,.0f} {c['articles_per_s_wall']:>10,.0f} "
              f"{c['candidates_per_article']:>9.1f} {c['query_share']:>8.0%} {c['rss_bytes_per_article']:>10,.0f} "
              f"{c['lsh_bytes_per_article']:>6,.0f} {c['shingle_hash_bytes_per_article']:>9,.0f} "
              f"{c['bookkeeping_bytes_per_article']:>7,.0f} {c['objects_bytes_per_article']:>10,.0f} "
              f"{c['estimated_bytes_per_article']:>11,.0f} {c['stories']:>9,}")
    total = sum(outcomes.values())
    print("outcomes: " + ", ".join(f"{k} {v / total:.1%}" for k, v in outcomes.most_common()))
    print("(articles/s are for the window since the previous checkpoint; RSS B/art is the process's RSS growth "
          "since the empty matcher over the articles held; of it, the index's arrays: LSH band entries, shingle "
          "hashes, ordinal bookkeeping; objects B is the rest: Python objects per article and story)")
    if lsh:
        print(f"LSH band table alone, {lsh['entries']:,} entries: insert {lsh['insert_per_s']:,.0f}/s, "
              f"query {lsh['query_per_s']:,.0f}/s (CPU time), {lsh['rss_bytes_per_entry']:,.0f} B RSS per entry, "
              f"{lsh['candidates_per_query']:.2f} candidates per query of an unrelated signature")
    last = checkpoints[-1]
    print(f"matcher at {last['articles']:,}: {last['articles_per_s']:,.0f} articles/s per core "
          f"(target >= 10,000: {'met' if last['articles_per_s'] >= 10_000 else 'NOT met'}); "
          f"{last['rss_bytes_per_article']:,.0f} B/article (target <= 1,024: "
          f"{'met' if last['rss_bytes_per_article'] <= 1024 else 'NOT met'})")
    if profile:
        print()
        print(profile)
    emit({
        "script": "matcher", "base_articles": len(deriver), "words": args.words, "shingles_per_article": shingles,
        "lsh_bands": list(matcher.index.bands),
        "matcher_articles_per_s": round(last["articles_per_s"]),
        "matcher_articles_per_s_wall": round(last["articles_per_s_wall"]),
        "index_bytes_per_article": round(last["rss_bytes_per_article"]),
        "checkpoints": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in c.items()} for c in checkpoints],
        "outcomes": dict(outcomes), "lsh_alone": lsh, "versions": found,
    })
    return 0


def lsh_alone(deriver: Deriver, settings, entries: int, queries: int) -> dict:
    """The LSH band table alone, in a forked child: inserts, queries, RSS per entry."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_lsh_child, args=(deriver, settings, entries, queries, results))
    note(f"LSH alone: {entries:,} inserts and {queries:,} queries in a child process")
    child.start()
    result = results.get()
    child.join()
    return result


def _lsh_child(deriver: Deriver, settings, entries: int, queries: int, results) -> None:  # type: ignore[no-untyped-def]
    index = band_table(*lsh_bands(settings.fingerprint_config(), settings.match_config()))
    signatures = [a.signature for a in deriver.articles(entries, start=len(deriver))]
    probes = [a.signature for a in deriver.articles(queries, start=len(deriver) + entries + 7 * len(deriver))]
    rss0 = settled_rss()
    started = time.process_time()
    for ordinal, signature in enumerate(signatures):
        index.add(ordinal, signature)
    insert_seconds = time.process_time() - started
    rss = settled_rss()
    started = time.process_time()
    found = sum(len(set(index.query(signature))) for signature in probes)
    query_seconds = time.process_time() - started
    results.put({"entries": entries, "insert_per_s": round(entries / insert_seconds),
                 "query_per_s": round(len(probes) / query_seconds),
                 "rss_bytes_per_entry": round((rss - rss0) / entries),
                 "candidates_per_query": found / len(probes)})


def profile_text(matcher, stream, lineage: Lineage) -> str:  # type: ignore[no-untyped-def]
    batch = list(islice(stream, 5000))
    gc.collect()
    profile = cProfile.Profile()
    profile.enable()
    for start in range(0, len(batch), BATCH):
        match_batch(matcher, NO_STORE, [(a, lineage) for a in batch[start:start + BATCH]])  # type: ignore[arg-type]
        matcher.take_changes()
    profile.disable()
    out = io.StringIO()
    for order in ("cumulative", "tottime"):
        out.write(f"cProfile of Matcher.process, {len(batch):,} articles with {len(matcher.articles):,} in the "
                  f"index, top 15 by {order}:\n")
        pstats.Stats(profile, stream=out).strip_dirs().sort_stats(order).print_stats(15)
    return out.getvalue()


if __name__ == "__main__":
    sys.exit(main())
