"""The dashboard API on the real stack (SPEC 7, docs/api.md): every endpoint
for every account type, the denials (401, 404 for another creator's video),
exact values read back from what the daemon wrote, no share detail in any
answer to a personal token, the event stream filtered per token, the
stream cap, and the tokens file reloaded on SIGHUP and judged by
--check-config."""
import hashlib
import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import free_port, wait_for
from test_windows import produce

TOKENS = {  # token -> (account, creator)
    "tok-admin": ("admin", "*"),
    "tok-c1": ("creator", "c1"),
    "tok-b2": ("business", "c2"),
    "tok-p1": ("personal", "c1"),
}
# Words that name a share type, a platform or a sharer in the data below:
# none may reach a personal token.
SHARE_DETAIL_WORDS = ["duet", "stitch", "dm", "whatsapp", "telegram", "pub-user", "sharers",
                      "shares:", "shares_by_type"]


def write_tokens(path, tokens):
    with open(path, "w") as f:
        f.write("# test tokens\n")
        for tok, (acct, creator) in tokens.items():
            f.write("%s %s %s\n" % (hashlib.sha256(tok.encode()).hexdigest(), acct, creator))


class Api:
    def __init__(self, port):
        self.port = port

    def get(self, path, token=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = "Bearer " + token
        c.request("GET", path, headers=h)
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        return r.status, body, dict(r.getheaders())

    def json(self, path, token, status=200):
        st, body, _ = self.get(path, token)
        assert st == status, (path, st, body)
        return json.loads(body)


class Stream:
    """An /api/v1/events client: parsed events arrive on a queue."""

    def __init__(self, port, token):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.conn.request("GET", "/api/v1/events", headers={"Authorization": "Bearer " + token})
        self.sock = self.conn.sock  # the response may take it over
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.events = queue.Queue()
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        ev, data = None, []
        try:
            for raw in self.resp:
                line = raw.decode().rstrip("\r\n")
                if line == "":
                    if data:
                        self.events.put((ev or "message", "\n".join(data)))
                    ev, data = None, []
                elif line.startswith("event:"):
                    ev = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
        except Exception:
            pass
        self.events.put(("closed", ""))

    def until(self, pred, timeout, what):
        """Events received until pred(kind, data) is true."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                kind, data = self.events.get(timeout=deadline - time.monotonic())
            except queue.Empty:
                break
            seen.append((kind, data))
            if pred(kind, data):
                return seen
        raise AssertionError("timed out waiting for %s; saw %s" % (what, seen[-10:]))

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # the reader thread holds it too
        except OSError:
            pass  # the server ended the stream first
        self.conn.close()


@pytest.fixture
def served(scenario, stack):
    """A daemon with the four tokens, on known events of two creators."""
    now = int(time.time() * 1000)
    ev = []
    for i in range(40):
        ev.append({"type": "view", "video_id": "va", "creator_id": "c1", "user_id": "u%d" % i,
                   "ts": now - 20000 - i * 100, "region": "US", "age_bucket": "18-24"})
    ev += [{"type": "like", "video_id": "va", "creator_id": "c1", "ts": now - 15000}] * 6
    ev += [{"type": "comment", "video_id": "va", "creator_id": "c1", "ts": now - 15000}] * 2
    ev += [{"type": "share", "video_id": "va", "creator_id": "c1", "share_type": "duet",
            "user_id": "pub-user-%d" % i, "ts": now - 12000} for i in range(3)]
    ev += [{"type": "share", "video_id": "va", "creator_id": "c1", "share_type": "dm",
            "user_id": "dm-secret-1", "ts": now - 12000}]
    ev += [{"type": "share", "video_id": "va", "creator_id": "c1", "share_type": "external",
            "platform": "whatsapp", "ts": now - 12000}] * 2
    ev += [{"type": "view", "video_id": "vb", "creator_id": "c2", "ts": now - 10000}] * 9
    ev += [{"type": "share", "video_id": "vb", "creator_id": "c2", "share_type": "stitch",
            "user_id": "pub-user-b", "ts": now - 10000}]
    ev += [{"type": "follow", "creator_id": "c1", "user_id": "f1", "ts": now - 5000}] * 4
    produce(stack, scenario.topic, ev)

    tokens = os.path.join(stack.tmp, scenario.group + "-tokens")
    write_tokens(tokens, TOKENS)
    port = free_port()
    d = scenario.start_daemon("--set", "http.listen=127.0.0.1:%d" % port,
                              "--set", "http.tokens_file=" + tokens,
                              "--set", "http.max_sse_clients=3")
    wait_for(lambda: scenario.applied() == len(ev), 60, "every event applied")
    r = stack.redis()
    wait_for(lambda: r.hget(scenario.prefix + "v:{va}", "velocity") == "1.2", 10,
             "the windows of va")
    api = Api(port)
    wait_for(lambda: api.get("/healthz")[0] == 200, 30, "the daemon to be healthy")
    yield api, d, tokens, len(ev)


def test_no_or_wrong_token_is_401_everywhere(served, scenario):
    api = served[0]
    for path in ["/api/v1/videos/va", "/api/v1/creators/c1", "/api/v1/top",
                 "/api/v1/alerts", "/api/v1/events", "/api/v1/nope"]:
        for h in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer "},
                  {"Authorization": "Basic dG9rLWFkbWluOg=="},
                  {"Authorization": "Bearer tok-admin2"}, {"Authorization": "tok-admin"}]:
            st, body, headers = api.get(path, headers=h)
            assert st == 401, (path, h, st, body)
            assert json.loads(body) == {"error": "unauthorized"}
            assert headers["WWW-Authenticate"].startswith("Bearer")
    # /healthz, /metrics and the page need no token.
    assert api.get("/healthz")[0] == 200
    assert api.get("/metrics")[0] == 200
    st, body, headers = api.get("/")
    assert st == 200 and headers["Content-Type"].startswith("text/html")
    assert "<html" in body.lower() and 'id="token"' in body
    # Tokens are never logged, not even wrong ones.
    log = scenario.log_text()
    for tok in list(TOKENS) + ["wrong", "tok-admin2"]:
        assert tok not in log


def test_video_answers_per_account(served, stack, scenario):
    api = served[0]
    r = stack.redis()
    h = r.hgetall(scenario.prefix + "v:{va}")
    for tok in ["tok-admin", "tok-c1"]:
        v = api.json("/api/v1/videos/va", tok)
        assert v["video_id"] == "va" and v["creator_id"] == "c1"
        assert (v["views"], v["likes"], v["comments"], v["shares"]) == (40, 6, 2, 6)
        assert (v["views_1m"], v["shares_1m"], v["shares_5m"]) == (40, 6, 6)
        assert v["shares:duet"] == 3 and v["shares:dm"] == 1 and v["shares:external"] == 2
        assert v["shares:ext:whatsapp"] == 2
        assert v["er_1h"] == float(h["er_1h"]) == 0.35 and v["velocity"] == 1.2
        assert v["level"] == "quiet" and isinstance(v["level"], str)
        assert v["reach"] == 40
        assert v["demo"] == {"region:US": 40, "age:18-24": 40}
        assert sorted(s["user_id"] for s in v["sharers"]) == ["pub-user-0", "pub-user-1",
                                                               "pub-user-2"]
        # Every field of the hash is in the answer, typed.
        for k, val in h.items():
            assert str(v[k]) == val or float(v[k]) == float(val), k
    # Another creator's video, and one that does not exist: the same 404.
    for tok, vid in [("tok-c1", "vb"), ("tok-p1", "vb"), ("tok-b2", "va"),
                     ("tok-c1", "nope"), ("tok-c1", "{va}"), ("tok-c1", "a" * 200)]:
        st, body, _ = api.get("/api/v1/videos/" + vid, tok)
        assert st == 404, (tok, vid, st, body)
    assert api.get("/api/v1/videos/vb", "tok-c1")[1] == api.get("/api/v1/videos/nope",
                                                                "tok-c1")[1]
    vb = api.json("/api/v1/videos/vb", "tok-b2")
    assert vb["shares:stitch"] == 1 and vb["sharers"][0]["user_id"] == "pub-user-b"
    assert api.json("/api/v1/videos/vb", "tok-admin")["views"] == 9
    # The private sharer is nowhere, for anyone.
    for tok in TOKENS:
        assert "dm-secret-1" not in api.get("/api/v1/videos/va", tok)[1]


def test_personal_token_sees_counters_without_share_details(served):
    api = served[0]
    st, body, _ = api.get("/api/v1/videos/va", "tok-p1")
    assert st == 200
    v = json.loads(body)
    assert (v["views"], v["shares"], v["shares_5m"], v["velocity"]) == (40, 6, 6, 1.2)
    assert v["er_1h"] == 0.35 and v["share_rate_1h"] == 0.15
    answers = [body, api.get("/api/v1/top", "tok-p1")[1],
               api.get("/api/v1/top?by=shares_1h", "tok-p1")[1],
               api.get("/api/v1/creators/c1", "tok-p1")[1],
               api.get("/api/v1/alerts", "tok-p1")[1]]
    for a in answers:
        for word in SHARE_DETAIL_WORDS:
            assert word not in a, (word, a[:300])
    top = json.loads(answers[1])["videos"]
    assert [t["video_id"] for t in top] == ["va"] and top[0]["shares"] == 6


def test_creator_answers(served):
    api = served[0]
    c = api.json("/api/v1/creators/c1", "tok-c1")
    assert c == {"creator_id": "c1", "views": 40, "likes": 6, "comments": 2, "shares": 6,
                 "follows": 4, "follows_24h": 4, "videos": 1}
    assert api.json("/api/v1/creators/c1", "tok-p1") == c
    assert api.json("/api/v1/creators/c2", "tok-admin")["views"] == 9
    assert api.json("/api/v1/creators/c2", "tok-b2")["shares"] == 1
    for tok, cid in [("tok-c1", "c2"), ("tok-b2", "c1"), ("tok-admin", "c404")]:
        assert api.get("/api/v1/creators/" + cid, tok)[0] == 404


def test_top_is_filtered_per_token(served):
    api = served[0]
    top = api.json("/api/v1/top", "tok-admin")
    assert top["by"] == "velocity"
    assert [(t["video_id"], t["score"]) for t in top["videos"]] == [("va", 1.2), ("vb", 0.2)]
    row = top["videos"][0]
    assert row["creator_id"] == "c1" and row["shares_5m"] == 6 and row["level"] == "quiet"
    assert row["shares_by_type"] == {"duet": 3, "dm": 1, "external": 2}
    assert len(row["spark"]) == 60
    assert [t["video_id"] for t in api.json("/api/v1/top?limit=1", "tok-admin")["videos"]] \
        == ["va"]
    assert [t["video_id"] for t in api.json("/api/v1/top", "tok-c1")["videos"]] == ["va"]
    by = api.json("/api/v1/top?by=shares_1h&limit=5", "tok-b2")
    assert by["by"] == "shares_1h" and [(t["video_id"], t["score"]) for t in by["videos"]] \
        == [("vb", 1)]
    assert by["videos"][0]["shares_by_type"] == {"stitch": 1}
    for q in ["by=likes", "limit=0", "limit=101", "limit=ten", "limit=", "by="]:
        st, body, _ = api.get("/api/v1/top?" + q, "tok-admin")
        assert st == 400 and "error" in json.loads(body), (q, st, body)


def test_alerts_and_event_stream_per_token(served, stack, scenario):
    api = served[0]
    c1, b2, admin = Stream(api.port, "tok-c1"), Stream(api.port, "tok-b2"), \
        Stream(api.port, "tok-admin")
    assert (c1.status, b2.status, admin.status) == (200, 200, 200)
    # The cap is 3 streams: a fourth is refused, and served once one left.
    st, body, _ = api.get("/api/v1/events", "tok-p1")
    assert st == 503 and "too many" in body

    # New events for both creators: each stream hears of its own videos only.
    now = int(time.time() * 1000)
    produce(stack, scenario.topic, [
        {"type": "view", "video_id": "va", "creator_id": "c1", "ts": now},
        {"type": "view", "video_id": "vb", "creator_id": "c2", "ts": now}], create=False)

    def update_with(vid):
        return lambda k, d: k == "update" and vid in json.loads(d)["videos"]
    seen = c1.until(update_with("va"), 20, "an update of va on c1's stream")
    seen += admin.until(update_with("vb"), 20, "an update of vb on the admin's stream")
    seen_b = b2.until(update_with("vb"), 20, "an update of vb on c2's stream")
    for kind, data in seen_b:
        assert kind != "update" or "va" not in json.loads(data)["videos"]

    # A burst of va's shares: 60 in 2 seconds against a floor baseline.
    now = int(time.time() * 1000)
    produce(stack, scenario.topic, [
        {"type": "share", "video_id": "va", "creator_id": "c1", "share_type": "link",
         "ts": now - 2000 + i * 30} for i in range(60)], create=False)
    got = c1.until(lambda k, d: k == "alert", 30, "an alert on c1's stream")
    alert = json.loads(got[-1][1])
    assert alert["video_id"] == "va" and alert["kind"] == "momentum"
    admin.until(lambda k, d: k == "alert" and json.loads(d)["alert_id"] == alert["alert_id"],
                10, "the same alert on the admin's stream")
    # The alert feed: since, limit, and the creator's own alerts only.
    a = api.json("/api/v1/alerts?since=0", "tok-c1")
    assert a["more"] is False and [x["alert_id"] for x in a["alerts"]] == [alert["alert_id"]]
    assert a["alerts"][0] == alert
    assert api.json("/api/v1/alerts", "tok-admin")["alerts"] == [alert]
    assert api.json("/api/v1/alerts?since=%d" % alert["at_ms"], "tok-p1")["alerts"] == [alert]
    assert api.json("/api/v1/alerts?since=%d" % (alert["at_ms"] + 1), "tok-c1")["alerts"] == []
    assert api.json("/api/v1/alerts", "tok-b2")["alerts"] == []
    for q in ["since=-1", "since=x", "limit=0", "limit=1001"]:
        assert api.get("/api/v1/alerts?" + q, "tok-admin")[0] == 400, q
    # c2's stream never heard of it (the alert went to every stream at once).
    while not b2.events.empty():
        kind, data = b2.events.get()
        assert kind != "alert", data
    for s in (c1, b2, admin):
        s.close()

    # With the streams gone, a new one is served.
    def slot():
        s = Stream(api.port, "tok-p1")
        s.close()
        return s.status == 200
    wait_for(slot, 10, "a stream slot")


def test_tokens_reload_on_sighup_and_check_config(served, stack, scenario):
    api, d, tokens, _ = served
    assert api.get("/api/v1/videos/va", "tok-c1")[0] == 200
    # A broken file is refused: the tokens in use stay.
    with open(tokens, "a") as f:
        f.write("%s boss c9\n" % hashlib.sha256(b"x").hexdigest())
    d.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in scenario.log_text(), 10, "the refused reload")
    assert api.get("/api/v1/videos/va", "tok-c1")[0] == 200
    # --check-config names the file, the line and the allowed values.
    r = subprocess.run(scenario.daemon_cmd("--check-config",
                                           "--set", "http.tokens_file=" + tokens),
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert '%s:6: account type "boss" (allowed: admin, creator, business, personal)' % tokens \
        in r.stderr, r.stderr
    # A good file without tok-c1: its next request is 401, the others go on.
    write_tokens(tokens, {k: v for k, v in TOKENS.items() if k != "tok-c1"})
    d.send_signal(signal.SIGHUP)
    wait_for(lambda: api.get("/api/v1/videos/va", "tok-c1")[0] == 401, 10,
             "tok-c1 to be gone")
    assert api.get("/api/v1/videos/va", "tok-p1")[0] == 200
    d.terminate()
    assert d.wait(timeout=15) == 0


def test_a_stream_that_does_not_read_is_dropped_and_counting_goes_on(scenario, stack, tmp_path):
    """A client opens the event stream and never reads while 600 000 events
    over 100 000 videos stream in: once it is sse_max_behind_kb (here 256)
    behind, beyond what the sockets hold, the daemon drops it, counts it,
    and every event is still applied; a reading client beside it is served
    throughout."""
    tokens = tmp_path / "tokens"
    write_tokens(tokens, TOKENS)
    port = free_port()
    gen, d = scenario.live("--count", 600000, "--rate", 40000, "--videos", 100000,
                           "--creators", 10000, "--seed", 61,
                           daemon_args=("--set", "http.listen=127.0.0.1:%d" % port,
                                        "--set", "http.tokens_file=%s" % tokens,
                                        "--set", "http.sse_max_behind_kb=256"),
                           progress=1000)
    api = Api(port)
    slow = socket.create_connection(("127.0.0.1", port))
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\n"
                 b"Authorization: Bearer tok-admin\r\n\r\n")
    reader = Stream(port, "tok-admin")

    def dropped():
        text = api.get("/metrics")[1]
        return "sharepulse_sse_dropped_total 1" in text
    wait_for(dropped, 60, "the stream that does not read to be dropped")
    assert "fell 262144 bytes behind: disconnected" in scenario.log_text()
    # The reader was never dropped and still gets updates.
    reader.until(lambda k, data: k == "update", 10, "updates on the reading stream")
    wait_for(lambda: gen.poll() is not None, 120, "the stream")
    wait_for(lambda: scenario.applied() == scenario.expected()["messages"], 120,
             "every event applied")
    # The slow client finds its stream ended once it reads what was sent.
    slow.settimeout(30)
    got = b""
    while True:
        chunk = slow.recv(1 << 20)
        if not chunk:
            break
        got += chunk
    assert got.startswith(b"HTTP/1.1 200") and b"event: update" in got
    reader.close()
    d.terminate()
    assert d.wait(timeout=15) == 0


def test_redis_away_answers_503_and_the_api_comes_back(served, stack, scenario):
    """Redis stopped: the API answers 503 with a reason and open streams end
    (so no client silently misses events); Redis back: the same requests
    answer 200 again and a new stream is served."""
    api = served[0]
    s = Stream(api.port, "tok-admin")
    assert s.status == 200
    stack.run("stop-redis")
    try:
        def unavailable():
            st, body, _ = api.get("/api/v1/videos/va", "tok-c1")
            return st == 503 and json.loads(body) == {"error": "redis unavailable"}
        wait_for(unavailable, 20, "503 while Redis is away")
        s.until(lambda k, data: k == "closed", 20, "the open stream to end")
        assert api.get("/api/v1/events", "tok-admin")[0] == 503
        assert api.get("/healthz")[0] == 503
    finally:
        stack.run("start-redis")
    wait_for(lambda: api.get("/api/v1/videos/va", "tok-c1")[0] == 200, 30,
             "the API after Redis came back")
    assert api.json("/api/v1/videos/va", "tok-c1")["views"] == 40
    wait_for(lambda: Stream(api.port, "tok-admin").status == 200, 30, "a new stream")
