"""Fault suite (CTest label "faults"): rebalances between several daemons,
a broker restart, Redis losing its data, hostile input, and an outage
longer than the reconnect backoff. After each, totals equal the ground
truth exactly."""
import json
import os
import random
import time
import signal

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import assert_alerts_of_undisturbed_run, mismatches, wait_for, window_mismatches


def test_instances_joining_and_leaving_split_partitions_exactly_once(scenario, stack):
    scenario.partitions = 6
    gen = scenario.loadgen("--count", 300000, "--rate", 25000, "--videos", 3000,
                           "--creators", 300, "--bad", 0.002, "--seed", 31, background=True)
    rnd = random.Random(7)
    fast = ("--set", "kafka.rdkafka.session.timeout.ms=6000",
            "--set", "kafka.rdkafka.heartbeat.interval.ms=500")
    a = scenario.start_daemon(*fast)
    wait_for(lambda: scenario.applied() > 10000, 60, "the first daemon to make progress")
    b = scenario.start_daemon(*fast)
    c = scenario.start_daemon(*fast)
    # Partitions move to b and c, then back as they leave one way or another.
    wait_for(lambda: scenario.log_text().count("rebalance: assigned") >= 3, 60,
             "the others to get partitions")
    before = scenario.applied()
    wait_for(lambda: scenario.applied() > before + 10000, 60, "progress with three")
    b.terminate()                       # a graceful leave
    assert b.wait(timeout=15) == 0
    before = scenario.applied()
    wait_for(lambda: scenario.applied() > before + 10000, 60, "progress after b left")
    c.send_signal(signal.SIGKILL)       # a crash: its partitions move after the session
    c.wait()
    d = scenario.start_daemon(*fast)    # and a newcomer
    assert gen.poll() is None, "the stream ended before the rebalances"
    wait_for(lambda: gen.poll() is not None, 120, "the stream")
    log_end = int(time.time() * 1000) - 5000
    wait_for(lambda: scenario.applied() == scenario.expected()["messages"], 120,
             "every message applied by the survivors")
    for p in (a, d):
        p.terminate()
        assert p.wait(timeout=15) == 0
    assert mismatches(stack.redis(), scenario.prefix, scenario.expected()) == []
    # The window state moved with the partitions: every window equals the model.
    bad, checked = window_mismatches(stack, scenario)
    assert bad == [] and checked > 16 * 1000
    # And so did the detectors: an undisturbed run of the same log (another
    # group, --drain) fires the same alerts, up to where the log ends.
    assert_alerts_of_undisturbed_run(stack, scenario, log_end)
    log = scenario.log_text()
    assert log.count("rebalance: revoked") >= 2


def test_broker_restart_mid_stream(scenario, stack):
    gen, d = scenario.live("--count", 240000, "--rate", 20000, "--videos", 1000,
                           "--creators", 100, "--seed", 41, progress=120000)
    t_stop = int(time.time() * 1000)
    stack.run("stop-kafka")
    stack.run("start-kafka")
    t_back = int(time.time() * 1000)
    wait_for(lambda: gen.poll() is not None, 120, "the stream")
    assert gen.returncode == 0
    log_end = int(time.time() * 1000) - 5000
    wait_for(lambda: scenario.applied() == scenario.expected()["messages"], 120,
             "every message applied after the broker came back")
    assert d.poll() is None
    d.terminate()
    assert d.wait(timeout=15) == 0
    assert mismatches(stack.redis(), scenario.prefix, scenario.expected()) == []
    bad, checked = window_mismatches(stack, scenario)
    assert bad == [] and checked > 16 * 500
    # The producer held back what it produced while the broker was away; an
    # event that reaches Kafka that late is a late event (SPEC 2): the live
    # run may have stepped its edge before it came, a replay steps it with
    # it. The daemon stops its clock once librdkafka sees the brokers gone
    # (docs/windows.md), but not before: alerts at edges from the stop to a
    # few seconds after the return may differ, and all others must not.
    assert_alerts_of_undisturbed_run(stack, scenario, log_end,
                                     skip=(t_stop - 2000, t_back + 5000))


def test_redis_losing_its_data_stops_the_daemon_with_a_clear_error(scenario, stack):
    gen, d = scenario.live("--count", 100000, "--rate", 20000, "--videos", 1000,
                           "--creators", 100, "--seed", 43)
    r = stack.redis()
    # What a Redis restarted without its AOF looks like: our keys are gone.
    for k in r.scan_iter(scenario.prefix + "*", count=1000):
        r.delete(k)
    assert d.wait(timeout=20) == 1
    assert "Redis lost or flushed its data" in scenario.log_text()
    gen.wait(timeout=60)


def test_hostile_input_goes_to_the_dead_letter_topic_and_good_events_around_it_count(
        scenario, stack):
    now = time.time()
    ms = int(now * 1000)
    good = '{"type":"like","video_id":"hv1","creator_id":"hc1","ts":%d}' % ms
    hostile = [
        (b"", "bad_json"),
        (b"   ", "bad_json"),
        (b"\x00\x01\x02\xff", "bad_json"),
        (b'{"type":"like","video_id":"hv1","ts":1', "bad_json"),
        (b'{"type":"like","video_id":"h\xc3","ts":1}', "bad_json"),            # truncated UTF-8
        (b'{"type":"like","video_id":"h\xff\xfe","ts":1}', "bad_json"),        # invalid UTF-8
        (b'{"type":"like","video_id":"hv1\\u0000x","ts":1}', "bad_json"),     # NUL in a string
        (b"[" * 5000 + b"]" * 5000, "bad_json"),                              # deep nesting
        (b'{"type":"like","type":"view","video_id":"hv1","ts":1}', "bad_json"),  # duplicate key
        (b"null", "bad_json"),
        (b"42", "bad_json"),
        (b'"like"', "bad_json"),
        (b"[]", "not_object"),
        (b'{"type":"like","video_id":"hv1","ts":1,"pad":"' + b"x" * 70000 + b'"}', "too_large"),
        (b'{"type":"LIKE","video_id":"hv1","ts":1}', "unknown_type"),
        (b'{"type":"","video_id":"hv1","ts":1}', "unknown_type"),
        (b'{"type":null,"video_id":"hv1","ts":1}', "bad_field:type"),
        (b'{"type":["like"],"video_id":"hv1","ts":1}', "bad_field:type"),
        (b'{"type":"like","video_id":"","ts":1}', "bad_field:video_id"),
        (b'{"type":"like","video_id":"' + b"v" * 129 + b'","ts":1}', "bad_field:video_id"),
        (b'{"type":"like","video_id":"a{b}","ts":1}', "bad_field:video_id"),
        (b'{"type":"like","video_id":"has space","ts":1}', "bad_field:video_id"),
        (b'{"type":"like","video_id":7,"ts":1}', "bad_field:video_id"),
        (b'{"type":"like","video_id":"hv1"}', "bad_field:ts"),
        (b'{"type":"like","video_id":"hv1","ts":1e400}', "bad_json"),          # huge number
        (b'{"type":"like","video_id":"hv1","ts":99999999999999999999999}', "bad_json"),
        (b'{"type":"like","video_id":"hv1","ts":1.5}', "bad_field:ts"),
        (b'{"type":"like","video_id":"hv1","ts":-1}', "bad_field:ts"),
        (b'{"type":"like","video_id":"hv1","ts":"NaN"}', "bad_field:ts"),
        (b'{"type":"like","video_id":"hv1","ts":"2026-02-30T00:00:00Z"}', "bad_field:ts"),
        (b'{"type":"like","video_id":"hv1","ts":%d}' % (ms + 300000 + 60000), "future_ts"),
        (b'{"type":"like","video_id":"hv1","ts":9223372036854775807}', "future_ts"),
        (b'{"type":"view","video_id":"hv1","ts":1,"watch_ms":86400001}', "bad_field:watch_ms"),
        (b'{"type":"view","video_id":"hv1","ts":1,"watch_ms":1.0}', "bad_field:watch_ms"),
        (b'{"type":"view","video_id":"hv1","ts":1,"region":"U"}', "bad_field:region"),
        (b'{"type":"view","video_id":"hv1","ts":1,"age_bucket":"55-"}', "bad_field:age_bucket"),
        (b'{"type":"view","video_id":"hv1","ts":1,"hashtags":["a","' + b"b" * 65 + b'"]}',
         "bad_field:hashtags"),
        (b'{"type":"view","video_id":"hv1","ts":1,"hashtags":' +
         json.dumps(["t%d" % i for i in range(21)]).encode() + b"}", "bad_field:hashtags"),
        (b'{"type":"share","video_id":"hv1","ts":1,"user_id":"tab\\tid"}', "bad_field:user_id"),
        (b'{"type":"share","video_id":"hv1","ts":1,"share_type":{}}', "bad_field:share_type"),
        (b'{"type":"share","video_id":"hv1","ts":1,"platform":"' + b"p" * 33 + b'"}',
         "bad_field:platform"),
        (b'{"type":"follow","creator_id":"","ts":1}', "bad_field:creator_id"),
    ]
    admin = AdminClient({"bootstrap.servers": stack.brokers})
    for f in admin.create_topics([NewTopic(scenario.topic, 1, 1)]).values():
        f.result()
    p = Producer({"bootstrap.servers": stack.brokers, "message.max.bytes": 1000000})
    # good, hostile, good, hostile, ..., good: all to one partition, in order.
    for value, _ in hostile:
        p.produce(scenario.topic, value=good.encode(), key=b"k")
        p.produce(scenario.topic, value=value, key=b"k")
    p.produce(scenario.topic, value=good.encode(), key=b"k")
    assert p.flush(30) == 0
    scenario.drain()
    r = stack.redis()
    assert r.hget(scenario.prefix + "v:{hv1}", "likes") == str(len(hostile) + 1)
    from test_spine import read_topic
    dlq = read_topic(stack.brokers, scenario.dlq)
    got = [(v, h["sp-reason"].decode()) for _, _, _, v, h in dlq]
    assert got == [(v, reason) for v, reason in hostile]
    assert len({reason for _, reason in hostile}) == 16 and len(hostile) >= 30


def vm_hwm_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0


def test_thirty_second_redis_outage_under_a_flood_keeps_memory_bounded(scenario, stack):
    # The stream keeps coming at 40 000 events/s while Redis is away for 30 s:
    # the daemon pauses fetching at max_pending_events, its memory stays
    # bounded, and after Redis returns it catches up with nothing lost.
    gen, d = scenario.live("--count", 2000000, "--rate", 40000, "--videos", 20000,
                           "--creators", 2000, "--seed", 47,
                           daemon_args=("--set", "pipeline.max_pending_events=200000"),
                           progress=50000)
    stack.run("stop-redis")
    try:
        deadline = time.monotonic() + 30
        peak = 0
        while time.monotonic() < deadline:
            assert d.poll() is None, "the daemon died while Redis was down"
            peak = max(peak, vm_hwm_mb(d.pid))
            time.sleep(0.5)
    finally:
        stack.run("start-redis")
    assert gen.poll() is None, "the flood ended before Redis came back"
    wait_for(lambda: gen.poll() is not None, 120, "the stream")
    log_end = int(time.time() * 1000) - 5000
    wait_for(lambda: scenario.applied() == scenario.expected()["messages"], 300,
             "the catch-up")
    peak = max(peak, vm_hwm_mb(d.pid))
    d.terminate()
    assert d.wait(timeout=15) == 0
    assert mismatches(stack.redis(), scenario.prefix, scenario.expected()) == []
    bad, checked = window_mismatches(stack, scenario)
    assert bad == [] and checked > 16 * 1000
    assert_alerts_of_undisturbed_run(stack, scenario, log_end)
    print("peak RSS during the outage and catch-up: %.0f MB" % peak)
    # AddressSanitizer's shadow memory and quarantine inflate RSS; the bound
    # is the production build's.
    if os.environ.get("SP_SANITIZE", "OFF") not in ("ON", "1", "TRUE"):
        assert peak < 400, "peak RSS %.0f MB" % peak


def test_sigterm_with_redis_down_stops_within_ten_seconds(scenario, stack):
    gen, d = scenario.live("--count", 100000, "--rate", 20000, "--videos", 500,
                           "--creators", 50, "--seed", 53, progress=20000)
    stack.run("stop-redis")
    try:
        wait_for(lambda: "connect failed" in scenario.log_text(), 10, "Redis to be missed")
        t0 = time.monotonic()
        d.terminate()
        assert d.wait(timeout=15) == 0
        took = time.monotonic() - t0
        assert took < 10, "stopping took %.1f s" % took
    finally:
        stack.run("start-redis")
    assert "unacknowledged; they will be consumed again" in scenario.log_text()
    gen.wait(timeout=60)
    scenario.drain()
    assert mismatches(stack.redis(), scenario.prefix, scenario.expected()) == []


def test_foreign_data_under_our_prefix_neither_stops_nor_doubles(scenario, stack):
    # Someone else's data where sharepulse writes: a non-numeric event_ms in
    # one video's hash, and a plain string where another video's hash goes.
    r = stack.redis()
    r.hset(scenario.prefix + "v:{v1}", "event_ms", "not-a-number")
    r.set(scenario.prefix + "v:{v2}", "a string")
    scenario.loadgen("--count", 20000, "--videos", 50, "--creators", 5, "--seed", 59)
    exp = scenario.expected()
    scenario.drain()
    assert "skipped writes to keys of the wrong type" in scenario.drain_log
    del exp["videos"]["v2"]          # its hash could not be written
    exp["creators"] = {}             # v2's creator rollup misses v2's events
    assert mismatches(r, scenario.prefix, exp) == []
    assert r.get(scenario.prefix + "v:{v2}") == "a string"
    assert int(r.hget(scenario.prefix + "v:{v1}", "event_ms")) > 0


def test_redis_out_of_memory_holds_the_batch_and_loses_nothing(scenario, stack):
    """maxmemory below what Redis holds (noeviction): every apply is refused
    at its first write, the daemon holds its batches and says so, and once
    Redis has room again every total and window is exact."""
    gen, d = scenario.live("--count", 100000, "--rate", 20000, "--videos", 1000,
                           "--creators", 100, "--seed", 43)
    r = stack.redis()
    policy = r.config_get("maxmemory-policy")["maxmemory-policy"]
    try:
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", str(int(r.info("memory")["used_memory"]) // 2))
        wait_for(lambda: "Redis is out of memory" in scenario.log_text(), 30, "the refusal")
        held = scenario.applied()
        time.sleep(2)
        assert scenario.applied() == held, "an apply got through while out of memory"
        assert d.poll() is None, "the daemon stopped"
    finally:
        r.config_set("maxmemory", "0")
        r.config_set("maxmemory-policy", policy)
    wait_for(lambda: gen.poll() is not None, 120, "the stream")
    wait_for(lambda: scenario.applied() == scenario.expected()["messages"], 120,
             "every message applied once Redis had room")
    d.terminate()
    assert d.wait(timeout=15) == 0
    assert mismatches(stack.redis(), scenario.prefix, scenario.expected()) == []
    bad, checked = window_mismatches(stack, scenario)
    assert bad == [] and checked > 16 * 500
