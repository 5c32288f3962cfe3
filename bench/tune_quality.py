"""Sweep newsdedup's fingerprint and match parameters on dev, dev-real and helsinki-proxy; rank by the weakest F1.

Fast path, same decisions as production: each article is prepared (clean → normalise →
fingerprint, ``consumers.prepare.prepare_article``) once per ``FingerprintConfig``, then
``consumers.matcher.Matcher`` — the pure core that ``run_embedded`` drives — runs once per
``MatchConfig`` in file (= published_at) order, with no database. The story of an article is
``matcher.articles[key].story_id`` (followed through merges with ``Matcher.story``), its
canonical the story's ``canonical_key`` mapped back to the input id. As in production, an
article the matcher reports as DUPLICATE (same URL and content) is not stored, so it scores as
a singleton. The run ends by checking the defaults' row against the real production path
(``run_embedded`` into SQLite), so a drift between the two shows.

LSH bands come from datasketch's optimiser (``datasketch.lsh._optimal_param(threshold,
num_perm, false_positive_weight, false_negative_weight)``) under two weightings: 0.5/0.5
(datasketch's default) and 0.1/0.9 (recall-heavy, because verification removes false
positives). A MatchConfig with a ``false_negative_weight`` field gets the weight and lets the
production code ask the optimiser; an older one gets the optimiser's (b, r) set explicitly.
A table of both picks, with the chance that a pair becomes a candidate at a few Jaccard
similarities, is printed first.

Per configuration: pairwise P/R/F1 on dev and on dev-real, F1 on helsinki-proxy (our labels of
real scrapes, bench/labels/README.md), canonical accuracy on dev (share of gold clusters whose
earliest article is the canonical of its story), the mean and the minimum of the three F1s, and
the fingerprint stage's throughput for its FingerprintConfig (articles per CPU second of
``prepare_article`` in one process, so busy neighbours do not skew it). The top
rows by the minimum F1 are printed, the current defaults' row marked with ``*``.

Runtime (a run costs about 1.3 CPU seconds, mostly datasketch's LSH and the exact verification;
both grids print their wall and CPU time at the end): ``--quick`` is 5 fingerprint × 32 match
configurations = 160 runs, 209 CPU seconds, 127 s wall on 2 cores (2026-11-28). The full grid is
12 × 192 = 2,304 runs, about 50 CPU minutes: some 25-30 minutes on 2 idle cores. Slice it with
``--shingle-sizes`` / ``--num-perms``.

A note on reading the table: with balanced LSH weights, which pairs become candidates depends on
the MinHash seed, and on helsinki-proxy one missed or found edge of a write-thru chain moves F1 by
several points (0.81 to 0.95 across seeds 1-3 at the same thresholds). The recall-heavy weights
make it stable, which is why the defaults use them even where a balanced row scores higher here.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from pathlib import Path

from datasketch.lsh import _optimal_param
from evalsets import EvalSet, add_eval_dir_argument, load_sets
from tqdm import tqdm

from consumers.embedded import run_embedded
from consumers.evaluation import Scores, score
from consumers.matcher import DUPLICATE, Matcher
from consumers.prepare import Lineage, PreparedArticle, prepare_article
from consumers.settings import Settings, load_settings
from consumers.settings import replace as replace_settings
from consumers.stages.fingerprint import FingerprintConfig
from consumers.stages.match import MatchConfig
from consumers.storage import schema
from consumers.storage.database import make_engine
from consumers.storage.store import StoryStore
from ingest.contract import Article, InvalidArticle, parse_article

BALANCED = (0.5, 0.5)  # datasketch's default weights
RECALL_HEAVY = (0.1, 0.9)
# A MatchConfig that carries the optimiser's weight itself (newer source) gets it set; an older one
# gets datasketch's pick for the weights as explicit (num_bands, rows_per_band).
WEIGHT_FIELD = "false_negative_weight"
HAS_WEIGHT_FIELD = WEIGHT_FIELD in {f.name for f in fields(MatchConfig)}
TOP = 15
FORK = multiprocessing.get_context("fork")  # workers inherit the articles instead of unpickling them


@dataclass(frozen=True)
class Grid:
    word_shingle_sizes: tuple[int, ...]
    num_perms: tuple[int, ...]
    lsh_thresholds: tuple[float, ...]
    band_weights: tuple[tuple[float, float], ...]
    jaccard_thresholds: tuple[float, ...]
    containment_thresholds: tuple[float, ...]
    min_shingles: tuple[int, ...]
    min_size_ratios: tuple[float, ...]
    fingerprint_pairs: tuple[tuple[int, int], ...] | None = None  # (shingle size, num_perm) instead of the product

    def _fingerprint_pairs(self) -> tuple[tuple[int, int], ...]:
        return self.fingerprint_pairs or tuple(itertools.product(self.word_shingle_sizes, self.num_perms))

    def _match_axes(self) -> list[tuple]:
        return list(itertools.product(self.lsh_thresholds, self.band_weights, self.jaccard_thresholds,
                                      self.containment_thresholds, self.min_shingles, self.min_size_ratios))

    def runs(self) -> int:
        return len(self._fingerprint_pairs()) * len(self._match_axes())

    def fingerprint_configs(self, defaults: FingerprintConfig) -> list[FingerprintConfig]:
        return [replace(defaults, word_shingle_size=size, num_perm=num_perm)
                for size, num_perm in self._fingerprint_pairs()]

    def match_configs(self, num_perm: int, defaults: MatchConfig) -> list[tuple[MatchConfig, tuple[float, float]]]:
        configs = []
        for threshold, weights, jaccard, containment, min_shingles, min_size_ratio in self._match_axes():
            config = replace(defaults, lsh_threshold=threshold, jaccard_threshold=jaccard,
                             containment_threshold=containment, min_shingles=min_shingles,
                             min_size_ratio=min_size_ratio)
            configs.append((with_band_weights(config, num_perm, weights), weights))
        return configs


def with_band_weights(config: MatchConfig, num_perm: int, weights: tuple[float, float]) -> MatchConfig:
    if HAS_WEIGHT_FIELD:
        return replace(config, num_bands=None, rows_per_band=None, **{WEIGHT_FIELD: weights[1]})
    if weights == BALANCED:  # what MinHashLSH picks by itself
        return replace(config, num_bands=None, rows_per_band=None)
    # _optimal_param is datasketch's private optimiser, the one MinHashLSH itself calls.
    bands, rows = _optimal_param(config.lsh_threshold, num_perm, *weights)
    return replace(config, num_bands=bands, rows_per_band=rows)


def band_weights_of(config: MatchConfig) -> tuple[float, float]:
    """The optimiser's (false positive, false negative) weights a config's bands come from."""
    weight = getattr(config, WEIGHT_FIELD, BALANCED[1])
    return (round(1.0 - weight, 6), weight)


QUICK = Grid(
    word_shingle_sizes=(2, 3, 4, 5), num_perms=(64, 128, 256),
    # shingle sizes around the default at 128 permutations, and other permutation counts at the default size
    fingerprint_pairs=((3, 128), (4, 128), (5, 128), (4, 64), (4, 256)),
    lsh_thresholds=(0.15, 0.3), band_weights=(BALANCED, RECALL_HEAVY),
    jaccard_thresholds=(0.32, 0.4), containment_thresholds=(0.6, 0.8), min_shingles=(20,),
    min_size_ratios=(0.0, 0.15),  # 0.15 keeps live pages and digests from absorbing the items they quote
)
FULL = Grid(
    word_shingle_sizes=(2, 3, 4, 5), num_perms=(64, 128, 256),
    lsh_thresholds=(0.15, 0.3), band_weights=(BALANCED, RECALL_HEAVY),
    jaccard_thresholds=(0.3, 0.32, 0.35, 0.4), containment_thresholds=(0.5, 0.6, 0.7, 0.8),
    min_shingles=(20,), min_size_ratios=(0.0, 0.15, 0.25),
)


@dataclass(frozen=True)
class Result:
    fingerprint: FingerprintConfig
    match: MatchConfig
    weights: tuple[float, float]
    bands: tuple[int, int]
    dev: Scores
    real: Scores
    proxy: Scores  # helsinki-proxy: our labels of real scrapes (bench/labels/README.md)
    fingerprint_articles_per_second: float
    is_default: bool

    @property
    def min_f1(self) -> float:
        return min(self.dev.pairwise_f1, self.real.pairwise_f1, self.proxy.pairwise_f1)

    @property
    def mean_f1(self) -> float:
        return (self.dev.pairwise_f1 + self.real.pairwise_f1 + self.proxy.pairwise_f1) / 3

    def rank_key(self) -> tuple:
        """Best first: the weaker F1, then the mean, then dev canonical accuracy; ties by config for a stable order."""
        return (-self.min_f1, -self.mean_f1, -self.dev.canonical_accuracy, repr(self.fingerprint), repr(self.match))

    def summary(self) -> dict:
        return {
            "word_shingle_size": self.fingerprint.word_shingle_size, "num_perm": self.fingerprint.num_perm,
            "lsh_threshold": self.match.lsh_threshold, "weights": list(self.weights), "bands": list(self.bands),
            "jaccard_threshold": self.match.jaccard_threshold,
            "containment_threshold": self.match.containment_threshold, "min_shingles": self.match.min_shingles,
            "min_size_ratio": self.match.min_size_ratio,
            "dev_f1": round(self.dev.pairwise_f1, 4), "dev_real_f1": round(self.real.pairwise_f1, 4),
            "helsinki_proxy_f1": round(self.proxy.pairwise_f1, 4),
            "min_f1": round(self.min_f1, 4), "canonical_accuracy": round(self.dev.canonical_accuracy, 4),
        }


# -- work done in the worker processes ---------------------------------------------------------
# The parsed articles and, later, the prepared ones reach the workers by fork, not by pickling.

_ARTICLES: dict[str, list[Article]] = {}
_PREPARED: dict[tuple[FingerprintConfig, str], list[PreparedArticle]] = {}
_SETS: list[EvalSet] = []


def fingerprint_all(config: FingerprintConfig) -> tuple[FingerprintConfig, dict[str, list[PreparedArticle]], float]:
    """Prepare every article once under ``config``; returns them with the stage's articles per CPU second."""
    prepared: dict[str, list[PreparedArticle]] = {}
    started = time.process_time()  # CPU time: the other worker and the parent share the cores meanwhile
    for name, articles in _ARTICLES.items():
        prepared[name] = []
        for article in articles:
            try:
                prepared[name].append(prepare_article(article, config))
            except InvalidArticle:  # no text left after cleaning: production rejects it, it scores as a singleton
                continue
    seconds = time.process_time() - started
    return config, prepared, sum(map(len, prepared.values())) / seconds


def match_one(fingerprint: FingerprintConfig, match: MatchConfig,
              settings: Settings) -> tuple[Scores, Scores, Scores, tuple[int, int]]:
    """Run the matcher on every set under one MatchConfig and score it."""
    results = {}
    bands: tuple[int, int] = (0, 0)
    for evalset in _SETS:
        prepared = _PREPARED[(fingerprint, evalset.name)]
        matcher = Matcher(fingerprint, match, settings.preferred_source_list, settings.retention)
        bands = matcher.index.bands
        stored = []
        for offset, article in enumerate(prepared):
            if matcher.process(article, Lineage(f"file:{evalset.name}", 0, offset)).outcome != DUPLICATE:
                stored.append(article)
        changes = matcher.take_changes()
        input_id = {article.key: article.input_id for article in stored}
        predicted, canonical_of = {}, {}
        for article in stored:
            story = matcher.story(matcher.articles[article.key].story_id, changes)
            while story.merged_into is not None:  # only if a story id went stale; merges re-point members
                story = matcher.story(story.merged_into, changes)
            predicted[article.input_id] = story.id
            canonical_of[story.id] = input_id[story.canonical_key]
        published: dict[str, datetime] = {article.input_id: article.published_at for article in stored}
        results[evalset.name] = score(evalset.gold, predicted, canonical_of, published)
    return results["dev"], results["dev-real"], results["helsinki-proxy"], bands


# -- the main process --------------------------------------------------------------------------


def parse_all(sets: Sequence[EvalSet], max_bytes: int) -> dict[str, list[Article]]:
    parsed: dict[str, list[Article]] = {}
    for evalset in sets:
        parsed[evalset.name] = []
        for line in evalset.lines:
            try:
                parsed[evalset.name].append(parse_article(line, max_bytes))
            except InvalidArticle as exc:  # the production path rejects these too; they score as singletons
                print(f"{evalset.name}: rejected an article: {exc}", file=sys.stderr)
    return parsed


def production_scores(sets: Sequence[EvalSet], settings: Settings) -> dict[str, Scores]:
    """Scores of the real embedded path with the defaults, to check the fast path against."""
    scores = {}
    with tempfile.TemporaryDirectory() as folder:
        for evalset in sets:
            run = replace_settings(settings, database_url=f"sqlite:///{folder}/{evalset.name}.db")
            engine = make_engine(run.database_url)
            try:
                schema.upgrade(engine)
                store = StoryStore(engine)
                run_embedded(evalset.lines, evalset.articles_path.name, run, store)
                rows = list(store.export_rows())
            finally:
                engine.dispose()
            published = {article.id: article.published_at for article in _ARTICLES[evalset.name]}
            scores[evalset.name] = score(evalset.gold, {row.input_id: row.story_id for row in rows},
                                         {row.story_id: row.canonical_input_id for row in rows}, published)
    return scores


def print_band_table(grid: Grid, num_perms: Sequence[int]) -> None:
    similarities = (0.2, 0.3, 0.5, 0.8)
    print("LSH (b, r) that datasketch's optimiser picks, and P(pair becomes a candidate) = 1-(1-J^r)^b at Jaccard J:")
    header = f"| threshold | perms | FP/FN weights | (b, r)  | {' | '.join(f'J={s:.1f} ' for s in similarities)} |"
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.strip("|").split("|")) + "|")
    for threshold, num_perm, weights in itertools.product(grid.lsh_thresholds, num_perms, grid.band_weights):
        b, r = _optimal_param(threshold, num_perm, *weights)
        chances = " | ".join(f"{1 - (1 - s ** r) ** b:6.3f}" for s in similarities)
        print(f"| {threshold:9.2f} | {num_perm:5d} | {weights[0]:.1f} / {weights[1]:.1f}     | "
              f"{f'{b}x{r}':7} | {chances} |")
    print()


COLUMNS = ("   #", "w", "perms", "(b, r)", "lsh ", "FP/FN  ", "jacc", "cont", "min sh", "ratio", "dev P ", "dev R ",
           "dev F1", "real P", "real R", "real F1", "hel. F1", "canon.", "mean F1", "min F1", "fp art/s")


def result_cells(rank: int, r: Result) -> list[str]:
    fp, mc = r.fingerprint, r.match
    return [f"{rank:3d}" + ("*" if r.is_default else " "), str(fp.word_shingle_size), f"{fp.num_perm:5d}",
            f"{r.bands[0]}x{r.bands[1]}", f"{mc.lsh_threshold:.2f}", f"{r.weights[0]:.1f}/{r.weights[1]:.1f}",
            f"{mc.jaccard_threshold:.2f}", f"{mc.containment_threshold:.2f}", str(mc.min_shingles),
            f"{mc.min_size_ratio:.2f}", f"{r.dev.pairwise_precision:.4f}", f"{r.dev.pairwise_recall:.4f}",
            f"{r.dev.pairwise_f1:.4f}", f"{r.real.pairwise_precision:.4f}", f"{r.real.pairwise_recall:.4f}",
            f"{r.real.pairwise_f1:.4f}", f"{r.proxy.pairwise_f1:.4f}",
            f"{r.dev.canonical_accuracy:.4f}", f"{r.mean_f1:.4f}", f"{r.min_f1:.4f}",
            f"{r.fingerprint_articles_per_second:.0f}"]


def print_results(results: Sequence[Result], top: int) -> None:
    """The best ``top`` rows, then the defaults' row if it is further down."""
    shown = list(enumerate(results[:top], 1))
    default = next(((rank, r) for rank, r in enumerate(results, 1) if r.is_default), None)
    if default is not None and default[0] > top:
        shown.append(default)
    widths = [len(column) for column in COLUMNS]
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    for rank, r in shown:
        print("| " + " | ".join(cell.rjust(width) for cell, width in zip(result_cells(rank, r), widths, strict=True))
              + " |")


def fingerprint_phase(configs: Sequence[FingerprintConfig], jobs: int,
                      progress: bool) -> dict[FingerprintConfig, float]:
    """Fill _PREPARED for every config, in parallel; returns each config's articles per CPU second."""
    speed: dict[FingerprintConfig, float] = {}
    with (ProcessPoolExecutor(jobs, mp_context=FORK) as pool,
          tqdm(total=len(configs), desc="fingerprint", unit=" configs", file=sys.stderr, disable=not progress) as bar):
        for future in as_completed([pool.submit(fingerprint_all, config) for config in configs]):
            config, prepared, speed[config] = future.result()
            for name, articles in prepared.items():
                _PREPARED[(config, name)] = articles
            bar.update()
    return speed


def match_phase(tasks: Sequence[tuple[FingerprintConfig, MatchConfig, tuple[float, float]]], settings: Settings,
                speed: dict[FingerprintConfig, float], jobs: int, progress: bool) -> list[Result]:
    """One matcher run per task, in parallel; the results best first."""
    default_fp, default_mc = settings.fingerprint_config(), settings.match_config()
    results: list[Result] = []
    with (ProcessPoolExecutor(jobs, mp_context=FORK) as pool,  # a new pool: it forks with _PREPARED filled
          tqdm(total=len(tasks), desc="match", unit=" runs", file=sys.stderr, disable=not progress) as bar):
        futures = {pool.submit(match_one, fp, mc, settings): (fp, mc, weights) for fp, mc, weights in tasks}
        for future in as_completed(futures):
            fp, mc, weights = futures[future]
            dev, real, proxy, bands = future.result()
            results.append(Result(fp, mc, weights, bands, dev, real, proxy, speed[fp],
                                  fp == default_fp and mc == default_mc))
            bar.update()
    return sorted(results, key=Result.rank_key)


def check_production(sets: Sequence[EvalSet], settings: Settings, default: Result) -> dict[str, float]:
    production = production_scores(sets, settings)
    check = {"dev_f1": production["dev"].pairwise_f1, "dev_real_f1": production["dev-real"].pairwise_f1,
             "canonical_accuracy": production["dev"].canonical_accuracy}
    fast = (default.dev.pairwise_f1, default.real.pairwise_f1, default.dev.canonical_accuracy)
    agree = all(abs(a - b) < 1e-9 for a, b in zip(check.values(), fast, strict=True))
    print(f"Production path (run_embedded + SQLite) with the defaults: dev F1 {check['dev_f1']:.4f}, dev-real F1 "
          f"{check['dev_real_f1']:.4f}, canonical accuracy {check['canonical_accuracy']:.4f}: "
          f"{'agrees with' if agree else 'DIFFERS FROM'} the fast path.")
    return check


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Sweep newsdedup's fingerprint and match parameters on dev, dev-real and helsinki-proxy "
                    "(our labels of real scrapes; pairwise P/R/F1, "
                    "canonical accuracy, fingerprint throughput); print the best configurations by the weaker F1.",
        epilog=f"Full grid: {FULL.runs()} runs, about 25-30 min on 2 idle cores; --quick: {QUICK.runs()} runs, "
               f"about 2 min. Ends with one JSON line of the key figures.")
    add_eval_dir_argument(parser)
    parser.add_argument("--quick", action="store_true", help=f"the small grid ({QUICK.runs()} runs)")
    parser.add_argument("--shingle-sizes", type=int_list, metavar="N,N",
                        help="word_shingle_size values to sweep instead of the grid's (e.g. 3)")
    parser.add_argument("--num-perms", type=int_list, metavar="N,N",
                        help="num_perm values to sweep instead of the grid's (e.g. 128,256)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    parser.add_argument("--top", type=int, default=TOP, help=f"rows to print, best first (default {TOP})")
    parser.add_argument("--csv", type=Path, help="also write every run's figures to this CSV file")
    parser.add_argument("--no-check", action="store_true",
                        help="skip re-running the defaults through the production path (run_embedded + SQLite)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    settings = load_settings({})
    default_fp, default_mc = settings.fingerprint_config(), settings.match_config()
    grid = QUICK if args.quick else FULL
    if args.shingle_sizes or args.num_perms:  # a slice of the grid: the product of the given axes
        grid = replace(grid, fingerprint_pairs=None,
                       word_shingle_sizes=tuple(args.shingle_sizes or grid.word_shingle_sizes),
                       num_perms=tuple(args.num_perms or grid.num_perms))
    fingerprint_configs = grid.fingerprint_configs(default_fp)
    sets = load_sets(args.eval_dir)
    _SETS.extend(sets)
    _ARTICLES.update(parse_all(sets, settings.max_message_bytes))

    tasks = [(fp, mc, weights)
             for fp in fingerprint_configs for mc, weights in grid.match_configs(fp.num_perm, default_mc)]
    default_task = (default_fp, default_mc, band_weights_of(default_mc))
    if default_task not in tasks:  # the defaults' row is always there to compare with
        tasks.append(default_task)
        if default_fp not in fingerprint_configs:
            fingerprint_configs.append(default_fp)
    speed = fingerprint_phase(fingerprint_configs, args.jobs, not args.no_progress)
    results = match_phase(tasks, settings, speed, args.jobs, not args.no_progress)

    grid_name = ("quick" if args.quick else "full") + (" (slice)" if args.shingle_sizes or args.num_perms else "")
    print(f"Grid: {grid_name}, {len(fingerprint_configs)} fingerprint configs x match configs = {len(results)} runs "
          f"on {', '.join(f'{s.name} ({len(s)} articles)' for s in sets)}.\n")
    print_band_table(grid, sorted({fp.num_perm for fp in fingerprint_configs}))
    print(f"Fingerprint stage (prepare_article: clean, normalise, shingle, MinHash), {sum(map(len, sets))} articles, "
          f"per CPU second of one process:")
    for fp in fingerprint_configs:
        print(f"  word {fp.word_shingle_size}-grams, {fp.num_perm:3d} perms: {speed[fp]:6.0f} articles/s")
    print()
    print(f"Top {args.top} by min(dev F1, dev-real F1); '*' marks the current defaults "
          f"(word {default_fp.word_shingle_size}-grams, {default_fp.num_perm} perms, lsh {default_mc.lsh_threshold}, "
          f"jaccard {default_mc.jaccard_threshold}, containment {default_mc.containment_threshold}, "
          f"min_shingles {default_mc.min_shingles}, min_size_ratio {default_mc.min_size_ratio}). 'canon.' is dev "
          f"canonical accuracy; P/R/F1 pairwise; 'fp art/s' the fingerprint stage's articles per CPU second.")
    print_results(results, args.top)

    default_rank, default = next((rank, r) for rank, r in enumerate(results, 1) if r.is_default)
    best = results[0]
    ties = sum(1 for r in results if r.min_f1 == best.min_f1)
    print(f"\nBest: {json.dumps(best.summary())}" + (f" ({ties} configs share its min F1)" if ties > 1 else ""))
    print(f"Defaults: rank {default_rank} of {len(results)}: {json.dumps(default.summary())}")
    check = None if args.no_check else check_production(sets, settings, default)
    if args.csv:
        write_csv(args.csv, results)
        print(f"every run written to {args.csv}")
    wall, cpu = time.perf_counter() - started, cpu_seconds()
    # CPU time too: wall time on a shared machine says more about the neighbours than about this script.
    print(f"runtime: {wall:.0f} s wall, {cpu:.0f} s CPU over {args.jobs} worker(s)")
    print(json.dumps({
        "script": "tune_quality", "grid": grid_name, "runs": len(results),
        "seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "jobs": args.jobs,
        "best": best.summary(), "best_ties": ties, "defaults": {**default.summary(), "rank": default_rank},
        "production_check": {k: round(v, 4) for k, v in check.items()} if check else None,
        "fingerprint_articles_per_second": {fp.identity: round(speed[fp]) for fp in fingerprint_configs},
    }))
    return 0


def int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def cpu_seconds() -> float:
    """CPU time of this process and its finished workers."""
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def write_csv(path: Path, results: Sequence[Result]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "is_default", *asdict(results[0].fingerprint), *asdict(results[0].match), "weights",
                         "bands", "dev_p", "dev_r", "dev_f1", "real_p", "real_r", "real_f1", "canonical_accuracy",
                         "mean_f1", "min_f1", "fingerprint_articles_per_second"])
        for rank, r in enumerate(results, 1):
            writer.writerow([rank, r.is_default, *asdict(r.fingerprint).values(), *asdict(r.match).values(),
                             "/".join(map(str, r.weights)), f"{r.bands[0]}x{r.bands[1]}",
                             r.dev.pairwise_precision, r.dev.pairwise_recall, r.dev.pairwise_f1,
                             r.real.pairwise_precision, r.real.pairwise_recall, r.real.pairwise_f1,
                             r.dev.canonical_accuracy, r.mean_f1, r.min_f1, r.fingerprint_articles_per_second])


if __name__ == "__main__":
    sys.exit(main())
