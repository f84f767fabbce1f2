"""Momentum alerts on the real stack (SPEC 4): a labelled stream of two
hours of event time (steadily popular videos, quiet ones, injected bursts)
fires an alert for every burst and none for the rest after the warm-up; a
replay of the same log by another group gives the same alerts, byte for
byte; the video hash carries level, baseline and momentum."""
import json
import time

from conftest import wait_for

MIN = 60000
SPAN_H = 2
# (video index, start s of event time, duration s, shares): tail videos
# that normally see a share now and then.
BURSTS = [(1500, 75 * 60, 240, 400), (1700, 90 * 60, 300, 60), (1900, 105 * 60, 120, 900)]


def alerts(r, prefix):
    return [json.loads(f["alert"]) for _, f in r.xrange(prefix + "alerts")]


def run(scenario, stack, group_suffix):
    group, prefix = scenario.group + group_suffix, scenario.prefix[:-1] + group_suffix + ":"
    d = scenario.start_daemon("--set", "kafka.group=" + group, "--set", "redis.prefix=" + prefix)
    total = scenario.expected()["messages"]
    r = stack.redis()
    wait_for(lambda: sum(int(v) for v in r.hgetall(
        prefix + "offsets:{%s}" % group).values()) == total, 120, "every event applied")
    time.sleep(1)  # the flush that steps the detector to the present
    d.terminate()
    assert d.wait(timeout=15) == 0
    return prefix


def test_bursts_alert_and_steady_videos_do_not(scenario, stack):
    start = int(time.time() * 1000) - SPAN_H * 3600 * 1000
    scenario.loadgen("--count", 600000, "--videos", 2000, "--creators", 200,
                     "--span-hours", SPAN_H, "--seed", 17, "--noisy", "5:4",
                     *["--burst=%d:%d:%d:%d" % b for b in BURSTS])
    exp = scenario.expected()
    # The generator's labels: the bursts, and noisy videos (4 shares a minute
    # times 0.5, 1 or 1.5 each minute) that must never alert after warm-up.
    assert [b["video"] for b in exp["bursts"]] == ["v%d" % b[0] for b in BURSTS]
    assert all(exp["videos"][v]["shares"] > 300 for v in exp["noisy"])
    prefix = run(scenario, stack, "a")
    r = stack.redis()
    got = alerts(r, prefix)
    assert got, "no alert at all"
    warm = start + 45 * MIN  # the first baselines are still being learnt
    momentum = [a for a in got if a["kind"] == "momentum" and a["at_ms"] >= warm]
    fired = {a["video_id"] for a in momentum}
    assert not fired & set(exp["noisy"])
    assert fired == {b["video"] for b in exp["bursts"]}, [(a["video_id"], a["level"], (a["at_ms"] - start) // 1000, a["velocity"], a["baseline"], a["z"], a["shares_5m"]) for a in momentum]
    for v, s, dur, _ in BURSTS:
        mine = [a for a in momentum if a["video_id"] == "v%d" % v]
        first = min(a["at_ms"] for a in mine)
        assert start + s * 1000 <= first <= start + (s + dur) * 1000 + MIN
        # once per level at most, escalating only
        levels = [a["level"] for a in sorted(mine, key=lambda a: a["at_ms"])]
        order = ["rising", "surging", "viral"]
        assert len(levels) == len(set(levels))
        assert levels == sorted(levels, key=order.index)
        a = mine[-1]
        assert a["velocity"] >= 5 and a["ratio"] >= 3 and a["z"] >= 3
        assert a["creator_id"] and a["alert_id"].startswith("al_")
        assert "shares/min over 5 min" in a["reason"]
    # each burst that ended 10 minutes before the end of the log resolved
    resolved = {a["video_id"] for a in got if a["kind"] == "resolved" and a["at_ms"] >= warm}
    # (quiet once its 5-minute window has emptied, then 10 quiet minutes)
    assert {"v%d" % v for v, s, d, _ in BURSTS if s + d + 16 * 60 < SPAN_H * 3600} <= resolved
    # the hash shows the detector's view
    h = r.hgetall(prefix + "v:{v1500}")
    assert h["level"] == "quiet" and float(h["baseline"]) > 0.5 and "momentum" in h

    # A replay of the same log by another group: the same alerts. (After the
    # log ends the clock follows the wall, so compare up to its end.)
    prefix2 = run(scenario, stack, "b")
    end = start + SPAN_H * 3600 * 1000
    # (Partitions flush in their own order, so the stream's order may differ.)
    key = lambda a: (a["at_ms"], a["alert_id"])
    again = sorted((a for a in alerts(r, prefix2) if a["at_ms"] < end), key=key)
    first = sorted((a for a in got if a["at_ms"] < end), key=key)
    assert [a["alert_id"] for a in again] == [a["alert_id"] for a in first]
    assert again == first


# ---- sinks outside Redis: webhooks and the Kafka alerts topic ----

import base64
import hashlib
import hmac
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from conftest import free_port
from test_spine import read_topic


class Receiver:
    """A webhook receiver: records every request, answers `fail` 503s to
    each webhook-id before a 200."""

    def __init__(self, port, fail=0):
        self.requests, self.fail, self.seen = [], fail, {}
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                wid = self.headers["webhook-id"]
                n = outer.seen.get(wid, 0)
                outer.seen[wid] = n + 1
                code = 503 if n < outer.fail else 200
                outer.requests.append((dict(self.headers), body, code))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def verify(secret, headers, body):
    """The Standard Webhooks check, written from the specification."""
    key = base64.b64decode(secret.split("_", 1)[1])
    msg = ("%s.%s." % (headers["webhook-id"], headers["webhook-timestamp"])).encode() + body
    want = base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()
    return any(sig == "v1," + want for sig in headers["webhook-signature"].split(" "))


def burst_stream(scenario):
    # One hour of event time, one burst 40 minutes in; the warm-up alerts of
    # the first minutes are alerts too.
    scenario.loadgen("--count", 120000, "--videos", 500, "--creators", 50,
                     "--span-hours", 1, "--seed", 23, "--burst=400:2400:180:500")


def webhook_args(port, secrets):
    return ["--set", "webhook.ops.url=http://127.0.0.1:%d/hook" % port,
            "--set", "webhook.ops.secret=" + " ".join(secrets),
            "--set", "webhook.ops.timeout_ms=2000"]


def secret():
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def test_webhooks_signed_retried_and_the_kafka_topic(scenario, stack):
    burst_stream(scenario)
    port = free_port()
    rx = Receiver(port, fail=2)
    old, new = secret(), secret()
    alerts_topic = "alerts-" + scenario.group
    try:
        d = scenario.start_daemon("--set", "kafka.alerts_topic=" + alerts_topic,
                                  *webhook_args(port, [old, new]))
        total = scenario.expected()["messages"]
        wait_for(lambda: scenario.applied() == total, 60, "every event applied")
        r = stack.redis()
        fired = alerts(r, scenario.prefix)
        assert any(a["video_id"] == "v400" and a["kind"] == "momentum" for a in fired)
        ids = {a["alert_id"] for a in fired}
        wait_for(lambda: {w for w, n in rx.seen.items() if n >= 3} >= ids, 60,
                 "every alert delivered after two 503s")
        d.send_signal(signal.SIGTERM)
        assert d.wait(timeout=15) == 0
    finally:
        rx.close()
    by_id = {a["alert_id"]: a for a in fired}
    for headers, body, code in rx.requests:
        wid = headers["webhook-id"]
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body) == by_id[wid]
        assert verify(old, headers, body) and verify(new, headers, body)
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 120
    # the same webhook-id three times: 503, 503, 200, and never again
    for wid in ids:
        assert [c for h, _, c in rx.requests if h["webhook-id"] == wid] == [503, 503, 200]
    # the Kafka topic: each alert once, keyed by its video
    msgs = read_topic(stack.brokers, alerts_topic)
    assert sorted(json.loads(v)["alert_id"] for _, _, _, v, _ in msgs) == sorted(ids)
    assert all(k.decode() == json.loads(v)["video_id"] for _, _, k, v, _ in msgs)
    # nothing left pending in Redis
    for k in r.scan_iter(scenario.prefix + "win:*"):
        assert not [f for f in r.hkeys(k) if f.startswith("!")]


def test_sigkill_before_delivery_still_delivers_once(scenario, stack):
    burst_stream(scenario)
    port = free_port()  # nobody listens yet: every attempt is refused
    args = webhook_args(port, [secret()])
    static = ("--set", "kafka.rdkafka.group.instance.id=wk",
              "--set", "kafka.rdkafka.session.timeout.ms=6000")
    d = scenario.start_daemon(*static, *args)
    total = scenario.expected()["messages"]
    wait_for(lambda: scenario.applied() == total, 60, "every event applied")
    r = stack.redis()
    ids = {a["alert_id"] for a in alerts(r, scenario.prefix)}
    assert ids
    d.send_signal(signal.SIGKILL)
    d.wait()
    pending = [f for k in r.scan_iter(scenario.prefix + "win:*") for f in r.hkeys(k)
               if f.startswith("!w:ops|")]
    assert {f.split("|", 1)[1] for f in pending} == ids
    rx = Receiver(port)
    try:
        d = scenario.start_daemon(*static, *args)
        wait_for(lambda: set(rx.seen) >= ids, 60, "delivery after the restart")
        d.send_signal(signal.SIGTERM)
        assert d.wait(timeout=15) == 0
        assert all(rx.seen[w] == 1 for w in ids)
        # a restart on the same log and group delivers nothing new
        n = len(rx.requests)
        d = scenario.start_daemon(*static, *args)
        time.sleep(8)
        d.send_signal(signal.SIGTERM)
        assert d.wait(timeout=15) == 0
        assert len(rx.requests) == n
        assert alerts(r, scenario.prefix) and {a["alert_id"] for a in alerts(r, scenario.prefix)} == ids
    finally:
        rx.close()


def test_sighup_adds_a_webhook(scenario, stack, tmp_path):
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": stack.brokers})
    for f in admin.create_topics([NewTopic(scenario.topic, 4, 1)]).values():
        f.result()
    conf = tmp_path / "sharepulse.conf"
    conf.write_text("[log]\nlevel = info\n")
    d = scenario.start_daemon("-c", str(conf))
    wait_for(lambda: "assigned topic=" in scenario.log_text(), 30, "the assignment")
    port = free_port()
    rx = Receiver(port)
    try:
        conf.write_text("[webhook.ops]\nurl = http://127.0.0.1:%d/hook\nsecret = %s\n"
                        % (port, secret()))
        d.send_signal(signal.SIGHUP)
        wait_for(lambda: "webhooks=1" in scenario.log_text(), 10, "the reload")
        burst_stream(scenario)
        total = scenario.expected()["messages"]
        wait_for(lambda: scenario.applied() == total, 60, "every event applied")
        ids = {a["alert_id"] for a in alerts(stack.redis(), scenario.prefix)}
        wait_for(lambda: set(rx.seen) >= ids, 30, "the alerts at the new webhook")
        assert ids
    finally:
        d.send_signal(signal.SIGTERM)
        assert d.wait(timeout=15) == 0
        rx.close()


def test_hanging_resetting_and_slow_receiver(scenario, stack):
    """Per webhook-id: the first request hangs past timeout_ms, the second
    has its connection reset, the third is answered after 0.6 s. Every
    alert arrives, and the counts are exact."""
    import socket as so
    seen, lock = {}, threading.Lock()

    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                n = seen.get(self.headers["webhook-id"], 0)
                seen[self.headers["webhook-id"]] = n + 1
            try:
                if n == 0:
                    time.sleep(3)                      # past timeout_ms
                elif n == 1:
                    self.connection.shutdown(so.SHUT_RDWR)
                    self.close_connection = True
                    return
                else:
                    time.sleep(0.6)                    # slow, within timeout_ms
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass

        def log_message(self, *a):
            pass

    port = free_port()
    srv = ThreadingHTTPServer(("127.0.0.1", port), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        burst_stream(scenario)
        d = scenario.start_daemon("--set", "webhook.f.url=http://127.0.0.1:%d/" % port,
                                  "--set", "webhook.f.timeout_ms=1000")
        total = scenario.expected()["messages"]
        wait_for(lambda: scenario.applied() == total, 60, "every event applied")
        r = stack.redis()
        ids = {a["alert_id"] for a in alerts(r, scenario.prefix)}
        assert ids
        wait_for(lambda: all(seen.get(i, 0) >= 3 for i in ids), 90, "every alert answered")
        wait_for(lambda: not [f for k in r.scan_iter(scenario.prefix + "win:*")
                              for f in r.hkeys(k) if f.startswith("!")], 10, "nothing pending")
        d.send_signal(signal.SIGTERM)
        assert d.wait(timeout=15) == 0
        assert all(seen[i] == 3 for i in ids)
        from conftest import mismatches
        assert mismatches(r, scenario.prefix, scenario.expected()) == []
    finally:
        srv.shutdown()
        srv.server_close()


def test_alerts_after_sigkills_equal_an_undisturbed_run(scenario, stack):
    """The labelled log is consumed by a daemon killed four times on the
    way; its alerts (stream and webhook) equal an undisturbed run's."""
    import random
    rnd = random.Random(4)
    scenario.loadgen("--count", 600000, "--videos", 2000, "--creators", 200,
                     "--span-hours", SPAN_H, "--seed", 17,
                     *["--burst=%d:%d:%d:%d" % b for b in BURSTS])
    total = scenario.expected()["messages"]
    start = int(time.time() * 1000) - SPAN_H * 3600 * 1000
    ref = run(scenario, stack, "ref")
    r = stack.redis()
    port = free_port()
    rx = Receiver(port)
    static = ("--set", "kafka.rdkafka.group.instance.id=ak",
              "--set", "kafka.rdkafka.session.timeout.ms=6000",
              "--set", "pipeline.flush_interval_ms=50",
              "--set", "pipeline.max_pending_events=20000",
              "--set", "webhook.k.url=http://127.0.0.1:%d/" % port)
    try:
        for kill in range(4):
            d = scenario.start_daemon(*static)
            before = scenario.applied()
            wait_for(lambda: scenario.applied() > before + 50000, 60, "progress")
            time.sleep(rnd.uniform(0, 0.5))
            d.send_signal(signal.SIGKILL)
            d.wait()
        assert scenario.applied() < total, "the log was consumed before the last kill"
        d = scenario.start_daemon(*static)
        wait_for(lambda: scenario.applied() == total, 120, "catch-up")
        end = start + SPAN_H * 3600 * 1000 - MIN
        key = lambda a: (a["at_ms"], a["alert_id"])
        want = sorted((a for a in alerts(r, ref) if a["at_ms"] < end), key=key)
        wait_for(lambda: set(rx.seen) >= {a["alert_id"] for a in want}, 30, "the webhook")
        d.send_signal(signal.SIGTERM)
        assert d.wait(timeout=15) == 0
    finally:
        rx.close()
    got = sorted((a for a in alerts(r, scenario.prefix) if a["at_ms"] < end), key=key)
    assert [a["alert_id"] for a in got] == [a["alert_id"] for a in want]
    assert got == want
    # Once each, unless a kill fell between the receiver's 200 and the
    # delete of the pending field (at least once, a window of a millisecond).
    assert all(1 <= rx.seen[a["alert_id"]] <= 2 for a in want)
