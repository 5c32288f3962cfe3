"""The ``newsdedup`` command: one entry point for every role and tool."""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from consumers.settings import Settings, flag_name, load_settings, settings_markdown

DESCRIPTION = """\
newsdedup finds syndicated copies of news articles (the same wire story republished by many
outlets) with MinHash LSH, elects one canonical article per story, and stores each story with
its provenance.

Embedded mode (no servers):   newsdedup run --input articles.jsonl --export stories.jsonl
Service mode (Kafka + SQL):   newsdedup db upgrade --db OWNER_URL; newsdedup prepare; newsdedup match;
                              newsdedup ingest articles.jsonl

Every setting is an environment variable NEWSDEDUP_<NAME> and a flag --<name>; see
'newsdedup settings'.
"""

PRUNE_HELP = """\
Apply retention: delete old stories, and drop verification data past the matcher's window.

1. With store_retention_days > 0 (at least retention_days + 1): a story not changed for that long
   goes with all its articles and its event log (every member joined before that last change, so a
   story never loses part of its members, its canonical or part of its log). A story merged into
   another goes once that other one has gone. A story with an event not yet published to
   stories.events waits for a later run.
2. Always: the articles of stories not changed for retention_days + 1 keep their text and
   provenance but lose their signature and shingle hashes (no matcher loads them again).

One short transaction per --batch-stories stories (locks only those rows), so it runs while the
roles write; an interrupted run continues when started again. Run it daily (cron, a systemd timer).
"""

REFINGERPRINT_HELP = """\
Recompute the stored articles' signatures after the fingerprint identity changed.

When: after an upgrade (or a change of num_perm, seed or a shingle size) that changed the
fingerprint identity, for which match refuses to start with "stored signatures were made with
'<old>', this build uses '<new>'" (records in Kafka need nothing: match fingerprints those of
another identity again from their text). Then:
  1. stop every match process: a running matcher holds an index of the old signatures;
  2. newsdedup db refingerprint     (the app role is enough: it only updates article rows);
  3. start match: it rebuilds its index from the database.

What: for every stored article whose fingerprint_identity differs from the current settings',
the stored (cleaned) text is normalised and fingerprinted again, and its signature,
shingle_hashes, num_shingles and fingerprint_identity are updated in place, --batch-rows rows per
transaction in primary-key order. Article keys and stories do not change. Rows already at the
current identity are skipped, so an interrupted run continues when started again. An article
whose text no longer gives its stored content_hash (normalisation changed) is refused: left
untouched and reported, and the command exits 1.
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        settings = load_settings(overrides=_overrides(args))
    except (ValueError, TypeError) as exc:
        print(f"newsdedup: configuration error: {exc}", file=sys.stderr)
        return 2
    from consumers.logs import configure_logging

    configure_logging(settings.log_level)
    # The index is millions of long-lived small objects; the default collector threshold (700)
    # re-walks them over and over while it grows (measured 1.18x on the matcher, bench/fastpath.py).
    gc.set_threshold(100_000, 50, 100)
    try:
        return int(args.handler(args, settings) or 0)
    except FileNotFoundError as exc:
        print(f"newsdedup: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from sqlalchemy.exc import SQLAlchemyError

        from consumers.fetch_guard import EXIT_UNDECODABLE, UndecodableBatchError
        from consumers.kafka_io import REFUSALS, KafkaUnavailable, refusal
        from consumers.storage.schema import SchemaNotReady

        if isinstance(exc, UndecodableBatchError):  # logged in full when found; the supervisor sees the code
            print(f"newsdedup: {exc}", file=sys.stderr)
            return EXIT_UNDECODABLE
        # Unreachable brokers, a refused password or certificate, a right the principal lacks: one line
        # naming the brokers (the JSON log above has kafka-python's own account), never a traceback.
        if isinstance(exc, KafkaUnavailable):
            print(f"newsdedup: {exc}", file=sys.stderr)
            return 1
        if isinstance(exc, REFUSALS):
            print(f"newsdedup: {refusal(settings, exc)}", file=sys.stderr)
            return 1
        if isinstance(exc, SchemaNotReady | SQLAlchemyError):
            print(f"newsdedup: database error: {_first_line(exc)}", file=sys.stderr)
            return 1
        raise


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("settings (each also NEWSDEDUP_<NAME>; see 'newsdedup settings')")
    for spec in fields(Settings):
        kind = type(spec.default)
        group.add_argument(flag_name(spec.name), dest=f"setting_{spec.name}", type=kind, default=None,
                           # argparse %-formats help texts: a literal % in a setting's help broke every --help
                           metavar=kind.__name__.upper(), help=spec.metadata["help"].replace("%", "%%"))

    parser = argparse.ArgumentParser(prog="newsdedup", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        p.set_defaults(handler=handler)
        return p

    run = command("run", "Embedded mode: deduplicate a JSONL file, a folder of .json/.html files or stdin into a "
                         "database (SQLite by default).", cmd_run)
    run.add_argument("--input", required=True, metavar="PATH",
                     help="a JSONL file of articles, a folder of .json/.html files, or - for stdin")
    run.add_argument("--db", dest="setting_database_url", help="database URL (default sqlite:///newsdedup.db)")
    run.add_argument("--export", help="write one JSON line per article: id, story_id, canonical_id, ...")
    run.add_argument("--dead-letters", help="write rejected records here as JSONL (line, or file for a folder; "
                                            "reason, detail, raw)")
    run.add_argument("--top", type=int, default=5, help="how many of the largest stories to show (default 5)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_page_options(run)

    export = command("export", "Write one JSON line per stored article (the same format as run --export).",
                     cmd_export)
    export.add_argument("--db", dest="setting_database_url", help="database URL")
    export.add_argument("--output", required=True, help="file to write, or - for stdout")

    ingest = command("ingest", "Validate articles and send them to the raw topic.", cmd_ingest)
    ingest.add_argument("path", help="a JSONL file, a folder of .json/.html files, or - for stdin")
    ingest.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_page_options(ingest)

    for name, help_text, handler in (
        ("prepare", "Service role: raw articles → fingerprinted records (stateless, scale out).", cmd_prepare),
        ("match", "Service role: fingerprinted records → stories in the database (one active per partition).",
         cmd_match),
    ):
        role = command(name, help_text, handler)
        role.add_argument("--exit-when-idle", type=float, default=None, metavar="SECONDS",
                          help="exit after this long without messages (batch jobs, tests); default: run forever")

    db_help = ("Database: 'upgrade' applies migrations (needs the owner role), 'check' verifies, "
               "'refingerprint' recomputes stored signatures after the fingerprint identity changed, "
               "'prune' applies retention.")
    db = sub.add_parser("db", help=db_help, description=db_help)
    # Settings flags only on the actions: argparse copies a sub-parser's defaults (None) over the parent's.
    actions = db.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, help_text in (("upgrade", "Apply the migrations (needs the owner role)."),
                            ("check", "Verify that the schema is at head.")):
        action = actions.add_parser(name, help=help_text, description=help_text, parents=[common])
        action.set_defaults(handler=cmd_db)
        action.add_argument("--db", dest="url", help="database URL (default: for upgrade migration_database_url, "
                                                     "else database_url; upgrade needs the owner role)")
    refingerprint = actions.add_parser("refingerprint", help=REFINGERPRINT_HELP.splitlines()[0],
                                       description=REFINGERPRINT_HELP, parents=[common],
                                       formatter_class=argparse.RawDescriptionHelpFormatter)
    refingerprint.set_defaults(handler=cmd_refingerprint)
    refingerprint.add_argument("--db", dest="setting_database_url",
                               metavar="URL", help="database URL (default database_url; the app role is enough)")
    refingerprint.add_argument("--batch-rows", type=int, default=1000, metavar="N",
                               help="articles per transaction (default 1000)")
    refingerprint.add_argument("--no-progress", action="store_true", help="no progress bar")
    prune = actions.add_parser("prune", help="Apply store_retention_days, and drop verification data past the "
                               "matcher's window (batched, resumable, safe while the roles write).",
                               description=PRUNE_HELP, parents=[common],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    prune.set_defaults(handler=cmd_prune)
    prune.add_argument("--db", dest="setting_database_url",
                       metavar="URL", help="database URL (default database_url; the app role is enough)")
    prune.add_argument("--batch-stories", type=int, default=500, metavar="N",
                       help="stories per transaction (default 500)")
    prune.add_argument("--dry-run", action="store_true", help="count what would go, change nothing")
    prune.add_argument("--no-relay", action="store_true",
                       help="no relay publishes this database's events (written by 'newsdedup run'): they go with "
                            "their stories instead of holding them until published")
    prune.add_argument("--no-progress", action="store_true", help="no progress bar")

    evaluate = command("eval", "Run embedded mode on a labelled set and score it: pairwise, B-cubed, ARI, "
                               "canonical accuracy, and the worst mistakes.", cmd_eval)
    evaluate.add_argument("--input", required=True, help="JSONL articles (the format of shared/eval/dev)")
    evaluate.add_argument("--labels", required=True, help='JSONL {"id": ..., "cluster": ...} per article')
    evaluate.add_argument("--db", dest="setting_database_url",
                          help="database to run into (default: a new SQLite file in a temporary folder)")
    evaluate.add_argument("--predictions", help="also write the predictions (run --export format) here")
    evaluate.add_argument("--show", type=int, default=5, help="how many false merges and false splits to show")

    command("topics", "Create the service's Kafka topics if they are missing (on a secured cluster: as the admin "
                      "principal, the only one with CREATE; the roles only check that their topics exist).",
            cmd_topics)
    command("lag-exporter", "Measure each role's consumer lag outside the roles (committed offsets against the log "
            "end, every lag_interval_seconds) and serve it on metrics_port.", cmd_lag_exporter)

    serve = command("serve", "The story explorer and lookup API: read-only web pages and JSON (/api, OpenAPI at "
                             "/openapi.json) over the store, on explorer_host:explorer_port.", cmd_serve)
    serve.add_argument("--db", dest="setting_explorer_database_url", metavar="URL",
                       help="database URL to read (default explorer_database_url, else database_url; on PostgreSQL "
                            "the read-only role newsdedup_reader)")

    show = command("settings", "List every setting with its variable, flag, default and current value.",
                   cmd_settings)
    show.add_argument("--markdown", action="store_true", help="print the README's settings table")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {key.removeprefix("setting_"): value for key, value in vars(args).items()
            if key.startswith("setting_") and value is not None}


def _add_page_options(parser: argparse.ArgumentParser) -> None:
    """run's and ingest's options for .html pages (in a folder) that name no URL or no date."""
    from ingest import sources

    def checked(parse: Any) -> Any:
        def check(text: str) -> Any:
            try:
                return parse(text)
            except ValueError as exc:  # argparse prints an ArgumentTypeError's message, not a ValueError's
                raise argparse.ArgumentTypeError(str(exc)) from None

        return check

    pages = parser.add_argument_group(
        "pages of a folder that name no URL or date (without these they are refused; what a page names wins)")
    pages.add_argument("--url-map", metavar="FILE",
                       help="CSV (columns file,url,published_at; header optional) or JSONL ({\"file\": ..., "
                            "\"url\": ..., \"published_at\": ...}) giving pages, by their path relative to the "
                            "folder, a URL and/or a publication time")
    pages.add_argument("--base-url", metavar="URL", type=checked(sources.parse_base_url),
                       help="a page with no URL of its own or in --url-map gets URL + its path relative to the "
                            "folder (https://archive.example/ makes https://archive.example/2024/a.html)")
    pages.add_argument("--default-published-at", metavar="mtime|TIME", type=checked(sources.parse_default_published_at),
                       help="a page with no date of its own or in --url-map gets this: 'mtime' (the file's "
                            "modification time) or an ISO 8601 time with a zone (2024-07-01T00:00:00Z)")


def _page_fallbacks(path: str, args: argparse.Namespace) -> Any:
    """The page options as ingest.sources.PageFallbacks, checked against the source (OSError or ValueError)."""
    from ingest import sources

    url_map = sources.load_url_map(args.url_map) if args.url_map else {}
    fallbacks = sources.PageFallbacks(url_map, args.base_url, args.default_published_at)
    sources.check_source(path, fallbacks)
    unmatched = sources.map_rows_without_page(path, url_map) if url_map else []
    if unmatched:
        print(f"newsdedup: warning: {len(unmatched)} rows of --url-map name no .html file under {path} (e.g. "
              f"{', '.join(repr(name) for name in unmatched[:3])}); their names must be paths relative to {path}",
              file=sys.stderr)
    return fallbacks


# -- commands ------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from contextlib import ExitStack

    from tqdm import tqdm

    from consumers.embedded import Rejection, run_source
    from consumers.report import print_run_summary
    from consumers.storage import schema
    from consumers.telemetry import Telemetry
    from ingest.sources import count_records, read_source, source_name

    try:  # before the database is made: a wrong path must leave nothing behind
        records = read_source(args.input, _page_fallbacks(args.input, args))
    except (OSError, ValueError) as exc:
        print(f"newsdedup: {exc}", file=sys.stderr)
        return 2
    name = source_name(args.input)
    store = _store(settings)
    if schema.current_revision(store.engine) != schema.head_revision():
        schema.upgrade(store.engine)  # embedded mode owns its database
    examples: list[str] = []  # a few rejected records, with where they came from
    with ExitStack() as stack:
        dead = stack.enter_context(Path(args.dead_letters).open("w", encoding="utf-8")) if args.dead_letters else None

        def on_reject(rejection: Rejection) -> None:
            where = {"line": rejection.line} if rejection.line is not None else {"file": rejection.file}
            if len(examples) < 5:
                examples.append(f"{rejection.file or f'{name}:{rejection.line}'}: {rejection.reason}: "
                                f"{rejection.detail}")
            if dead:
                raw = rejection.raw.decode("utf-8", "replace") if rejection.raw is not None else None
                dead.write(json.dumps({**where, "reason": rejection.reason, "detail": rejection.detail,
                                       "raw": raw}) + "\n")

        bar = stack.enter_context(tqdm(total=count_records(args.input), unit=" articles", disable=args.no_progress,
                                       file=sys.stderr, desc="run"))
        telemetry = Telemetry(settings, "embedded")
        stack.callback(telemetry.close)
        summary = run_source(records, name, settings, store, on_reject, bar.update, telemetry)
    if args.export:
        _write_export(store, args.export)
    print_run_summary(summary, store, args.top, args.export)
    if examples:
        print("rejected, e.g.:" + "".join(f"\n  {example}" for example in examples))
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    store = _store(settings)
    from consumers.storage import schema

    schema.check_at_head(store.engine)
    count = _write_export(store, args.output)
    print(f"exported {count} articles to {args.output}", file=sys.stderr)
    return 0


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.kafka_io import client_config, ensure_topics
    from ingest.cli import ingest
    from ingest.producer import ArticleProducer, DeliveryError

    try:  # before Kafka is asked anything: a wrong path fails fast
        fallbacks = _page_fallbacks(args.path, args)
    except (OSError, ValueError) as exc:
        print(f"newsdedup: {exc}", file=sys.stderr)
        return 2
    ensure_topics(settings, required=[settings.topic_raw])  # a raw topic it may not write: refused at once
    config = client_config(settings)
    producer = ArticleProducer(",".join(config.pop("bootstrap_servers")), settings.topic_raw,
                               max_message_bytes=settings.max_message_bytes,
                               compression_type=settings.kafka_compression_type, **config)
    try:
        summary = ingest(args.path, producer, progress=not args.no_progress, fallbacks=fallbacks)
    except DeliveryError as exc:
        print(f"newsdedup: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:  # the source went away since it was checked
        print(f"newsdedup: {exc}", file=sys.stderr)
        return 2
    finally:
        producer.close()
    print(summary.report())
    return 0


def cmd_prepare(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.lifecycle import StopFlag
    from consumers.prepare_worker import run_prepare

    handled = run_prepare(settings, StopFlag().install(), _idle_polls(args, settings))
    print(f"prepare handled {handled} messages", file=sys.stderr)
    return 0


def cmd_match(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.lifecycle import StopFlag
    from consumers.match_worker import run_match
    from consumers.storage import schema

    store = _store(settings)
    schema.check_at_head(store.engine)
    handled = run_match(settings, store, StopFlag().install(), _idle_polls(args, settings))
    print(f"match handled {handled} messages", file=sys.stderr)
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.storage import schema
    from consumers.storage.database import make_engine, safe_url

    if args.action == "upgrade":
        url = args.url or settings.migration_database_url or settings.database_url
        schema.upgrade(make_engine(url))
        print(f"{safe_url(url)} is at revision {schema.head_revision()}")
        return 0
    url = args.url or settings.database_url
    schema.check_at_head(make_engine(url))
    print(f"{safe_url(url)} is at head ({schema.head_revision()})")
    return 0


def cmd_refingerprint(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from tqdm import tqdm

    from consumers.storage import schema

    if args.batch_rows < 1:
        print(f"newsdedup: --batch-rows={args.batch_rows} must be at least 1", file=sys.stderr)
        return 2
    store = _store(settings)
    schema.check_at_head(store.engine)
    config = settings.fingerprint_config()
    started = time.perf_counter()
    identities = store.fingerprint_identities()
    skipped = identities[config.identity]
    with tqdm(total=identities.total() - skipped, unit=" articles", disable=args.no_progress, file=sys.stderr,
              desc="refingerprint") as bar:
        result = store.refingerprint(config, args.batch_rows, bar.update, match=settings.match_config())
    print(f"refingerprint to {config.identity}: {result.updated} updated, {skipped} skipped (already at it), "
          f"{result.refused} refused, {time.perf_counter() - started:.1f} s")
    if result.refused:
        print(f"newsdedup: {result.refused} articles were left untouched: their stored text no longer normalises to "
              f"their stored content_hash (e.g. {', '.join(result.refused_examples)}), so normalisation changed "
              f"since they were stored, and new fingerprints would change their article keys. match still refuses "
              f"them: run the build that stored them, or delete and re-ingest those articles", file=sys.stderr)
        return 1
    return 0


PRUNE_MARGIN = timedelta(days=1)  # a matcher evicts between batches, and clocks differ: never touch its window


def cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from tqdm import tqdm

    from consumers.storage import schema

    if args.batch_stories < 1:
        print(f"newsdedup: --batch-stories={args.batch_stories} must be at least 1", file=sys.stderr)
        return 2
    window = settings.retention + PRUNE_MARGIN
    if settings.store_retention_days and timedelta(days=settings.store_retention_days) < window:
        print(f"newsdedup: store_retention_days={settings.store_retention_days:g} must be 0 (keep everything) or at "
              f"least retention_days + 1 = {settings.retention_days + 1:g}: a matcher may still join those stories",
              file=sys.stderr)
        return 2
    store = _store(settings)
    schema.check_at_head(store.engine)
    now = datetime.now(UTC)
    delete_before = now - timedelta(days=settings.store_retention_days) if settings.store_retention_days else None
    strip_before = now - window
    started = time.perf_counter()
    with tqdm(total=store.prune_candidates(delete_before, strip_before), unit=" stories", disable=args.no_progress,
              file=sys.stderr, desc="prune (dry run)" if args.dry_run else "prune") as bar:
        result = store.prune(delete_before, strip_before, args.batch_stories, args.dry_run, bar.update,
                             outbox=not args.no_relay)
    verb = "would delete" if args.dry_run else "deleted"
    kept = f"stories changed since {delete_before:%Y-%m-%d %H:%M} UTC" if delete_before else "every story"
    print(f"prune: {verb} {result.stories} stories, {result.articles} articles, {result.events} events (kept: {kept}); "
          f"{'would drop' if args.dry_run else 'dropped'} the verification data of {result.stripped} articles "
          f"past the matcher's window; {result.held} stories held for unpublished events"
          f"{' (a database of newsdedup run? --no-relay)' if result.held else ''}; "
          f"{time.perf_counter() - started:.1f} s")
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    import tempfile

    from consumers.embedded import run_embedded
    from consumers.evaluation import mistakes, score
    from consumers.report import print_scores
    from consumers.settings import replace
    from consumers.storage import schema

    labels = [json.loads(line) for line in Path(args.labels).read_text(encoding="utf-8").splitlines() if line.strip()]
    gold = {str(row["id"]): json.dumps(row["cluster"], sort_keys=True) for row in labels}
    with tempfile.TemporaryDirectory() as folder:
        if args.setting_database_url is None:
            settings = replace(settings, database_url=f"sqlite:///{folder}/eval.db")
        store = _store(settings)
        schema.upgrade(store.engine)
        with Path(args.input).open("rb") as source:
            summary = run_embedded(source, Path(args.input).name, settings, store)
        if args.predictions:
            _write_export(store, args.predictions)
        views, published, canonical_of = {}, {}, {}
        for view, published_at, canonical_id in store.article_views():
            views[view.id], published[view.id] = view, published_at
            canonical_of[view.story_id] = canonical_id
        store.engine.dispose()
    scores = score(gold, {i: v.story_id for i, v in views.items()}, canonical_of, published)
    print_scores(summary, scores, mistakes(gold, views, args.show))
    return 0


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.kafka_io import ensure_topics

    every = (settings.topic_raw, settings.topic_fingerprinted, settings.topic_dead_letters, settings.topic_story_events)
    created = ensure_topics(settings, required=every)  # the admin step: it must see them all
    print("created: " + (", ".join(created) if created else "nothing (all topics exist)"))
    return 0


def cmd_lag_exporter(args: argparse.Namespace, settings: Settings) -> int:
    import os
    import threading

    from consumers.kafka_io import KafkaUnavailable, connect_admin
    from consumers.lag_exporter import run_lag_exporter
    from consumers.lifecycle import StopFlag

    # The exporter serves /metrics before Kafka answers and reports what it cannot measure, but a password or
    # certificate the brokers refuse would only ever be a warning per round: a check beside it ends it with the
    # one line, as the roles end. At once (os._exit): the exporter's own round may sit in a client's 30 s
    # bootstrap, and it holds nothing to save. Brokers that do not answer (yet) are the exporter's own business.
    def check() -> None:
        try:
            connect_admin(settings).close()
        except KafkaUnavailable as exc:
            if exc.refused:
                print(f"newsdedup: {exc}", file=sys.stderr, flush=True)
                os._exit(1)

    threading.Thread(target=check, name="kafka-credentials-check", daemon=True).start()
    return run_lag_exporter(settings, StopFlag().install())


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from consumers.explorer.app import serve

    return serve(settings)


def cmd_settings(args: argparse.Namespace, settings: Settings) -> int:
    if args.markdown:
        print(settings_markdown())
        return 0
    import os

    from consumers.settings import secret_file_variables

    current = json.loads(json.dumps({f.name: getattr(settings, f.name) for f in fields(Settings)}))
    # Where a masked secret came from, so that an operator can check a mounted secret was picked up.
    from_file = {name: f"  (from {variable}={os.environ[variable]})"
                 for variable, name in secret_file_variables().items()
                 if variable in os.environ and getattr(args, f"setting_{name}", None) is None}
    for spec in fields(Settings):
        value = "***" if spec.metadata["secret"] and current[spec.name] else current[spec.name]
        print(f"{flag_name(spec.name):28} = {value!r:32}  {spec.metadata['help']}{from_file.get(spec.name, '')}")
    return 0


# -- helpers -------------------------------------------------------------------------------------


def _store(settings: Settings):  # type: ignore[no-untyped-def]
    from consumers.storage.database import make_engine
    from consumers.storage.store import StoryStore

    return StoryStore(make_engine(settings.database_url))


def _write_export(store: Any, output: str) -> int:
    stream = sys.stdout if output == "-" else Path(output).open("w", encoding="utf-8")  # noqa: SIM115
    count = 0
    try:
        for row in store.export_rows():
            stream.write(json.dumps({"id": row.input_id, "story_id": row.story_id,
                                     "canonical_id": row.canonical_input_id, "is_canonical": row.is_canonical,
                                     "similarity": round(row.similarity, 4)}) + "\n")
            count += 1
    finally:
        if stream is not sys.stdout:
            stream.close()
    return count


def _idle_polls(args: argparse.Namespace, settings: Settings) -> int | None:
    if args.exit_when_idle is None:
        return None
    return max(1, int(args.exit_when_idle * 1000 / settings.poll_timeout_ms))


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


if __name__ == "__main__":
    raise SystemExit(main())
