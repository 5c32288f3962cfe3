"""newsdedup serve against PostgreSQL filled by the real pipeline (ingest → Kafka → prepare → match), read
through the read-only role; and once over embedded mode's SQLite file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from consumers.explorer.app import create_app
from consumers.settings import load_settings
from consumers.storage.explore import can_write, make_reader_engine
from tests.integration import explorer_support
from tests.integration.conftest import ROOT, Services, run_cli
from tests.integration.explorer_support import ExplorerData, start_explorer, stop_explorer
from tests.unit.explorer_articles import HOSTILE_TITLE, SAMPLES

pytestmark = pytest.mark.integration
explorer_data = explorer_support.explorer_data  # the module-scoped fill, once for this module


@pytest.fixture(scope="module")
def client(explorer_data: ExplorerData) -> Iterator[TestClient]:
    settings = load_settings({}, {"explorer_database_url": explorer_data.reader_url, "metrics_port": 0})
    app = create_app(settings)
    with TestClient(app) as test_client:
        yield test_client
    app.state.store.engine.dispose()


def get(base_url: str, path: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(base_url + path)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_lookup_by_url_finds_the_story_and_its_canonical(client: TestClient, explorer_data: ExplorerData) -> None:
    answer = client.get("/api/lookup", params={"url": explorer_data.lookup_url})
    assert answer.status_code == 200, answer.text
    [match] = answer.json()["matches"]
    assert match["article"]["id"] == explorer_data.lookup_article_id
    assert match["story"]["id"] == explorer_data.story_id and match["story"]["member_count"] == 3
    assert match["canonical"]["id"] == explorer_data.wire_article_id
    assert match["article"]["similarity"] > 0.9 and match["article"]["match_method"] in {"near", "canonical"}
    assert client.get(f"/api/articles/{explorer_data.wire_article_id}").json()["matches"][0]["canonical"]["source"] \
        == "apnews.com"


def test_a_story_has_its_members_kafka_lineage_and_event_log(client: TestClient, explorer_data: ExplorerData) -> None:
    detail = client.get(f"/api/stories/{explorer_data.story_id}").json()
    members = {m["id"]: m for m in detail["members"]}
    assert set(members) == {explorer_data.wire_article_id, *explorer_data.copy_article_ids}
    assert [m["canonical"] for m in detail["members"]] == [True, False, False]  # by publication: the original first
    raw_topic = explorer_data.settings.topic_raw
    for member in detail["members"]:
        assert member["source_topic"] == raw_topic and member["source_offset"] >= 0
        assert 0 <= member["source_partition"] < explorer_data.settings.raw_partitions
        assert member["source_timestamp"] and member["scraped_at"] and member["stored_at"]
    kinds = [e["kind"] for e in detail["events"]]
    assert kinds[0] == "founded" and kinds.count("joined") == 2 and "canonical_changed" in kinds
    page = client.get(f"/stories/{explorer_data.story_id}")
    assert page.status_code == 200
    canonical_rows = re.findall(r'data-testid="member-row" data-canonical="true" data-article-id="(\w+)"', page.text)
    assert canonical_rows == [explorer_data.wire_article_id]


def test_stories_filter_by_outlet_size_window_and_words(client: TestClient, explorer_data: ExplorerData) -> None:
    def ids(**params: object) -> list[str]:
        answer = client.get("/api/stories", params=params)
        assert answer.status_code == 200, answer.text
        return [s["id"] for s in answer.json()["stories"]]

    assert ids(outlet="apnews.com") == [explorer_data.story_id]
    assert explorer_data.story_id in ids(q="ferry TOLLBRIDGE", min_size=3)
    assert ids(since="2024-10-02T00:00:00Z", until="2024-10-02T12:00:00Z") == [explorer_data.story_id]
    largest = client.get("/api/stories", params={"order": "largest", "limit": 3}).json()
    assert [s["member_count"] for s in largest["stories"]] == sorted((s["member_count"] for s in largest["stories"]),
                                                                     reverse=True)
    assert largest["next_offset"] == 3
    assert explorer_data.merged_story_id in ids(limit=100) and len(ids(limit=100)) == len(set(ids(limit=100)))
    assert client.get("/api/stories", params={"limit": 101}).status_code == 422


@pytest.mark.parametrize(("path", "params"), [
    ("/api/stories", {"q": "crane\x00"}), ("/api/stories", {"outlet": "\x00"}),
    ("/api/stories", {"since": "0001-01-01T00:00:00Z", "until": "9999-12-31T23:59:59Z"}),
    ("/api/stories", {"min_size": str(2**63)}), ("/api/stories", {"offset": "-1"}),
    ("/api/lookup", {"url": "https://xn--n3h.example/%00%ff?a=%zz"}), ("/api/lookup", {"article_id": "%" * 40}),
    ("/api/why", {"a": "0" * 24, "b": "1" * 24}), ("/search", {"q": "\u202e\ufeff 💥 '; DROP TABLE articles; --"}),
    ("/stories/s-%27%3B", {}),
])
def test_odd_input_against_postgresql_is_never_a_500(client: TestClient, path: str, params: dict) -> None:
    answer = client.get(path, params=params)
    assert answer.status_code < 500, (answer.status_code, answer.text)


def test_why_together_across_a_merge(client: TestClient, explorer_data: ExplorerData) -> None:
    x, y, roundup = explorer_data.merged_article_ids
    why = client.get("/api/why", params={"a": x, "b": y}).json()
    assert why["same_story"] and why["jaccard"] == 0.0 and not why["verified"]
    assert [(step["from_id"], step["to_id"]) for step in why["chain"]] == [(x, roundup), (roundup, y)]
    detail = client.get(f"/api/stories/{explorer_data.merged_story_id}").json()
    assert {e["reason"] for e in detail["events"] if e["kind"] == "merged"} >= {
        f"absorbed {s}" for s in {f"s-{x}", f"s-{y}"} - {explorer_data.merged_story_id}}


def test_why_together_from_the_text_once_retention_dropped_the_hashes(client: TestClient,
                                                                     explorer_data: ExplorerData) -> None:
    wire, (copy, _) = explorer_data.wire_article_id, explorer_data.copy_article_ids
    before = client.get("/api/why", params={"a": wire, "b": copy}).json()
    assert (before["a"]["basis"], before["b"]["basis"]) == ("stored_hashes", "stored_hashes")
    assert before["verified"] and before["chain"]
    owner = create_engine(explorer_data.owner_url)
    with owner.begin() as conn:
        kept = conn.execute(text("SELECT signature, shingle_hashes FROM articles WHERE id = :id"), {"id": copy}).one()
        conn.execute(text("UPDATE articles SET signature = NULL, shingle_hashes = NULL WHERE id = :id"), {"id": copy})
    try:
        after = client.get("/api/why", params={"a": wire, "b": copy}).json()
    finally:
        with owner.begin() as conn:
            conn.execute(text("UPDATE articles SET signature = :s, shingle_hashes = :h WHERE id = :id"),
                         {"s": kept[0], "h": kept[1], "id": copy})
        owner.dispose()
    assert after["b"]["basis"] == "text" and after["a"]["basis"] == "stored_hashes"
    assert (after["jaccard"], after["containment"], after["b"]["shingles"]) == \
        (before["jaccard"], before["containment"], before["b"]["shingles"])


def test_hostile_articles_stay_text(client: TestClient, explorer_data: ExplorerData) -> None:
    first, second = explorer_data.hostile_article_ids
    for path, params in ((f"/stories/{explorer_data.hostile_story_id}", {}), ("/", {}),
                         ("/why", {"a": first, "b": second}), ("/search", {"q": "crane collapse"})):
        page = client.get(path, params=params)
        assert page.status_code == 200, (path, page.text)
        assert "<script" not in page.text.lower() and "<img" not in page.text and "<b>" not in page.text
        assert "&lt;script&gt;alert(&#34;title&#34;)&lt;/script&gt;" in page.text
    for path, params in ((f"/api/stories/{explorer_data.hostile_story_id}", {}),
                         ("/api/why", {"a": first, "b": second}), ("/api/lookup", {"article_id": first})):
        answer = client.get(path, params=params)
        assert answer.status_code == 200
        assert b"<" not in answer.content and b"\\u003cscript\\u003e" in answer.content
        assert HOSTILE_TITLE in answer.text.encode().decode("unicode_escape") or \
            HOSTILE_TITLE in json.dumps(answer.json(), ensure_ascii=False).replace('\\"', '"')
    why = client.get("/api/why", params={"a": first, "b": second}).json()
    assert '<script>alert("body")</script>' in why["a"]["excerpt"] + why["b"]["excerpt"]


def test_the_reader_role_cannot_write(explorer_data: ExplorerData) -> None:
    engine = make_reader_engine(explorer_data.reader_url)
    assert not can_write(engine)
    with pytest.raises(DBAPIError, match=r"permission denied|read-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM story_events"))
    engine.dispose()
    # Even the app role, which may write, cannot through the explorer's engine: its sessions are read-only.
    engine = make_reader_engine(explorer_data.app_url)
    assert can_write(engine)
    with pytest.raises(DBAPIError, match="read-only transaction"), engine.begin() as conn:
        conn.execute(text("DELETE FROM story_events"))
    engine.dispose()


def test_serve_runs_as_a_process_with_a_token_metrics_and_health(explorer_data: ExplorerData, tmp_path: Path) -> None:
    explorer = start_explorer(explorer_data.reader_url, tmp_path, token="explorer-test-token")
    try:
        base = explorer.base_url
        assert get(base, "/api/stories")[0] == 401
        assert get(base, "/api/stories", token="nope")[0] == 401
        status, body = get(base, f"/api/stories/{explorer_data.story_id}", token="explorer-test-token")
        assert status == 200 and json.loads(body)["story"]["id"] == explorer_data.story_id
        assert get(base, f"/stories/{explorer_data.story_id}")[0] == 200  # pages need no token
        status, body = get(base, "/readyz")
        assert status == 200 and json.loads(body)["checks"] == {"database": True}
        status, body = get(base, "/metrics")
        exposed = body.decode()
        assert status == 200 and 'route="/api/stories/{story_id}",status="200"' in exposed
        assert 'route="/api/stories",status="401"' in exposed and explorer_data.story_id not in exposed
    finally:
        assert stop_explorer(explorer) == 0
    log = explorer.log.read_text()
    assert "reader-dev-pw" not in log and "explorer-test-token" not in log


def test_serve_refuses_a_wrong_password_in_one_line(explorer_data: ExplorerData) -> None:
    wrong = make_url(explorer_data.reader_url).set(password="not-the-password").render_as_string(hide_password=False)
    result = subprocess.run([sys.executable, "-m", "consumers.cli", "serve", "--db", wrong, "--explorer-port", "18999"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("newsdedup: database error:") and "not-the-password" not in result.stderr


def test_serve_reads_embedded_modes_sqlite_file(services: Services, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'embedded.db'}"
    run_cli(["run", "--input", str(SAMPLES), "--db", database, "--no-progress", "--metrics-port", "0"],
            env={"PATH": services.env.get("PATH", "/usr/bin:/bin")})
    sample = json.loads(SAMPLES.read_text().splitlines()[0])
    explorer = start_explorer(database, tmp_path)
    try:
        query = urllib.parse.urlencode({"url": sample["url"]})
        status, body = get(explorer.base_url, f"/api/lookup?{query}")
        assert status == 200, body
        story_id = json.loads(body)["matches"][0]["story"]["id"]
        status, page = get(explorer.base_url, f"/stories/{story_id}")
        assert status == 200 and b'data-testid="timeline"' in page and sample["source"].encode() in page
    finally:
        assert stop_explorer(explorer) == 0
