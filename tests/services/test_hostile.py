"""Hostile input and crashes mid-flight, against the real services as subprocesses."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qmtl import devstack
from qmtl.devstack.stack import LocalStack
from qmtl.foundation.dag import chain_dag
from qmtl.services.controlbus import FREEZE, Envelope
from qmtl.testing.metrics import scrape

pytestmark = pytest.mark.integration


def wait_ready(stack: LocalStack) -> None:
    devstack.wait_for(
        lambda: httpx.get(f"{stack.url('gateway')}/status", timeout=5).json()["controlbus"]["ready"],
        timeout=30, what="gateway subscribed to the ControlBus",
    )  # fmt: skip


def apply(stack: LocalStack, world: str = "w") -> httpx.Response:
    return httpx.post(
        f"{stack.url('worldservice')}/worlds/{world}/apply", json={"wait": True}, timeout=60
    )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    overrides = {"worldservice": {"ack_timeout_seconds": 5}}
    with LocalStack(tmp_path / "stack", overrides) as running:
        httpx.post(f"{running.url('worldservice')}/worlds", json={"world_id": "w"}, timeout=10)
        wait_ready(running)
        yield running


def test_a_forged_event_is_refused_and_never_stops_apply_runs(stack: LocalStack) -> None:
    """`"id": [1]` used to kill the delivery threads of WorldService and Gateway."""
    ws = stack.url("worldservice")
    forged = Envelope(
        type=FREEZE, source="x", subject="w", data={"world_id": "w", "run_id": "r"}
    ).as_dict()
    for bad in ({**forged, "id": [1]}, {**forged, "data": "nope"}, {**forged, "type": "qmtl.evil"},
                {**forged, "time": "yesterday"}, [1, 2], {**forged, "extra": 1}):  # fmt: skip
        response = httpx.post(f"{ws}/controlbus/events", json=bad, timeout=10)
        assert response.status_code == 422 and response.json()["error"] == "invalid_request", bad
    assert (
        scrape(f"{ws}/metrics").get_value(
            "controlbus_invalid_events_total", reason="invalid_envelope"
        )
        == 6
    )
    assert apply(stack).status_code == 200
    assert httpx.get(f"{stack.url('gateway')}/status", timeout=5).json()["controlbus"]["ready"]
    assert httpx.get(f"{ws}/status", timeout=5).json()["controlbus"]["ready"]


#: The event of the report that stopped every apply: a deadline of ``Infinity`` was
#: accepted, and every later read of the log answered 500.
NON_FINITE_EVENT = (
    '{"specversion":"1.0","type":"qmtl.apply.freeze","source":"x","subject":"w","id":"p1",'
    '"time":"2026-12-06T23:00:00Z","data":{"world_id":"w","run_id":"r","deadline":%s}}'
)


def test_non_finite_numbers_are_refused_at_every_json_door(stack: LocalStack) -> None:
    """NaN, the infinities and 1e999 are not JSON: each door answers 400 invalid_json (or
    422) naming the problem, nothing is stored, and the log and applies keep working."""
    ws, gw = stack.url("worldservice"), stack.url("gateway")
    headers = {"content-type": "application/json"}
    for number in ("Infinity", "-Infinity", "NaN", "1e999"):
        answer = httpx.post(
            f"{ws}/controlbus/events", content=NON_FINITE_EVENT % number, headers=headers,
            timeout=10,
        )  # fmt: skip
        assert answer.status_code == 400, (number, answer.text)
        assert answer.json()["error"] == "invalid_json" and "finite" in answer.json()["message"]
    allocations = httpx.put(
        f"{ws}/worlds/w/allocations", content='{"allocations": {"s": NaN}}', headers=headers,
        timeout=10,
    )  # fmt: skip
    assert allocations.status_code == 400 and "NaN" in allocations.json()["message"]
    dag = json.loads(chain_dag(2, salt="nan"))
    dag["nodes"][0]["config"] = {"x": 1}
    body = json.dumps({"dag": dag}).replace('{"x": 1}', '{"x": Infinity}')
    submitted = httpx.post(f"{gw}/strategies", content=body, headers=headers, timeout=10)
    assert submitted.status_code == 400 and submitted.json()["error"] == "invalid_json"
    as_text = json.dumps({"dag": json.dumps(dag).replace('{"x": 1}', '{"x": -Infinity}')})
    submitted = httpx.post(f"{gw}/strategies", content=as_text, headers=headers, timeout=10)
    assert submitted.status_code == 422 and submitted.json()["error"] == "invalid_dag"
    # Nothing got in: the log reads, the Gateway stays subscribed, applies run.
    read = httpx.get(f"{ws}/controlbus/events", params={"since": 0}, timeout=10)
    assert read.status_code == 200 and all(e["id"] != "p1" for e in read.json()["events"])
    assert apply(stack).status_code == 200
    assert httpx.get(f"{gw}/status", timeout=5).json()["controlbus"]["ready"]


def test_a_bad_record_on_the_kafka_bus_is_skipped(tmp_path: Path, kafka: devstack.Kafka) -> None:
    """Records that bypass the HTTP edge (straight onto the topic) are logged, counted, skipped."""
    from confluent_kafka import Producer

    overrides = {"worldservice": {"ack_timeout_seconds": 10}}
    with LocalStack(tmp_path / "k", overrides, kafka=kafka.bootstrap) as stack:
        httpx.post(f"{stack.url('worldservice')}/worlds", json={"world_id": "w"}, timeout=10)
        wait_ready(stack)
        producer = Producer({"bootstrap.servers": kafka.bootstrap})
        topic = stack.config["controlbus"]["topic"]
        bad = Envelope(
            type=FREEZE, source="x", subject="w", data={"world_id": "w", "run_id": "r"}
        ).as_dict()
        infinite = (NON_FINITE_EVENT % "Infinity").encode()
        for record in (b"not json", json.dumps({**bad, "id": [1]}).encode(), b"[]", infinite):
            producer.produce(topic, record)
        producer.flush(10)
        devstack.wait_for(
            lambda: (scrape(f"{stack.url('gateway')}/metrics").get_value(
                "controlbus_invalid_events_total", reason="invalid_json") or 0) >= 2,
            timeout=30, what="the Gateway to skip the records that are not JSON",
        )  # fmt: skip
        devstack.wait_for(
            lambda: (scrape(f"{stack.url('gateway')}/metrics").get_value(
                "controlbus_invalid_events_total", reason="invalid_envelope") or 0) >= 2,
            timeout=30, what="the Gateway to skip the bad records",
        )  # fmt: skip
        assert apply(stack).status_code == 200, "the consumer loops survived"


def test_exposed_worldservice_and_gateway_need_tokens(tmp_path: Path) -> None:
    """Bound to every interface: every state-changing endpoint wants its bearer token."""
    overrides = {
        "worldservice": {"host": "", "admin_token": "ws-tok"},
        "gateway": {"host": "", "submit_token": "gw-tok", "admin_token": "gw-admin"},
        "controlbus": {"token": "bus-tok"},
    }
    with LocalStack(tmp_path / "exposed", overrides, drills=False) as stack:
        ws, gw = stack.url("worldservice"), stack.url("gateway")
        auth = {"Authorization": "Bearer ws-tok"}
        for method, path, body in (
            ("POST", "/worlds", {"world_id": "w"}),
            ("PUT", "/worlds/w/allocations", {"allocations": {"s": 0.5}}),
            ("POST", "/worlds/w/apply", {}),
            ("DELETE", "/worlds/w", None),
            ("POST", "/controlbus/events", {}),
            ("POST", "/promotion-guard/sources", {"url": "http://h:1"}),
        ):
            refused = httpx.request(method, f"{ws}{path}", json=body, timeout=10)
            assert refused.status_code == 401, (path, refused.text)
        assert (
            httpx.post(f"{ws}/worlds", json={"world_id": "w"}, headers=auth, timeout=10).status_code
            == 201
        )
        # The ControlBus log takes its own token or the WorldService admin token.
        event = Envelope(type="qmtl.world.deleted", source="t", subject="z",
                         data={"world_id": "z"}).as_dict()  # fmt: skip
        for token in ("bus-tok", "ws-tok"):
            published = httpx.post(f"{ws}/controlbus/events", json={**event, "id": token},
                                   headers={"Authorization": f"Bearer {token}"}, timeout=10)  # fmt: skip
            assert published.status_code == 202, (token, published.text)
        wrong = httpx.post(
            f"{ws}/worlds",
            json={"world_id": "x"},
            headers={"Authorization": "Bearer no"},
            timeout=10,
        )
        assert wrong.status_code == 403
        body = {"dag": json.loads(chain_dag(2, salt="tok"))}
        assert httpx.post(f"{gw}/strategies", json=body, timeout=30).status_code == 401
        ok = httpx.post(
            f"{gw}/strategies", json=body, headers={"Authorization": "Bearer gw-tok"}, timeout=30
        )
        assert ok.status_code == 200, ok.text
        # The Gateway still ACKs over the guarded log (it sends controlbus.token).
        wait_ready(stack)
        applied = httpx.post(f"{ws}/worlds/w/apply", json={"wait": True}, headers=auth, timeout=60)
        assert applied.status_code == 200, applied.text
        # Drills off (the default outside `qmtl up` and the e2e suite): no fault switch exists.
        for url, headers in ((ws, auth), (gw, {"Authorization": "Bearer gw-admin"}),
                             (stack.url("dagmanager"), {})):  # fmt: skip
            for method in ("GET", "POST", "DELETE"):
                answer = httpx.request(
                    method, f"{url}/admin/faults", json={}, headers=headers, timeout=10
                )
                assert answer.status_code == 404, (url, method, answer.text)


def test_a_worldservice_dying_mid_apply_leaves_no_world_frozen(tmp_path: Path) -> None:
    """SIGKILL the WorldService while it waits for the freeze ACK: the Gateway unfreezes at
    the freeze deadline by itself; the restarted WorldService fails the run in its stage."""
    overrides = {
        "worldservice": {
            "ack_timeout_seconds": 10,
            "freeze_deadline_seconds": 6,
            "apply_lease_seconds": 3,
        }
    }
    with LocalStack(tmp_path / "crash", overrides) as stack:
        ws, gw = stack.url("worldservice"), stack.url("gateway")
        httpx.post(f"{ws}/worlds", json={"world_id": "w"}, timeout=10)
        wait_ready(stack)
        httpx.post(f"{gw}/admin/faults", json={"ack_delay_ms": 4000}, timeout=10).raise_for_status()
        started = httpx.post(f"{ws}/worlds/w/apply", json={"run_id": "crashed"}, timeout=10)
        assert started.status_code == 202
        body = {"dag": json.loads(chain_dag(2, salt="frozen")), "world_id": "w"}
        devstack.wait_for(
            lambda: httpx.post(f"{gw}/strategies", json=body, timeout=10).status_code == 409,
            timeout=10, what="the Gateway to freeze world w",
        )  # fmt: skip
        stack.services["worldservice"].process.kill()
        stack.services.pop("worldservice")
        assert httpx.get(f"{gw}/status", timeout=5).json()["frozen_worlds"].get("w") is not None
        devstack.wait_for(
            lambda: httpx.post(f"{gw}/strategies", json=body, timeout=10).status_code == 200,
            timeout=30, what="the freeze to lapse at its deadline",
        )  # fmt: skip
        assert "freeze lapsed at its deadline" in (stack.workdir / "gateway.log").read_text()
        httpx.delete(f"{gw}/admin/faults", timeout=10)
        stack.start_service("worldservice")
        run = devstack.wait_for(
            lambda: (r := httpx.get(f"{ws}/worlds/w/runs/crashed", timeout=10).json())["status"] != "running" and r,
            timeout=60, what="the restarted WorldService to fail the orphaned run",
        )  # fmt: skip
        assert run["status"] == "failure" and run["stage"] == "freeze" and "restart" in run["error"]
        m = scrape(f"{ws}/metrics")
        assert (
            m.get_value("world_apply_failure_total", world_id="w", run_id="crashed", stage="freeze")
            == 1
        )
        wait_ready(stack)
        assert apply(stack).status_code == 200


def test_in_flight_submissions_are_diffed_once(tmp_path: Path) -> None:
    """300 distinct submissions with 300 ms diffs: each is diffed once (the retry loop used
    to re-diff in-flight rows: 77 of 300) and every stored result stays the first one."""
    overrides = {"gateway": {"retry_interval_seconds": 0.1}}
    with LocalStack(tmp_path / "once", overrides) as stack:
        gw, dm = stack.url("gateway"), stack.url("dagmanager")
        httpx.post(f"{dm}/admin/faults", json={"diff_delay_ms": 300}, timeout=10).raise_for_status()
        before = scrape(f"{dm}/metrics").get_value("diff_requests_total") or 0
        codes: list[int] = []

        def client(n: int) -> None:
            with httpx.Client(timeout=120) as http:
                for _ in range(n):
                    body = {"dag": json.loads(chain_dag(2, salt=uuid.uuid4().hex)), "world_id": "w"}
                    codes.append(http.post(f"{gw}/strategies", json=body).status_code)

        threads = [threading.Thread(target=client, args=(30,)) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert codes.count(200) == 300, sorted(set(codes))
        diffs = (scrape(f"{dm}/metrics").get_value("diff_requests_total") or 0) - before
        assert diffs == 300, f"{diffs - 300} submissions were diffed twice"
        status = httpx.get(f"{gw}/status", timeout=10).json()
        assert status["submissions"] == {"completed": 300}


def test_declared_oversized_bodies_are_refused_before_reading(stack: LocalStack) -> None:
    """A 256 MiB Content-Length gets 413 without a byte of body sent."""
    port = int(stack.url("gateway").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /strategies HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 268435456\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(4096):  # the server answers and closes; we sent no body
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"payload_too_large" in answer

    def chunks() -> Iterator[bytes]:
        yield b'{"dag": "'
        for _ in range(40):
            yield b"x" * (1024 * 1024)

    streamed = httpx.post(f"{stack.url('gateway')}/strategies", content=chunks(), timeout=60)
    assert streamed.status_code == 413
    assert (
        scrape(f"{stack.url('gateway')}/metrics").get_value("gateway_submissions_total", code="413")
        == 2
    )


def _get_health(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while not answer.endswith(b"}"):  # one small JSON body, then the connection stays open
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return answer


def test_an_idle_connection_outlives_the_clients_idle_expiry(stack: LocalStack) -> None:
    """An httpx client reuses an idle connection for 5 s; the server must not close it
    first, or a request sent in that instant is lost ("server disconnected")."""
    port = int(stack.url("gateway").rsplit(":", 1)[1])
    client_expiry = httpx.Limits().keepalive_expiry
    assert client_expiry is not None
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        assert _get_health(sock).startswith(b"HTTP/1.1 200")
        sock.settimeout(client_expiry + 1.0)
        with pytest.raises(TimeoutError):  # nothing arrives: in particular, no close
            sock.recv(1)
        sock.settimeout(10)
        assert _get_health(sock).startswith(b"HTTP/1.1 200")


def test_a_submitter_chosen_admin_url_gets_no_token_and_blocks_only_its_world(
    tmp_path: Path,
) -> None:
    """The report: a strategy author named a listener of theirs as admin URL; the
    WorldService sent it the SDK admin token (also on an unauthenticated GET
    /promotion-guard, and `qmtl ops cross-context show` did too), and once the listener
    went away every apply of every world answered 503 for 600 s."""
    import subprocess
    import sys

    from qmtl.testing.receivers import ScriptedHttp

    overrides = {
        "sdk": {"admin_token": "sdk-secret"},
        "dagmanager": {"admin_token": "dm-secret"},
        "worldservice": {"guard_poll_seconds": 600, "ack_timeout_seconds": 5},
    }
    listener = ScriptedHttp({"/admin/cross-context": [(200, {"hits": [], "last_reset": None})]})
    listener.start()
    try:
        with LocalStack(tmp_path / "thief", overrides) as stack:
            ws, gw = stack.url("worldservice"), stack.url("gateway")
            for world in ("mine", "other"):
                httpx.post(f"{ws}/worlds", json={"world_id": world}, timeout=10)
            wait_ready(stack)
            body = {"dag": json.loads(chain_dag(2, salt="thief")), "world_id": "mine",
                    "admin_url": listener.url}  # fmt: skip
            assert httpx.post(f"{gw}/strategies", json=body, timeout=30).status_code == 200
            devstack.wait_for(
                lambda: httpx.get(f"{ws}/promotion-guard/sources", timeout=5).json()["sources"],
                timeout=30, what="the Gateway to register the admin URL",
            )  # fmt: skip
            before = len(listener.requests)
            for _ in range(5):
                assert httpx.get(f"{ws}/promotion-guard", timeout=5).status_code == 200
            assert len(listener.requests) == before, "GET /promotion-guard called out"
            shown = subprocess.run(
                [sys.executable, "-m", "qmtl", "ops", "--config", str(stack.config_path),
                 "cross-context", "show"], capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert shown.returncode == 0, shown.stdout + shown.stderr
            assert f"sdk {listener.url}: 0 unresolved" in shown.stdout
            assert httpx.post(f"{ws}/worlds/mine/apply", json={"wait": True},
                              timeout=60).status_code == 200  # fmt: skip
            assert len(listener.requests) >= before + 2, "ops and the apply read the listener"
            assert all("Authorization" not in h and "authorization" not in h
                       for h in listener.headers), listener.headers  # fmt: skip
            # The listener goes away: its own world waits, every other world goes ahead.
            listener.stop()
            other = httpx.post(f"{ws}/worlds/other/apply", json={"wait": True}, timeout=60)
            assert other.status_code == 200, other.text
            mine = httpx.post(f"{ws}/worlds/mine/apply", json={"wait": True}, timeout=60)
            assert mine.status_code == 503 and mine.json()["error"] == "promotion_guard_unavailable"
            # A host beyond loopback that is not allowed is never registered.
            body = {"dag": json.loads(chain_dag(2, salt="far")), "world_id": "other",
                    "admin_url": "http://10.9.9.9:8001"}  # fmt: skip
            assert httpx.post(f"{gw}/strategies", json=body, timeout=30).status_code == 200
            devstack.wait_for(
                lambda: "promotion guard refused source http://10.9.9.9:8001"
                in (stack.workdir / "gateway.log").read_text(),
                timeout=30, what="the Gateway to log the refused registration",
            )  # fmt: skip
            urls = [s["url"] for s in httpx.get(f"{ws}/promotion-guard/sources").json()["sources"]]
            assert "http://10.9.9.9:8001" not in urls
    finally:
        if listener._thread.is_alive():
            listener.stop()


LIMITED = {
    "http": {"header_timeout_seconds": 1, "body_timeout_seconds": 1,
             "max_connections_per_client": 20},
    "gateway": {"max_in_flight_submissions": 8},
}  # fmt: skip


def _slow_client(port: int, source: str, partial: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    sock.sendall(partial)
    return sock


def _answer_of(sock: socket.socket) -> bytes:
    answer = b""
    try:
        while chunk := sock.recv(4096):
            answer += chunk
    except OSError:
        pass
    sock.close()
    return answer


def test_slow_clients_are_cut_off_and_capped_per_address(tmp_path: Path) -> None:
    """The report: 2 x 9,990 connections trickling headers held a Gateway unreachable for
    150 s, while Prometheus still saw it up over a kept-alive connection.  Now headers
    have a deadline (408), one address holds at most its share of connections (429 at
    once), other clients are served meanwhile, and every scrape is a new connection."""
    with LocalStack(tmp_path / "slow", LIMITED) as stack:
        gw = stack.url("gateway")
        port = int(gw.rsplit(":", 1)[1])
        partial = b"POST /strategies HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        held = [_slow_client(port, "127.0.0.2", partial) for _ in range(20)]
        extra = [_slow_client(port, "127.0.0.2", partial) for _ in range(10)]
        for sock in extra:
            assert _answer_of(sock).startswith(b"HTTP/1.1 429"), "over the per-address cap"
        assert httpx.get(f"{gw}/health", timeout=5).status_code == 200, "others are served"
        for sock in held:
            answer = _answer_of(sock)
            assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer, answer
        scrape_answer = httpx.get(f"{gw}/metrics", timeout=5)
        assert scrape_answer.headers["connection"] == "close"
        # A body that stops half-way is cut at its deadline: one line, no traceback, 499.
        sock = _slow_client(
            port, "127.0.0.3",
            b"POST /strategies HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"dag\":",
        )  # fmt: skip
        assert _answer_of(sock) == b""
        devstack.wait_for(
            lambda: scrape(f"{gw}/metrics").get_value("gateway_submissions_total", code="499") == 1,
            timeout=10, what="the cut-off body to be counted as 499",
        )  # fmt: skip
        ws_port = int(stack.url("worldservice").rsplit(":", 1)[1])
        for path in (b"/worlds", b"/controlbus/events"):
            sock = _slow_client(
                ws_port, "127.0.0.3",
                b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{\"world",
            )  # fmt: skip
            sock.close()  # the client goes away mid-body
        assert httpx.get(f"{stack.url('worldservice')}/health", timeout=5).status_code == 200
        for name in ("gateway", "worldservice"):
            assert "Traceback" not in (stack.workdir / f"{name}.log").read_text(), name


def test_a_burst_over_capacity_is_answered_429_and_the_sdk_waits_it_out(tmp_path: Path) -> None:
    """The report: 2,000 submissions/s against ~320/s of capacity were all accepted (p95
    16 s, 8,764 in flight, RSS 98 -> 335 MB).  With 8 in flight allowed and 200 ms
    diffs, a burst of 48 gets 429 with Retry-After for what is over the bound, never
    more than 8 in flight; SDK submissions in the same situation retry and complete."""
    from qmtl.runtime.sdk import ProcessingNode, Strategy, StreamInput
    from qmtl.runtime.sdk.gateway import submit as sdk_submit

    # 48 clients connect at once from one address: the connection cap is not under test.
    admission = {**LIMITED, "http": {**LIMITED["http"], "max_connections_per_client": 100}}
    with LocalStack(tmp_path / "burst", admission) as stack:
        gw, dm = stack.url("gateway"), stack.url("dagmanager")
        httpx.post(f"{dm}/admin/faults", json={"diff_delay_ms": 200}, timeout=10).raise_for_status()
        answers: list[httpx.Response] = []

        def one() -> None:
            body = {"dag": json.loads(chain_dag(2, salt=uuid.uuid4().hex))}
            with httpx.Client(timeout=60) as client:
                answers.append(client.post(f"{gw}/strategies", json=body))

        threads = [threading.Thread(target=one) for _ in range(48)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        codes = sorted({a.status_code for a in answers})
        assert codes == [200, 429], codes
        for refused in (a for a in answers if a.status_code == 429):
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"] == "overloaded" and refused.json()["retryable"]
        m = scrape(f"{gw}/metrics")
        assert m.get_value("gateway_submissions_total", code="429") == sum(
            a.status_code == 429 for a in answers
        )
        assert m.get_value("gateway_submissions_in_flight") == 0

        results: list[Any] = []

        def sdk(index: int) -> None:
            class Burst(Strategy):
                def setup(self) -> None:
                    price = StreamInput(interval=60, period=5, tags=[f"burst-{index}"])
                    same = ProcessingNode(input=price, compute_fn=lambda v: v, name="same")
                    self.add_nodes(price, same)

            results.append(sdk_submit(Burst, gw, strategy_id=f"burst-{index}", attempts=12))

        threads = [threading.Thread(target=sdk, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(results) == 24 and all(r.queue_map for r in results)


def test_a_hung_dependency_is_named_by_status_and_metrics(tmp_path: Path) -> None:
    """The report: SIGSTOP of PostgreSQL, tansu, the DAG Manager or the WorldService
    named none of them; /status of all three services hung while PostgreSQL hung.  Now
    each service checks its backends on a schedule with a deadline: /status answers at
    once and says which one does not answer, and qmtl_dependency_up goes to 0 for it."""
    own_pg = devstack.start_postgres()
    broker = devstack.start_kafka(tmp_path / "kafka")
    overrides = {
        "telemetry": {"dependency_probe_seconds": 0.5, "dependency_deadline_seconds": 1},
        "gateway": {"dagmanager_timeout_seconds": 3},
    }
    try:
        with LocalStack(
            tmp_path / "hang", overrides, kafka=broker.bootstrap, postgres_dsn=own_pg.dsn,
            kafka_controlbus=False,
        ) as stack:  # fmt: skip
            urls = {s: stack.url(s) for s in ("dagmanager", "gateway", "worldservice")}

            def dependency(service: str, name: str) -> dict[str, Any]:
                # /status answers within its own deadline whatever hangs behind it.
                status = httpx.get(f"{urls[service]}/status", timeout=5).json()
                return dict(status["dependencies"][name])

            def up(service: str, name: str) -> float | None:
                series = scrape(f"{urls[service]}/metrics").series("qmtl_dependency_up")
                found = [v for labels, v in series.items() if ("dependency", name) in labels]
                return found[0] if found else None

            def named_while_frozen(component: Any, pairs: list[tuple[str, str]]) -> None:
                for service, name in pairs:
                    devstack.wait_for(lambda s=service, n=name: up(s, n) == 1, timeout=30,
                                      what=f"{service}'s {name} up first")  # fmt: skip
                component.freeze()
                try:
                    for service, name in pairs:
                        devstack.wait_for(
                            lambda s=service, n=name: dependency(s, n)["ok"] is False
                            and up(s, n) == 0,
                            timeout=30, what=f"{service} to name {name} as not answering",
                        )  # fmt: skip
                        assert "answer" in dependency(service, name)["error"]
                finally:
                    component.thaw()
                for service, name in pairs:
                    devstack.wait_for(lambda s=service, n=name: up(s, n) == 1, timeout=60,
                                      what=f"{service}'s {name} back")  # fmt: skip

            named_while_frozen(own_pg, [("dagmanager", "graph_store"),
                                        ("gateway", "submission_log"),
                                        ("worldservice", "world_store")])  # fmt: skip
            named_while_frozen(broker, [("dagmanager", "queues")])
            named_while_frozen(stack.services["dagmanager"].process, [("gateway", "dagmanager")])
            named_while_frozen(stack.services["worldservice"].process,
                               [("gateway", "worldservice")])  # fmt: skip
            assert dependency("dagmanager", "graph_store")["kind"] == "postgresql"
            assert dependency("dagmanager", "queues")["kind"] == "kafka"
    finally:
        broker.stop()
        own_pg.stop()


def test_a_full_disk_is_always_answered_in_json_and_nothing_is_lost(tmp_path: Path) -> None:
    """The report: on a full disk a submission already in the log could get a plain-text
    500 (its traceback could not be logged).  The stack runs on a small tmpfs filled to
    the last byte: every answer is JSON with a code (503 not persisted, 202 queued, or
    completed), and once space is back every logged submission completes."""
    import os
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], check=True)
    try:
        with LocalStack(disk / "stack", {"gateway": {"retry_interval_seconds": 0.5}}) as stack:
            gw = stack.url("gateway")
            assert submit_fresh(gw).status_code == 200
            ballast = disk / "ballast"
            with open(ballast, "wb", buffering=0) as out:
                try:
                    while True:
                        out.write(b"\0" * (1 << 16))
                except OSError:
                    pass
            # Give space back 8 KiB at a time: some inserts fit, later writes do not --
            # the moment a logged submission's result could not be stored.
            answers = []
            size = ballast.stat().st_size
            for _ in range(40):
                size = max(0, size - 8192)
                os.truncate(ballast, size)
                answers += [submit_fresh(gw) for _ in range(3)]
            for answer in answers:
                assert answer.headers["content-type"].startswith("application/json"), answer.text
                body = answer.json()
                assert answer.status_code in (200, 202, 503), (answer.status_code, body)
                if answer.status_code == 503:
                    assert body["error"] == "submission_not_persisted" and body["retryable"]
            assert {a.status_code for a in answers} >= {202, 503}, "both moments were reached"
            ballast.unlink()
            logged = [a.json()["submission_id"] for a in answers if a.status_code != 503]
            for sid in logged:
                devstack.wait_for(
                    lambda s=sid: httpx.get(f"{gw}/submissions/{s}", timeout=5).json()["status"]
                    == "completed",
                    timeout=90, what=f"submission {sid} to complete once space is back",
                )  # fmt: skip
            assert submit_fresh(gw).status_code == 200
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def submit_fresh(gateway: str) -> httpx.Response:
    body = {"dag": json.loads(chain_dag(3, salt=uuid.uuid4().hex)), "world_id": "w"}
    return httpx.post(f"{gateway}/strategies", json=body, timeout=60)


def test_status_never_shows_a_database_password(
    tmp_path: Path, postgres: devstack.Postgres
) -> None:
    """A DSN with ``?password=`` appeared verbatim in the open /status of every service."""
    dsns = {name: postgres.new_database() + "?password=hunter2&connect_timeout=5"
            for name in ("graph", "log", "world")}  # fmt: skip
    overrides = {
        "dagmanager": {"graph_store": dsns["graph"]},
        "gateway": {"submission_log": dsns["log"]},
        "worldservice": {"store": dsns["world"]},
    }
    with LocalStack(tmp_path / "dsn", overrides) as stack:
        for service in ("dagmanager", "gateway", "worldservice"):
            status = httpx.get(f"{stack.url(service)}/status", timeout=10).text
            assert "hunter2" not in status and "postgresql://127.0.0.1:" in status, status
            assert "hunter2" not in (stack.workdir / f"{service}.log").read_text()


def test_the_demo_works_with_a_worldservice_token(tmp_path: Path) -> None:
    """With worldservice.admin_token set the demo's world, allocation and apply calls got
    401; it now sends the token of its qmtl.yml."""
    from qmtl.devstack.stack import start_demo

    overrides = {"worldservice": {"admin_token": "ws-tok"}}
    with LocalStack(tmp_path / "demo", overrides) as stack:
        start_demo(stack, rate=5, canary_seconds=1, allocation_seconds=1)
        ws = stack.url("worldservice")
        devstack.wait_for(
            lambda: httpx.get(f"{ws}/allocations", timeout=5).json()["allocations"],
            timeout=60, what="the demo's allocations",
        )  # fmt: skip
        assert " 401 " not in (stack.workdir / "demo.log").read_text()


def test_stopping_the_worldservice_answers_its_long_polls_at_once(stack: LocalStack) -> None:
    """A Gateway's ControlBus poll waits up to 30 s; the WorldService used to wait it
    out on SIGTERM (and its own stop escalates to SIGKILL after 10 s).  Now the poll is
    answered, empty, and the process exits by itself with status 0."""
    ws = stack.url("worldservice")
    head = httpx.get(f"{ws}/controlbus/events", timeout=10).json()["head"]
    port = int(ws.rsplit(":", 1)[1])
    poll = socket.create_connection(("127.0.0.1", port), timeout=60)
    poll.sendall(
        f"GET /controlbus/events?after={head}&wait=30 HTTP/1.1\r\nhost: ws\r\n\r\n".encode()
    )
    # Answered after the poll was sent: the server has read the poll by then.
    assert httpx.get(f"{ws}/health", timeout=10).status_code == 200
    service = stack.services.pop("worldservice")
    assert service.process.stop(timeout=10) == 0
    answer = _answer_of(poll)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["events"] == []
