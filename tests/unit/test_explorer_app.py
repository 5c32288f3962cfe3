"""consumers/explorer over an embedded-mode SQLite store: pages, API, validation, escaping, token, metrics.

The store is filled by ``run_embedded`` with the explorer's test articles (tests/unit/explorer_articles.py):
the same stories the integration tests make through Kafka and PostgreSQL, in a second.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from consumers.embedded import run_embedded
from consumers.explorer.app import create_app
from consumers.settings import Settings, load_settings, replace
from consumers.storage.database import make_engine
from consumers.storage.explore import ExplorerStore, make_reader_engine
from consumers.storage.schema import upgrade
from consumers.storage.store import StoryStore
from tests.unit.explorer_articles import HOSTILE_TITLE, LOOKUP_URL, phases


@dataclass(frozen=True)
class Filled:
    url: str
    settings: Settings
    ids: dict[str, str]  # input id -> article id
    story_of: dict[str, str]  # article id -> story id


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    url = f"sqlite:///{tmp_path_factory.mktemp('explorer') / 'store.db'}"
    settings = load_settings({}, {"database_url": url, "metrics_port": 0})
    engine = make_engine(url)
    upgrade(engine)
    first, second = phases()
    lines = [json.dumps(row).encode() for row in (*first, *second)]
    summary = run_embedded(lines, "explorer", settings, StoryStore(engine))
    assert not summary.rejected
    with engine.connect() as conn:
        ids = dict(conn.execute(text("SELECT input_id, id FROM articles")).all())
        story_of = dict(conn.execute(text("SELECT id, story_id FROM articles")).all())
    engine.dispose()
    return Filled(url, settings, ids, story_of)


@pytest.fixture(scope="module")
def client(filled: Filled) -> Iterator[TestClient]:
    app = create_app(filled.settings, ExplorerStore(make_reader_engine(filled.url)))
    with TestClient(app) as test_client:
        yield test_client


def test_the_pages_show_the_stories_with_their_hooks(client: TestClient, filled: Filled) -> None:
    index = client.get("/")
    assert index.status_code == 200
    assert 'data-testid="story-row"' in index.text and 'data-testid="search-box"' in index.text
    story_id = filled.story_of[filled.ids["wire-1"]]
    page = client.get(f"/stories/{story_id}")
    assert page.status_code == 200
    assert 'data-testid="member-table"' in page.text and '<figure data-testid="timeline"' in page.text
    rows = re.findall(r'<tr data-testid="member-row" data-canonical="(true|false)" data-article-id="(\w+)"', page.text)
    assert sorted(rows) == sorted([("true", filled.ids["wire-1"]), ("false", filled.ids["copy-1"]),
                                   ("false", filled.ids["copy-2"])])
    for outlet in ("apnews.com", "riverside-post.example", "coastal-times.example"):
        assert outlet in page.text
    assert "canonical_changed" in page.text and "<svg" in page.text


def test_lookup_by_url_normalises_it_as_ingest_does(client: TestClient, filled: Filled) -> None:
    answer = client.get("/api/lookup", params={"url": LOOKUP_URL})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["url_normalised"] == "https://riverside-post.example/news/ferry-strike-copy"
    [match] = body["matches"]
    assert match["article"]["id"] == filled.ids["copy-1"]
    assert match["story"]["id"] == filled.story_of[filled.ids["wire-1"]]
    assert match["canonical"]["id"] == filled.ids["wire-1"] and match["canonical"]["source"] == "apnews.com"
    assert match["article"]["match_method"] in {"near", "canonical"} and 0 < match["article"]["similarity"] <= 1
    by_id = client.get(f"/api/articles/{filled.ids['copy-1']}").json()
    assert by_id["matches"][0]["story"] == match["story"]
    search = client.get("/search", params={"q": LOOKUP_URL}, follow_redirects=False)
    assert search.status_code == 303
    assert search.headers["location"] == f"/stories/{match['story']['id']}#article-{filled.ids['copy-1']}"


def test_unseen_urls_and_ids_are_404_with_a_clear_message(client: TestClient) -> None:
    answer = client.get("/api/lookup", params={"url": "https://nowhere.example/a?utm_source=x"})
    assert answer.status_code == 404
    assert answer.json()["detail"] == "not seen: no stored article has the URL https://nowhere.example/a"
    assert client.get("/api/articles/" + "0" * 24).status_code == 404
    assert client.get("/api/stories/s-" + "0" * 24).status_code == 404
    page = client.get("/search", params={"q": "https://nowhere.example/a"})
    assert page.status_code == 404 and "Not seen" in page.text and 'data-testid="not-seen"' in page.text


@pytest.mark.parametrize(("path", "params", "message"), [
    ("/api/stories", {"limit": "1000"}, "limit: Input should be less than or equal to 100"),
    ("/api/stories", {"limit": "0"}, "limit"),
    ("/api/stories", {"offset": "99999999"}, "offset"),
    ("/api/stories", {"limit": "ten"}, "limit: Input should be a valid integer"),
    ("/api/stories", {"since": "yesterday"}, "since"),
    ("/api/stories", {"since": "2024-10-01T00:00:00"}, "since needs a time zone"),
    ("/api/stories", {"since": "2024-10-05T00:00:00Z", "until": "2024-10-01T00:00:00Z"}, "since is after until"),
    ("/api/stories", {"min_size": "5", "max_size": "2"}, "min_size is above max_size"),
    ("/api/stories", {"order": "random"}, "order"),
    ("/api/stories", {"q": " ".join(["w"] * 20)}, "at most 8"),
    ("/api/stories", {"q": "x" * 5000}, "q"),
    ("/api/stories", {"q": "crane\x00collapse"}, "the search contains control characters"),
    ("/api/stories", {"outlet": "apnews.com\x00"}, "outlet contains control characters"),
    ("/api/stories", {"min_size": str(10**30)}, "min_size"),
    ("/api/lookup", {}, "exactly one of"),
    ("/api/lookup", {"url": "https://a.example/\x00"}, "spaces or control characters"),
    ("/api/lookup", {"url": "https://a.example/x", "article_id": "ab"}, "exactly one of"),
    ("/api/lookup", {"url": "javascript:alert(1)"}, "http:// or https://"),
    ("/api/lookup", {"url": "ftp://files.example/a"}, "http:// or https://"),
    ("/api/lookup", {"url": "http://"}, "http:// or https://"),
    ("/api/lookup", {"url": "/relative/path"}, "http:// or https://"),
    ("/api/lookup", {"url": "https://a.example:99999999/x"}, "malformed host or port"),
    ("/api/lookup", {"url": "https://[::1/x"}, "malformed host or port"),
    ("/api/lookup", {"url": "https://a.example/with space"}, "spaces or control characters"),
    ("/api/lookup", {"url": "https://a.example/" + "x" * 5000}, "url"),
    ("/api/lookup", {"article_id": "../../etc/passwd"}, "article_id must be"),
    ("/api/lookup", {"article_id": "x" * 41}, "article_id"),
    ("/api/articles/%3Cscript%3E", {}, "article_id"),
    ("/api/stories/" + "s" * 41, {}, "story_id"),
    ("/api/why", {"a": "abc"}, "b: Field required"),
    ("/api/why", {"a": "abc", "b": "<b>"}, "b must be"),
])
def test_bad_input_is_a_4xx_with_a_clear_message_never_a_500(client: TestClient, path: str, params: dict,
                                                              message: str) -> None:
    answer = client.get(path, params=params)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    assert message in answer.json()["detail"]
    assert "<" not in answer.content.decode()  # a hostile value is never echoed as markup, not even in JSON


@pytest.mark.parametrize("path", ["/stories/..%2F..%2Fetc", "/stories/" + "s" * 500, "/why?a=1&b=%3Cscript%3E",
                                  "/why?a=x", "/search?q=" + "x" * 5000, "/search?q=http://[::1/x",
                                  "/search?q=" + "+".join(["w"] * 20), "/nowhere"])
def test_bad_page_requests_are_4xx_pages(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    assert answer.headers["content-type"].startswith("text/html")
    assert 'data-testid="error"' in answer.text or 'data-testid="not-seen"' in answer.text
    assert "<script>" not in answer.text


def test_hostile_articles_are_escaped_in_pages_and_json(client: TestClient, filled: Filled) -> None:
    hostile, copy = filled.ids["hostile-1"], filled.ids["hostile-2"]
    story_id = filled.story_of[hostile]
    assert filled.story_of[copy] == story_id
    pages = [client.get(f"/stories/{story_id}"), client.get("/"), client.get("/why", params={"a": hostile, "b": copy}),
             client.get("/search", params={"q": "crane collapse"}),
             client.get("/search", params={"q": '<script>alert("q")</script>'})]
    for page in pages:
        assert page.status_code == 200, page.text
        assert "<script" not in page.text.lower() and "<img" not in page.text and "<b>" not in page.text
    assert "&lt;script&gt;alert(&#34;title&#34;)&lt;/script&gt;" in pages[0].text
    assert "&lt;script&gt;alert(&#34;body&#34;)&lt;/script&gt;" in pages[2].text  # the excerpt of the body
    for answer in (client.get(f"/api/stories/{story_id}"), client.get("/api/why", params={"a": hostile, "b": copy}),
                   client.get("/api/stories", params={"q": "crane"})):
        assert answer.status_code == 200
        assert b"<" not in answer.content and b">" not in answer.content
        assert HOSTILE_TITLE in strings(answer.json())  # the same value, escaped only in the bytes
    why = client.get("/api/why", params={"a": hostile, "b": copy}).json()
    assert '<script>alert("body")</script>' in why["a"]["excerpt"] + why["b"]["excerpt"]


def strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return [value] if isinstance(value, str) else []


def test_every_response_forbids_scripts(client: TestClient, filled: Filled) -> None:
    for path in ("/", f"/stories/{filled.story_of[filled.ids['wire-1']]}", "/api/stories", "/docs", "/nowhere"):
        headers = client.get(path).headers
        assert "script-src" not in headers["content-security-policy"]  # default-src 'none' covers scripts
        assert headers["content-security-policy"].startswith("default-src 'none'")
        assert headers["x-content-type-options"] == "nosniff"


def test_a_link_is_made_only_to_http_urls() -> None:
    from consumers.explorer.pages import safe_href

    assert safe_href("https://a.example/x") == "https://a.example/x"
    assert safe_href("javascript:alert(1)") is None and safe_href("JaVaScRiPt:alert(1)") is None
    assert safe_href("data:text/html,<script>") is None and safe_href("http://[::1") is None


def test_stories_are_paged_and_filtered(client: TestClient, filled: Filled) -> None:
    wire_story = filled.story_of[filled.ids["wire-1"]]
    everything = client.get("/api/stories", params={"limit": 100}).json()
    ids = [s["id"] for s in everything["stories"]]
    assert wire_story in ids and everything["next_offset"] is None
    assert not {filled.story_of[filled.ids["x-1"]], filled.story_of[filled.ids["y-1"]]} - set(ids) or \
        len({filled.story_of[filled.ids["x-1"]], filled.story_of[filled.ids["y-1"]]}) == 1
    first = client.get("/api/stories", params={"limit": 2}).json()
    second = client.get("/api/stories", params={"limit": 2, "offset": first["next_offset"]}).json()
    assert [s["id"] for s in first["stories"] + second["stories"]] == ids[:4]
    assert [s["id"] for s in client.get("/api/stories", params={"outlet": "APnews.com"}).json()["stories"]] \
        == [wire_story]
    assert wire_story in [s["id"] for s in client.get("/api/stories", params={"q": "tollbridge STRIKE"}).json()
                          ["stories"]]
    largest = client.get("/api/stories", params={"order": "largest", "min_size": 3}).json()["stories"]
    assert largest and all(s["member_count"] >= 3 for s in largest)
    assert [s["member_count"] for s in largest] == sorted((s["member_count"] for s in largest), reverse=True)
    window = client.get("/api/stories", params={"since": "2024-10-02T00:00:00Z",
                                                "until": "2024-10-02T23:59:59+00:00"}).json()["stories"]
    assert [s["id"] for s in window] == [wire_story]
    assert client.get("/api/stories", params={"q": "no-such-word-anywhere"}).json()["stories"] == []


def test_one_story_has_its_members_lineage_and_events(client: TestClient, filled: Filled) -> None:
    detail = client.get(f"/api/stories/{filled.story_of[filled.ids['wire-1']]}").json()
    assert detail["story"]["member_count"] == 3 and detail["story"]["outlet_count"] == 3
    assert detail["story"]["canonical_article_id"] == filled.ids["wire-1"]
    members = {m["input_id"]: m for m in detail["members"]}
    assert members["wire-1"]["canonical"] and not members["copy-1"]["canonical"]
    assert members["copy-2"]["containment"] == pytest.approx(1.0)
    assert {m["source_topic"] for m in detail["members"]} == {"file:explorer"}  # embedded: the source
    kinds = [e["kind"] for e in detail["events"]]
    assert kinds.count("joined") == 2 and "canonical_changed" in kinds and kinds[0] == "founded"


def test_why_together_gives_similarity_and_the_chain_of_joins(client: TestClient, filled: Filled) -> None:
    ids = filled.ids
    why = client.get("/api/why", params={"a": ids["copy-2"], "b": ids["wire-1"]}).json()
    assert why["containment"] == pytest.approx(1.0) and 0.5 < why["jaccard"] < 0.8
    assert why["verified"] and why["same_story"] and why["a"]["basis"] == "stored_hashes"
    assert why["chain"] and why["chain"][0]["from_id"] == ids["copy-2"] and why["chain"][-1]["to_id"] == ids["wire-1"]
    merged = client.get("/api/why", params={"a": ids["x-1"], "b": ids["y-1"]}).json()
    assert merged["same_story"] and merged["jaccard"] == 0.0 and not merged["verified"]
    assert [step["kind"] for step in merged["chain"]] == ["merged", "joined"] or \
        [step["kind"] for step in merged["chain"]] == ["joined", "merged"]
    assert {merged["chain"][0]["to_id"]} == {ids["roundup-1"]}
    apart = client.get("/api/why", params={"a": ids["x-1"], "b": ids["wire-1"]}).json()
    assert not apart["same_story"] and apart["chain"] is None
    page = client.get("/why", params={"a": ids["x-1"], "b": ids["y-1"]})
    assert page.status_code == 200 and 'data-testid="why-chain"' in page.text


def test_the_api_token_guards_the_api_only(filled: Filled) -> None:
    settings = replace(filled.settings, explorer_token="s3cret-token")
    with TestClient(create_app(settings, ExplorerStore(make_reader_engine(filled.url)))) as guarded:
        assert guarded.get("/api/stories").status_code == 401
        refused = guarded.get("/api/stories", headers={"Authorization": "Bearer wrong"})
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in refused.json()["detail"]
        assert guarded.get("/api/stories", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        for open_path in ("/", "/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert guarded.get(open_path).status_code == 200, open_path
        assert "HTTPBearer" in json.dumps(guarded.get("/openapi.json").json()["components"]["securitySchemes"])


def test_metrics_count_requests_by_route_template_never_by_path(client: TestClient, filled: Filled) -> None:
    story_id = filled.story_of[filled.ids["wire-1"]]
    client.get(f"/api/stories/{story_id}")
    client.get("/no/such/page")
    exposed = client.get("/metrics").text
    assert re.search(r'newsdedup_http_requests_total\{method="GET",role="explorer",'
                     r'route="/api/stories/\{story_id\}",status="200"\} [1-9]', exposed)
    assert 'route="unmatched",status="404"' in exposed
    assert 'newsdedup_http_request_duration_seconds_bucket{le="0.1",method="GET",role="explorer",route="/"' in exposed
    assert story_id not in exposed and "/no/such/page" not in exposed
    assert 'newsdedup_ready{role="explorer"} 1.0' in exposed


def test_health_endpoints_answer_like_the_roles(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"ok": True, "alive": True, "checks": {"database": True}}
    assert client.get("/readyz").status_code == 200


def test_not_ready_without_a_schema_and_503_when_the_database_fails(tmp_path: Path, filled: Filled) -> None:
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    with TestClient(create_app(filled.settings, ExplorerStore(make_reader_engine(empty)))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"] == {"database": False}
        answer = client.get("/api/stories")
        assert answer.status_code == 503 and "database does not answer" in answer.json()["detail"]


def test_the_reader_engine_cannot_write(filled: Filled) -> None:
    engine = make_reader_engine(filled.url)
    with pytest.raises(OperationalError, match=r"readonly|read-only|query_only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM story_events"))
    engine.dispose()


def test_docs_and_openapi_work_offline(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert {"/api/lookup", "/api/articles/{article_id}", "/api/stories", "/api/stories/{story_id}", "/api/why"} \
        <= set(document["paths"])
    limit = next(p for p in document["paths"]["/api/stories"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 100
    docs = client.get("/docs")
    assert docs.status_code == 200 and "GET /api/why" in docs.text and "cdn" not in docs.text.lower()
    assert client.get("/redoc").status_code == 404


def test_serve_refuses_a_missing_sqlite_file_without_making_one(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from consumers.cli import main

    missing = tmp_path / "missing.db"
    assert main(["serve", "--db", f"sqlite:///{missing}", "--explorer-port", "18555"]) == 2
    assert f"no SQLite database at {missing}" in capsys.readouterr().err
    assert not missing.exists()


def test_explorer_settings_take_the_secret_file_pattern_and_a_real_port(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("from-a-file\n")
    settings = load_settings({"NEWSDEDUP_EXPLORER_TOKEN_FILE": str(token)})
    assert settings.explorer_token == "from-a-file" and "from-a-file" not in repr(settings)
    assert (settings.explorer_host, settings.explorer_port) == ("127.0.0.1", 8080)
    with pytest.raises(ValueError, match="explorer_port=70000 must be a TCP port"):
        load_settings({"NEWSDEDUP_EXPLORER_PORT": "70000"})
