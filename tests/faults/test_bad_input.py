"""Bad input on articles.raw, sent with a plain KafkaProducer (no validation on the way in).

Every message is either rejected to the dead-letter topic (original bytes, a reason header and its
source position) or processed correctly; the partition never stalls (good articles sent after the bad
ones are stored) and neither role dies. All messages share one key, so they sit on one partition in
the order sent.

Oversized messages (the broker's limit, 20 MB) are in test_oversized.py; values that pass validation but
that PostgreSQL refuses are in test_poison.py.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator

import pytest
from kafka import KafkaProducer

from consumers.kafka_io import DETAIL_HEADER, REASON_HEADER, SOURCE_HEADERS
from tests.faults.support import GRACE_SECONDS, Harness, dev_lines, poll_until

pytestmark = pytest.mark.faults

KEY = b"bad-input"
MIXED_SCRIPTS = (
    "Die Regierung in Берлин kündigte an, dass ο πρωθυπουργός και το υπουργικό συμβούλιο تجتمع اليوم في القاهرة "
    "mit Vertretern aus 東京 und 北京 sowie राष्ट्रपति भवन zusammenkommen werden. הממשלה אישרה את התוכנית 🙂🚀 "
    "während die Märkte in São Paulo und Kraków ruhig blieben; Ελλάδα, Україна, 대한민국 und ประเทศไทย folgten. "
    "Analysten in Zürich erwarten weitere Gespräche über Handel, Energie und Klima im kommenden Monat.")
CJK = ("東京証券取引所では本日、主要な株価指数が三日連続で上昇し、投資家の間では景気回復への期待が広がった。"
       "市場関係者によると、海外からの資金流入が続いており、特に半導体関連の銘柄に買いが集まったという。")


def good_articles() -> list[dict]:
    return [json.loads(line) for line in dev_lines()[3000:3012]]


def variant(article: dict, tag: str, **fields: object) -> dict:
    return {**article, "id": f"{article['id']}-{tag}", "url": f"{article['url']}-{tag}", **fields}


def with_zero_width(text: str) -> str:
    """Zero-width characters inside words and a BOM: normalisation folds them away."""
    return "\ufeff" + " ".join(w[:2] + "\u200b" + w[2:] + "\u200d" if len(w) > 3 else w for w in text.split(" "))


def with_controls(text: str) -> str:
    """C0 controls (not NUL, not line breaks), DEL and a C1 control beside the spaces between words."""
    return " ".join(w + ("\x07" if i % 3 == 0 else "\x1b\x7f" if i % 3 == 1 else "\x01\x9b")
                    for i, w in enumerate(text.split(" ")))


def valid_but_strange(base: dict) -> Iterator[tuple[str, dict]]:
    """Articles that are valid, however odd: they must be stored."""
    words = base["body"].split()
    yield "zero_width_copy", variant(base, "zw", body=with_zero_width(base["body"]))
    yield "control_chars_copy", variant(base, "ctl", body=with_controls(base["body"]),
                                        title="Title\u200e with \u202ebidi\u202c marks\u2066 and \x1b escape")
    yield "fullwidth_copy", variant(base, "fw", body=base["body"].replace("the ", "ｔｈｅ "))
    yield "mixed_scripts", variant(base, "mix", body=MIXED_SCRIPTS, title="Берлин 東京 القاهرة 🙂 São Paulo", lang="de")
    yield "cjk_only", variant(base, "cjk", body=CJK, title="東京株式市場", lang="ja")
    yield "emoji_only", variant(base, "emoji", body="🙂🚀🔥 " * 50, title="🙂")
    yield "long_word", variant(base, "longword", body=" ".join(words[:40]) + " " + "x" * 200_000 + " "
                               + " ".join(words[40:80]))
    yield "single_huge_word", variant(base, "hugeword", body="Supercalifragilistic" * 10_000)
    yield "long_url", {**variant(base, "longurl"), "url": "https://example.com/" + "a" * 4000}
    yield "max_length_id", {**variant(base, "maxid"), "id": "i" * 256}
    yield "huge_int_metadata", variant(base, "bigint", metadata={"n": 10 ** 400, "nested": {"a": [1, 2, {"b": None}]}})
    yield "odd_but_valid_dates", variant(base, "dates", published_at="1990-01-01T00:00:00-12:00",
                                         scraped_at="2099-12-31T23:59:59.999999+14:00")


def bad_messages(base: dict) -> Iterator[tuple[str, bytes | None, set[str]]]:
    """(name, raw value, acceptable dead-letter reasons)."""
    good = json.dumps(base).encode()
    rng = random.Random(7)

    def enc(**fields: object) -> bytes:
        return json.dumps({**base, "id": f"bad-{len(fields)}-{rng.random()}", **fields}).encode()

    def without(*names: str) -> bytes:
        return json.dumps({k: v for k, v in base.items() if k not in names}).encode()

    yield "truncated_json", good[: len(good) // 2], {"malformed_json"}
    yield "truncated_at_1_byte", good[:1], {"malformed_json"}
    yield "single_quotes", good.replace(b'"', b"'"), {"malformed_json"}
    yield "trailing_comma", good[:-1] + b",}", {"malformed_json"}
    yield "nan_literal", good[:-1] + b', "x": NaN}', {"malformed_json"}
    yield "utf8_bom", b"\xef\xbb\xbf" + good, {"malformed_json"}
    yield "array", b"[1, 2, 3]", {"not_an_object"}
    yield "string", b'"just a string"', {"not_an_object"}
    yield "number", b"42", {"not_an_object"}
    yield "null", b"null", {"not_an_object"}
    yield "published_at_number", enc(published_at=1720000000), {"wrong_type"}
    yield "title_list", enc(title=["a", "b"]), {"wrong_type"}
    yield "body_object", enc(body={"text": "x"}), {"wrong_type"}
    yield "metadata_string", enc(metadata="{}"), {"wrong_type"}
    yield "id_number", enc(id=12345), {"wrong_type"}
    yield "schema_version_string", enc(schema_version="1"), {"wrong_type"}
    yield "schema_version_2", enc(schema_version=2), {"unsupported_version"}
    yield "missing_url", without("url"), {"missing_field"}
    yield "missing_body_and_html", without("body"), {"missing_field"}
    yield "missing_published_at", without("published_at"), {"missing_field"}
    yield "id_null", enc(id=None), {"missing_field"}
    yield "invalid_utf8_latin1", b'{"id": "x2", "body": "caf\xe9"}', {"invalid_utf8"}
    yield "invalid_utf8_overlong", good[:20] + b"\xc0\xaf" + good[20:], {"invalid_utf8"}
    yield "invalid_utf8_surrogate", good[:20] + b"\xed\xa0\x80" + good[20:], {"invalid_utf8"}
    yield "utf16", json.dumps(base).encode("utf-16"), {"invalid_utf8"}
    yield "lone_surrogate_escape", enc(title="\\ud800 x").replace(b"\\\\ud800", b"\\ud800"), {"invalid_value"}
    yield "float_overflow", good[:-1] + b', "metadata": {"x": 1e400}}', {"invalid_value"}
    yield "int_too_long_to_parse", good[:-1] + b', "metadata": {"x": ' + b"9" * 5000 + b"}}", {"malformed_json"}
    yield "binary_garbage_64k", rng.randbytes(65_536), {"invalid_utf8", "malformed_json"}
    yield "nul_bytes", b"\x00" * 1000, {"malformed_json"}
    yield "gzip_bytes", b"\x1f\x8b\x08\x00" + rng.randbytes(500), {"invalid_utf8", "malformed_json"}
    yield "nested_arrays_100k", b"[" * 100_000 + b"]" * 100_000, {"malformed_json"}
    yield "nested_objects_50k", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, {"malformed_json"}
    yield "metadata_depth_9", enc(metadata=nest(9)), {"invalid_value"}
    yield "metadata_depth_900", enc_deep(base, 900), {"invalid_value", "malformed_json", "processing_error"}
    yield "empty_value", b"", {"malformed_json"}
    yield "whitespace_value", b"  \n\t\r  ", {"malformed_json"}
    yield "tombstone", None, {"malformed_json"}
    yield "empty_body", enc(body=""), {"empty_text"}
    yield "whitespace_body", enc(body="  \n\n \t  "), {"empty_text"}
    yield "chrome_only_body", enc(body="Advertisement\n\nShare this article\n\nAll rights reserved"), {"empty_text"}
    yield "empty_html", without("body")[:-1] + b', "html": "<html><body></body></html>"}', {"empty_text"}
    yield "date_year_1", enc(published_at="0001-01-01T00:00:00Z"), {"invalid_value"}
    yield "date_year_9999", enc(published_at="9999-12-31T23:59:59Z"), {"invalid_value"}
    yield "date_epoch_zero", enc(published_at="1970-01-01T00:00:00Z"), {"invalid_value"}
    yield "date_month_13", enc(published_at="2024-13-45T00:00:00Z"), {"invalid_value"}
    yield "date_without_zone", enc(published_at="2024-07-01T10:00:00"), {"invalid_value"}
    yield "date_offset_99h", enc(published_at="2024-07-01T10:00:00+99:00"), {"invalid_value"}
    yield "date_words", enc(published_at="yesterday"), {"invalid_value"}
    yield "scraped_at_absurd", enc(scraped_at="+275760-09-13T00:00:00Z"), {"invalid_value"}
    yield "url_5000_chars", enc(url="https://example.com/" + "a" * 5000), {"invalid_value"}
    yield "url_not_http", enc(url="javascript:alert(1)"), {"invalid_value"}
    yield "id_257_chars", enc(id="i" * 257), {"invalid_value"}
    yield "title_3000_chars", enc(title="t" * 3000), {"invalid_value"}
    yield "empty_id", enc(id="   "), {"invalid_value"}


def nest(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def enc_deep(base: dict, depth: int) -> bytes:
    """An article whose metadata is nested ``depth`` levels (built as text: json.dumps would recurse)."""
    head = json.dumps({k: v for k, v in base.items() if k != "metadata"})[:-1]
    return (head + ', "metadata": ' + '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1) + "}").encode()


def test_bad_input_is_dead_lettered_or_stored_and_the_partition_flows(harness: Harness) -> None:
    settings = harness.settings
    goods = good_articles()
    base = goods[0]
    strange = list(valid_but_strange(base))
    bads = list(bad_messages(base))
    # good articles first and last, the bad and the strange ones between them, interleaved
    plan: list[tuple[str, str, bytes | None, set[str]]] = [("good", a["id"], json.dumps(a).encode(), set())
                                                            for a in goods[:6]]
    for index, (name, raw, reasons) in enumerate(bads):
        plan.append(("bad", name, raw, reasons))
        if index % 4 == 0 and strange:
            name_s, article = strange.pop(0)
            plan.append(("strange", article["id"], json.dumps(article).encode(), {name_s}))
    plan += [("strange", a["id"], json.dumps(a).encode(), {n}) for n, a in strange]
    plan += [("good", a["id"], json.dumps(a).encode(), set()) for a in goods[6:]]
    expected_ids = [ident for kind, ident, _, _ in plan if kind != "bad"]

    harness.ensure_topics()
    harness.liveness_probe()
    matcher = harness.start("match")
    harness.start("prepare")
    assert poll_until(matcher.owns_match_partition, 60), matcher.tail()
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all",
                             max_request_size=8 * 1024 * 1024)
    futures = [producer.send(settings.topic_raw, key=KEY, value=raw) for _, _, raw, _ in plan]
    producer.flush()
    positions = [f.get(timeout=30) for f in futures]
    producer.close()
    reached = harness.wait_stored(len(expected_ids), timeout=120, stall=20, stop_on_crash=True)
    crashed = harness.crashed()
    assert poll_until(lambda: sum(harness.end_offsets(settings.topic_dead_letters).values()) >= len(bads), 20)
    letters = {(int(dict(r.headers)[SOURCE_HEADERS[1]]), int(dict(r.headers)[SOURCE_HEADERS[2]])): r
               for r in harness.read_topic(settings.topic_dead_letters)}
    exits = harness.stop_all()

    audit = harness.audit(expected_ids)
    wrong = []
    reasons: Counter[str] = Counter()
    for (kind, name, raw, accepted), meta in zip(plan, positions, strict=True):
        letter = letters.get((meta.partition, meta.offset))
        if kind != "bad":
            if letter is not None:
                wrong.append(f"{name}: dead-lettered ({dict(letter.headers)[DETAIL_HEADER].decode()[:120]})")
            continue
        if letter is None:
            wrong.append(f"{name}: not dead-lettered")
            continue
        headers = dict(letter.headers)
        reason = headers[REASON_HEADER].decode()
        reasons[reason] += 1
        if reason not in accepted:
            wrong.append(f"{name}: reason {reason} ({headers[DETAIL_HEADER].decode()[:120]}), expected {accepted}")
        if letter.value != raw:
            wrong.append(f"{name}: the dead letter's value is not the original bytes")
        if headers[SOURCE_HEADERS[0]].decode() != settings.topic_raw:
            wrong.append(f"{name}: wrong source topic header")

    # processed correctly: copies that differ only in characters normalisation folds join the original's
    # story; text and titles in any script come back as sent
    story = dict(harness.query("SELECT input_id, story_id FROM articles"))
    titles = dict(harness.query("SELECT input_id, title FROM articles"))
    for tag in ("zw", "ctl", "fw"):
        if story.get(f"{base['id']}-{tag}") != story.get(base["id"]):
            wrong.append(f"the {tag} copy did not join its original's story")
    mixed = dict(valid_but_strange(base))
    for name in ("mixed_scripts", "cjk_only", "control_chars_copy"):
        article = mixed[name]
        if titles.get(article["id"]) != article["title"]:
            wrong.append(f"{name}: stored title {titles.get(article['id'])!r} != {article['title']!r}")

    harness.report(
        "bad input on articles.raw", len(bads), len(plan), audit, "-", equal=None,
        lost=audit.lost + sum(1 for w in wrong if "not dead-lettered" in w),
        notes=f"{len(expected_ids)} valid (incl. {len(mixed)} odd ones) stored; DLQ reasons: "
              + ", ".join(f"{r} {n}" for r, n in sorted(reasons.items()))
              + (f"; PROBLEMS: {len(wrong)}" if wrong else "") + harness.wedge_note())

    assert not crashed, "a role died on bad input:\n" + "\n".join(crashed)
    assert not wrong, "\n".join(wrong)
    assert reached == len(expected_ids) and audit.exact, audit
    assert len(letters) == len(bads), f"{len(letters)} dead letters for {len(bads)} bad messages"
    for name, (code, took) in exits.items():
        assert code == 0 and took < GRACE_SECONDS, f"{name} exited {code} after {took:.1f}s"
