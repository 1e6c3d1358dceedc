"""A hung store does not hang the API (issue 12, item 6).

The test's own ArcadeDB server is frozen with SIGSTOP: it keeps accepting TCP connections and
never answers, the worst case for a client. Before the fix, explanation, ring detail and /readyz
blocked for the whole freeze and, once enough requests were stuck on the shared worker threads,
/healthz and known-user reads timed out too. Now every store call is bounded by
``store_timeout_s`` on threads of its own: store-backed routes answer 503 with Retry-After
within the timeout, /healthz and known-user reads answer at once, and the API recovers when the
store does.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.main import create_app
from graphrisk.local_server import LocalServer
from graphrisk.store import GraphStore
from tests.api_fixtures import HEADERS, onboarding_of, own_settings, serve_in_thread
from tests.conftest import TEST_PASSWORD

TIMEOUT_S = 1.0  # the store timeout the app runs with
SLACK_S = 3.0  # scheduling on two shared cores, the audit commit, the HTTP round trip
STUCK = 48  # more than the 40 threads FastAPI runs sync routes on


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """An ArcadeDB server of this module only: it is frozen, and must not freeze anyone else's."""
    with LocalServer(
        root=tmp_path_factory.mktemp("hung"), password=TEST_PASSWORD, database="apitest"
    ) as server:
        yield server


def _freeze(server: LocalServer, sig: signal.Signals) -> None:
    proc = server._proc
    assert proc is not None and proc.poll() is None
    os.killpg(proc.pid, sig)  # the server runs in a session of its own: its JVM threads included


def _timed(
    client: httpx.Client, method: str, url: str, **kwargs: Any
) -> tuple[int | str, float, httpx.Headers | None]:
    started = time.monotonic()
    try:
        r = client.request(method, url, **kwargs)
    except httpx.TimeoutException:
        return "timeout", time.monotonic() - started, None
    return r.status_code, time.monotonic() - started, r.headers


@pytest.mark.slow
def test_frozen_store_gives_503_fast_and_liveness_and_known_users_keep_answering(
    world: dict[str, Any], own_server: LocalServer, tmp_path: Path
) -> None:
    settings = own_settings(world, tmp_path, store_uri=own_server.uri, store_timeout_s=TIMEOUT_S,
                            store_threads=2, new_applicant_timeout_s=TIMEOUT_S)  # fmt: skip
    with GraphStore(settings) as store:
        store.ensure_schema()  # an empty graph: reads answer with no rows while it runs
    app = create_app(settings)
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=TIMEOUT_S + SLACK_S + 5) as client:
        state = app.state.graphrisk
        flagged = sorted(state.input_row)[:4]
        ring = state.ring_summaries[0].id
        known = sorted(state.scores)[0]
        store_backed = [f"/v1/users/{u}/explanation" for u in flagged] + [f"/v1/rings/{ring}"]
        for path in [*store_backed, "/readyz"]:
            r = client.get(path, headers=HEADERS["admin"])
            assert r.status_code == 200, (path, r.text)

        _freeze(own_server, signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(STUCK + 8) as pool:
                stuck = [
                    pool.submit(_timed, client, "GET", store_backed[i % len(store_backed)], headers=HEADERS["investigator"])
                    for i in range(STUCK)
                ]  # fmt: skip
                stuck.append(pool.submit(_timed, client, "GET", "/readyz", headers=HEADERS["admin"]))
                new_applicant = onboarding_of(world, known) | {"user_id": "applicant-during-freeze"}
                stuck.append(pool.submit(_timed, client, "POST", "/v1/score", json=new_applicant,
                                         headers=HEADERS["onboarding"]))  # fmt: skip
                time.sleep(0.5)  # the store-backed requests are in
                live = [_timed(client, "GET", "/healthz") for _ in range(5)]
                reads = [_timed(client, "GET", f"/v1/users/{known}/score", headers=HEADERS["onboarding"])
                         for _ in range(5)]  # fmt: skip
                known_post = _timed(client, "POST", "/v1/score", json=onboarding_of(world, known),
                                    headers=HEADERS["onboarding"])  # fmt: skip
                answers = [f.result() for f in stuck]
            # Liveness and known users never wait on the store.
            assert all(code == 200 and took < 1.0 for code, took, _ in live), live
            assert all(code == 200 and took < 1.0 for code, took, _ in reads), reads
            assert known_post[0] == 200 and known_post[1] < 1.0, known_post
            # Store-backed routes: 503 with Retry-After within the timeout (plus slack), none hangs.
            for code, took, headers in answers:
                assert code == 503, answers
                assert took < TIMEOUT_S + SLACK_S, answers
                assert headers is not None and int(headers["retry-after"]) >= 1
            r = client.get("/readyz", headers=HEADERS["admin"])
            assert r.status_code == 503 and r.json()["detail"]["store"] in ("not answering", "unavailable")
            assert "bolt" not in r.text.lower() and "neo4j" not in r.text.lower()  # no driver messages
        finally:
            _freeze(own_server, signal.SIGCONT)

        # Recovery: once the store answers again, so do the routes that need it.
        deadline = time.monotonic() + 60
        while True:
            codes = [client.get(p, headers=HEADERS["investigator"]).status_code for p in store_backed]
            if codes == [200] * len(store_backed) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert codes == [200] * len(store_backed)
        assert client.get("/readyz").status_code == 200
