"""The spine on a real broker and a real redis-server: exact totals, the
dead-letter topic, privacy, exactly once across reruns and a Redis restart,
and config errors."""
import json
import os
import subprocess
import time

from confluent_kafka import Consumer, TopicPartition

from conftest import BUILD, mismatches, wait_for


def read_topic(brokers, topic):
    """Every message of a topic, as (partition, offset, key, value, headers)."""
    c = Consumer({"bootstrap.servers": brokers, "group.id": "reader",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    md = c.list_topics(topic, timeout=10).topics[topic]
    parts = sorted(md.partitions)
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out, done = [], set(p for p in parts if ends[p] == 0)
    while len(done) < len(parts):
        m = c.poll(5)
        assert m is not None, "timed out reading " + topic
        if m.error():
            if m.error().code() == -191:  # partition EOF
                done.add(m.partition())
            continue
        out.append((m.partition(), m.offset(), m.key(), m.value(), dict(m.headers() or [])))
        if m.offset() + 1 >= ends[m.partition()]:
            done.add(m.partition())
    c.close()
    return out


def all_strings(r, prefix):
    """Every string the daemon stored under prefix (hashes, lists, sets)."""
    out = []
    for k in r.scan_iter(prefix + "*", count=1000):
        t = r.type(k)
        if t == "hash":
            for f, v in r.hgetall(k).items():
                out += [f, v]
        elif t == "list":
            out += r.lrange(k, 0, -1)
        elif t == "set":
            out += list(r.smembers(k))
        out.append(k)
    return out


def test_drain_gives_exact_totals_dead_letters_and_privacy(scenario, stack):
    scenario.loadgen("--count", 60000, "--videos", 800, "--creators", 90,
                     "--users", 5000, "--bad", 0.02, "--seed", 7)
    exp = scenario.expected()
    scenario.drain()
    r = stack.redis()

    assert mismatches(r, scenario.prefix, exp) == []

    # Every partition's exactly-once marker is at the end of the log.
    src = read_topic(stack.brokers, scenario.topic)
    ends = {}
    for p, off, *_ in src:
        ends[p] = max(ends.get(p, 0), off + 1)
    assert {k: int(v) for k, v in scenario.offsets().items()} == \
        {"%s:%d" % (scenario.topic, p): e for p, e in ends.items()}

    # Each bad message is in the dead-letter topic, unchanged, with its reason.
    dlq = read_topic(stack.brokers, scenario.dlq)
    by_pos = {(p, off): (k, v) for p, off, k, v, _ in src}
    reasons = {}
    for _, _, key, value, h in dlq:
        reason = h["sp-reason"].decode()
        reasons[reason] = reasons.get(reason, 0) + 1
        assert h["sp-topic"].decode() == scenario.topic
        pos = (int(h["sp-partition"]), int(h["sp-offset"]))
        assert by_pos[pos] == (key, value), "dead letter differs from the source message"
    assert reasons == exp["bad"]
    assert len(reasons) == 16, "the load generator covers every reason code"

    # Privacy: no sharer of a private share type is stored anywhere.
    strings = all_strings(r, scenario.prefix)
    assert not [s for s in strings if "priv-" in s]
    # Public sharers are stored, newest first, as the contract's JSON.
    some = next(v for v, e in exp["videos"].items() if e["public_sharers"] > 0)
    entry = json.loads(r.lindex("%sv:{%s}:sharers" % (scenario.prefix, some), 0))
    assert set(entry) == {"user_id", "share_type", "ts"}
    assert entry["share_type"] in ("duet", "stitch", "reaction", "repost")
    assert entry["user_id"].startswith("pub-")


def test_second_drain_counts_nothing_twice(scenario, stack):
    scenario.loadgen("--count", 20000, "--videos", 300, "--creators", 30, "--seed", 3)
    exp = scenario.expected()
    scenario.drain()
    before = scenario.offsets()
    scenario.drain()   # same group: resumes from the stored offsets
    assert scenario.offsets() == before
    assert mismatches(stack.redis(), scenario.prefix, exp) == []


def test_totals_only_mode_writes_the_totals_and_nothing_of_the_windows(scenario, stack):
    """pipeline.windows=false (the spine alone, as the benchmark compares it):
    the same exact totals, and no window field, leaderboard, series or
    window state."""
    scenario.loadgen("--count", 20000, "--videos", 300, "--creators", 30, "--seed", 5)
    exp = scenario.expected()
    scenario.drain("--set", "pipeline.windows=false")
    r = stack.redis()
    assert mismatches(r, scenario.prefix, exp) == []
    window_fields = {"views_1m", "shares_24h", "velocity", "er_1h", "updated_ms", "level"}
    for vid in exp["videos"]:
        assert not window_fields & set(r.hkeys("%sv:{%s}" % (scenario.prefix, vid))), vid
    keys = set(r.scan_iter(scenario.prefix + "*", count=1000))
    assert not [k for k in keys if k.endswith(":series") or ":top:" in k]
    # The state hashes hold their sequence markers and nothing else.
    states = [k for k in keys if ":win:" in k]
    assert states and all(set(r.hkeys(k)) == {"#seq"} for k in states)
    for vid in list(exp["videos"])[:20]:
        assert r.hget("%sc:{%s}" % (scenario.prefix, exp["videos"][vid]["creator_id"]),
                      "follows_24h") is None


def test_turning_windows_off_freezes_them_and_keeps_counting_totals(scenario, stack):
    """A group that ran with windows and is restarted with
    pipeline.windows=false: its window fields stay as they were (no decay
    written from the old state), its totals go on counting exactly."""
    scenario.loadgen("--count", 20000, "--videos", 300, "--creators", 30, "--seed", 5,
                     "--span-hours", 0.05)   # the last 3 minutes: 1m windows decay
    first = scenario.expected()
    scenario.drain()
    r = stack.redis()
    key = lambda v: "%sv:{%s}" % (scenario.prefix, v)
    derived = {"velocity", "er_1h", "er_24h", "share_rate_1h", "share_rate_24h",
               "updated_ms", "level", "baseline", "momentum"}
    windowed = lambda h: {k: v for k, v in h.items()
                          if k in derived or k.endswith(("_1m", "_5m", "_1h", "_24h"))}
    before = {vid: windowed(r.hgetall(key(vid))) for vid in first["videos"]}
    assert any("views_1m" in h for h in before.values())
    scenario.expect_path += ".2"
    scenario.loadgen("--count", 5000, "--videos", 300, "--creators", 30, "--seed", 6)
    second = scenario.expected()
    time.sleep(2.5)  # a 2 s bucket of the first events leaves the 1m window
    scenario.drain("--set", "pipeline.windows=false")
    for vid in first["videos"]:
        h = r.hgetall(key(vid))
        assert windowed(h) == before[vid], vid
        views = first["videos"][vid].get("views", 0) + \
            second["videos"].get(vid, {}).get("views", 0)
        assert int(h.get("views", 0)) == views, vid


def test_redis_outage_pauses_fetching_and_loses_nothing(scenario, stack):
    gen, d = scenario.live("--count", 200000, "--rate", 20000, "--videos", 2000,
                           "--creators", 100, "--seed", 11,
                           daemon_args=("--set", "pipeline.max_pending_events=20000",
                                        "--set", "log.level=debug"),
                           progress=20000)
    r = stack.redis()
    seen = len(scenario.log_text())
    stack.run("stop-redis")
    since = lambda: scenario.log_text()[seen:]
    # With Redis down the daemon holds at most ~max_pending_events in memory
    # and stops fetching instead of buffering the stream. It may already have
    # paused just before the stop (a backlog at start), and then stays paused.
    paused = lambda: (scenario.log_text().rfind("pausing fetch") >
                      scenario.log_text().rfind("resuming fetch"))
    wait_for(lambda: "connect failed" in since() and paused(), 30,
             "backpressure while Redis is down")
    assert gen.poll() is None, "the stream ended before the outage mattered"
    stack.run("start-redis")
    wait_for(lambda: "resuming fetch" in since(), 30, "fetching to resume")
    wait_for(lambda: gen.poll() is not None, 120, "the load generator")
    assert gen.returncode == 0
    d.terminate()
    assert d.wait(timeout=15) == 0
    scenario.drain()
    assert mismatches(r, scenario.prefix, scenario.expected()) == []


def test_bad_config_names_file_line_and_allowed_values(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("[kafka]\nbrokers = 127.0.0.1:1\n[redis]\nport = 70000\n"
                    "[pipeline]\nflush_interval_ms = soon\n[log]\nlevel = loud\n"
                    "[kafka]\nbogus = 1\n[nosuch]\nx = 1\n")
    r = subprocess.run([os.path.join(BUILD, "sharepulsed"), "-c", str(conf), "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    err = r.stderr
    assert "%s:4: [redis] port: 70000 is out of range (allowed: 1 to 65535)" % conf in err
    assert "%s:6: [pipeline] flush_interval_ms: \"soon\" is not an integer" % conf in err
    assert "%s:8: [log] level: \"loud\" is not allowed (allowed: error,warn,info,debug)" % conf in err
    assert "%s:10: [kafka] unknown key \"bogus\"" % conf in err
    assert "%s:12: unknown section [nosuch]" % conf in err

    good = os.path.join(os.environ.get("SP_SOURCE_DIR", "."), "config", "sharepulse.conf")
    r = subprocess.run([os.path.join(BUILD, "sharepulsed"), "-c", good, "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
