"""Fingerprint stage: articles/s per core, production beside datasketch, measured side by side.

On the same ~700-word synthetic articles (bench/corpus.py: dev bodies concatenated, lightly
perturbed), each round times, in CPU seconds of this one process (time.process_time, so the
figure is "per core" and other load on the machine matters less):

- production: ``consumers.prepare.prepare_article`` on plain-text articles (clean + normalise +
  content hash + shingle hashes + MinHash, plus URL normalisation and the article key): the
  prepare role's work per article;
- production's ``normalise_text`` + ``fingerprint()`` on the cleaned text (the issue's "normalise +
  shingle + MinHash": Unicode folding, shingles, hashes, MinHash, without the chrome removal);
- production's ``fingerprint()`` alone, on the already normalised text (shingle + hash + MinHash);
- datasketch the documented way: a new ``MinHash(num_perm=128)`` per article and ``update(shingle)``
  once per shingle (default sha1 hashing), on the very shingles production makes;
- datasketch ``update_batch`` (default sha1) on the same shingles;
- datasketch ``MinHash.bulk`` with xxhash32 and ``LeanMinHash`` (the issue's third reference row).

The methods run in a rotating order each round, and the ratios are taken inside each round, then
the medians over rounds are quoted: the machine is shared, so only side-by-side ratios compare.
The per-shingle ``update`` is slow (about 0.2 articles per ms), so it runs on the first
``--update-share`` of the articles only; rates are per article, so they still compare.

Issue's reference (2-core machine, 700 words, 128 perms): update 170/s, update_batch sha1 1,275/s,
bulk + LeanMinHash xxhash 5,500/s. Targets: the stage (normalise + shingle + MinHash) >= 20x update,
and production ``prepare_article`` >= 4,000 articles/s per core.

    python bench/fingerprint.py [--quick] [--articles 2000] [--rounds 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import xxhash
from benchlib import Progress, emit, median, note, print_header, spread
from corpus import Corpus, load_dev
from datasketch import LeanMinHash, MinHash

from consumers.prepare import prepare_article
from consumers.settings import load_settings
from consumers.stages import fingerprint as fp
from consumers.stages.normalise import clean_text, normalise_text
from ingest.contract import article_from_dict
from ingest.urls import normalise_url

PRODUCTION = "production prepare_article"
NORMALISE_AND_STAGE = "production normalise_text + fingerprint()"
STAGE_ONLY = "production fingerprint() only"
UPDATE = "datasketch update per shingle (sha1)"
BATCH = "datasketch update_batch (sha1)"
BULK = "datasketch bulk + LeanMinHash (xxhash32)"


def cpu_rate(function: Callable[[], int]) -> float:
    """Articles per CPU second of ``function`` (which returns how many articles it handled)."""
    started = time.process_time()
    count = function()
    seconds = time.process_time() - started
    return count / seconds if seconds > 0 else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer articles and rounds (about 30 s)")
    parser.add_argument("--articles", type=int, help="articles per round (default 2000, quick 800)")
    parser.add_argument("--rounds", type=int, help="rounds (default 5, quick 3)")
    parser.add_argument("--words", type=int, default=700, help="words per article body (default 700)")
    parser.add_argument("--num-perm", type=int, default=128, help="permutations (default 128, as production)")
    parser.add_argument("--update-share", type=float, default=0.15,
                        help="share of the articles the slow per-shingle update runs on (default 0.15)")
    parser.add_argument("--profile", action="store_true",
                        help="also print cProfile's top 15 (cumulative and own time) of prepare_article")
    args = parser.parse_args()
    count = args.articles or (800 if args.quick else 2000)
    rounds = args.rounds or (3 if args.quick else 5)

    found = print_header("fingerprint stage: articles/s per core (CPU time of one process)")
    config = load_settings({}, {"num_perm": args.num_perm}).fingerprint_config()
    corpus = Corpus(load_dev(), words=args.words, seed=11)
    articles = [article_from_dict(record) for record in corpus.records(count)]
    cleaned = [clean_text(article.body or "") for article in articles]
    normalised = [normalise_text(text) for text in cleaned]
    shingle_sets = [list(fp.shingles(text, config)) for text in normalised]
    shingle_counts = [len(s) for s in shingle_sets]
    few = max(20, int(count * args.update_share))
    print(f"articles: {count:,} of {args.words} words (bench/corpus.py), {config.num_perm} permutations, "
          f"{median(shingle_counts):.0f} shingles per article (median); per-shingle update on the first {few}")

    def production() -> int:
        for article in articles:
            prepare_article(article, config)
        return len(articles)

    def normalise_and_stage() -> int:
        for text in cleaned:
            fp.fingerprint(normalise_text(text), config)
        return len(cleaned)

    def stage_only() -> int:
        for text in normalised:
            fp.fingerprint(text, config)
        return len(normalised)

    def update() -> int:
        for shingles in shingle_sets[:few]:
            minhash = MinHash(num_perm=config.num_perm)
            for shingle in shingles:
                minhash.update(shingle)
        return few

    def batch() -> int:
        for shingles in shingle_sets:
            minhash = MinHash(num_perm=config.num_perm)
            minhash.update_batch(shingles)
        return len(shingle_sets)

    def bulk() -> int:
        for minhash in MinHash.bulk(shingle_sets, num_perm=config.num_perm, hashfunc=xxhash.xxh32_intdigest):
            LeanMinHash(minhash)
        return len(shingle_sets)

    methods: dict[str, Callable[[], int]] = {PRODUCTION: production, NORMALISE_AND_STAGE: normalise_and_stage,
                                             STAGE_ONLY: stage_only, UPDATE: update,
                                             BATCH: batch, BULK: bulk}
    rates: dict[str, list[float]] = {name: [] for name in methods}
    ratio_update, ratio_batch, ratio_bulk, ratio_stage = [], [], [], []
    production()  # warm caches (regexes, permutations) outside the timed rounds
    progress = Progress("fingerprint rounds", rounds * len(methods), every=10)
    names = list(methods)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        this = {}
        for name in order:
            this[name] = cpu_rate(methods[name])
            rates[name].append(this[name])
            progress.update()
        ratio_update.append(this[PRODUCTION] / this[UPDATE])
        ratio_batch.append(this[PRODUCTION] / this[BATCH])
        ratio_bulk.append(this[PRODUCTION] / this[BULK])
        ratio_stage.append(this[NORMALISE_AND_STAGE] / this[UPDATE])
    progress.close()

    stages = stage_breakdown(articles, config)

    print()
    print(f"{'method':45} {'articles/s per core: median (min, max)':>44} {'x update':>9}")
    for name in names:
        ratio = median([a / b for a, b in zip(rates[name], rates[UPDATE], strict=True)])
        print(f"{name:45} {spread(rates[name]):>44} {ratio:8.1f}x")
    print()
    print(f"normalise + fingerprint() / datasketch update per shingle: {median(ratio_stage):.1f}x (median of "
          f"per-round ratios; the issue's stage, normalise + shingle + MinHash: target >= 20x)")
    print(f"production / datasketch update per shingle: {median(ratio_update):.1f}x (median of per-round ratios)")
    print(f"production / datasketch update_batch sha1:  {median(ratio_batch):.2f}x")
    print(f"production / datasketch bulk + LeanMinHash: {median(ratio_bulk):.2f}x")
    prod = median(rates[PRODUCTION])
    print(f"production: {prod:,.0f} articles/s per core (target >= 4,000: {'met' if prod >= 4000 else 'NOT met'})")
    print()
    print("where production's time goes (one pass, CPU microseconds per article):")
    total = stages.pop("prepare_article (total)")
    for name, micros in stages.items():
        print(f"  {name:38} {micros:8.1f} us  {micros / total:6.1%}")
    print(f"  {'prepare_article (total)':38} {total:8.1f} us")
    if args.profile:
        print()
        print(profile_text(production))

    emit({
        "script": "fingerprint", "articles": count, "words": args.words, "num_perm": config.num_perm,
        "rounds": rounds, "shingles_per_article": median(shingle_counts),
        # The "fingerprint stage" is normalise + shingle + MinHash; prepare_article is the whole
        # of the prepare role's work per article (chrome cleaning, URL and key too).
        "fingerprint_articles_per_s": round(median(rates[NORMALISE_AND_STAGE])),
        "prepare_article_articles_per_s": round(prod),
        "fingerprint_stage_only_articles_per_s": round(median(rates[STAGE_ONLY])),
        "datasketch_update_articles_per_s": round(median(rates[UPDATE])),
        "datasketch_update_batch_articles_per_s": round(median(rates[BATCH])),
        "datasketch_bulk_lean_xxhash_articles_per_s": round(median(rates[BULK])),
        "fingerprint_ratio_vs_datasketch_update": round(median(ratio_stage), 2),
        "prepare_article_ratio_vs_datasketch_update": round(median(ratio_update), 2),
        "prepare_article_ratio_vs_datasketch_update_batch": round(median(ratio_batch), 2),
        "prepare_article_ratio_vs_datasketch_bulk": round(median(ratio_bulk), 2),
        "stage_microseconds": {k: round(v, 1) for k, v in stages.items()} | {"total": round(total, 1)},
        "versions": found,
    })
    return 0


def stage_breakdown(articles: list, config: fp.FingerprintConfig) -> dict[str, float]:
    """CPU microseconds per article of each step of prepare_article, timed step by step."""
    n = len(articles)
    steps: dict[str, float] = {}

    def timed(name: str, function: Callable, inputs: list) -> list:
        started = time.process_time()
        out = [function(x) for x in inputs]
        steps[name] = (time.process_time() - started) / n * 1e6
        return out

    started = time.process_time()
    for article in articles:
        prepare_article(article, config)
    whole = (time.process_time() - started) / n * 1e6
    cleaned = timed("clean_text", clean_text, [a.body or "" for a in articles])
    normalised = timed("normalise_text", normalise_text, cleaned)
    timed("content_hash (sha256)", fp.content_hash, normalised)
    hashes = timed("shingle_hashes (word hashes, combine, sort)", lambda t: fp.shingle_hashes(t, config), normalised)
    timed("minhash_signature (numpy affine32)", lambda h: fp.minhash_signature(h, config), hashes)
    timed("normalise_url", lambda a: normalise_url(a.url), articles)
    steps["the rest (key, dataclass, ...)"] = max(0.0, whole - sum(steps.values()))
    steps["prepare_article (total)"] = whole
    return steps


def profile_text(function: Callable[[], int]) -> str:
    profile = cProfile.Profile()
    profile.enable()
    function()
    profile.disable()
    out = io.StringIO()
    for order in ("cumulative", "tottime"):
        out.write(f"cProfile of prepare_article over the articles, top 15 by {order}:\n")
        pstats.Stats(profile, stream=out).strip_dirs().sort_stats(order).print_stats(15)
    return out.getvalue()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        note("interrupted")
        sys.exit(130)
