"""Rolling windows on the real stack (SPEC 2 and 3): values at known event
times, their decay without new events, leaderboards, the per-minute
series, the updates channel, and windows after SIGKILLs equal to a model
computed from the log itself."""
import json
import os
import random
import signal
import subprocess
import time

import pytest

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import MIN_MS as MIN, wait_for, window_mismatches
from test_spine import read_topic

HOUR = 3600 * 1000


def now_ms():
    return int(time.time() * 1000)


def produce(stack, topic, events, partitions=2, create=True):
    if create:
        admin = AdminClient({"bootstrap.servers": stack.brokers})
        for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
            f.result()
    p = Producer({"bootstrap.servers": stack.brokers})
    for e in events:
        p.produce(topic, value=json.dumps(e).encode(),
                  key=(e.get("video_id") or e["creator_id"]).encode())
    assert p.flush(30) == 0


def test_windows_rates_leaderboards_and_series_at_known_times(scenario, stack):
    now = now_ms()
    vid, cre = "wv-" + scenario.group, "wc-" + scenario.group
    ev = []

    def add(n, **e):
        ev.extend([dict(e, video_id=vid, creator_id=cre)] * n)
    add(3, type="view", ts=now - 10000)
    add(5, type="view", ts=now - 2 * MIN)
    add(7, type="view", ts=now - 30 * MIN - 20000)
    add(11, type="view", ts=now - 3 * HOUR)
    add(13, type="view", ts=now - 25 * HOUR)           # totals only
    add(2, type="like", ts=now - 20000)
    add(1, type="comment", ts=now - 40 * MIN)
    add(4, type="share", ts=now - 15000, share_type="dm", hashtags=["FYP", "dance"])
    add(1, type="share", ts=now - 4 * MIN, share_type="duet", user_id="pub1")
    ev += [{"type": "follow", "creator_id": cre, "ts": now - 2 * HOUR}] * 2
    ev += [{"type": "follow", "creator_id": cre, "ts": now - 30 * HOUR}]
    produce(stack, scenario.topic, ev)

    r = stack.redis()
    sub = r.pubsub()
    sub.subscribe(scenario.prefix + "updates")
    scenario.start_daemon()
    key = "%sv:{%s}" % (scenario.prefix, vid)
    wait_for(lambda: scenario.applied() == len(ev), 60, "every event applied")
    wait_for(lambda: r.hget(key, "views_24h") == "26", 10, "the windows")
    h = r.hgetall(key)
    expect = {"views": "39", "views_1m": "3", "views_5m": "8", "views_1h": "15",
              "views_24h": "26", "likes_1m": "2", "likes_1h": "2", "comments_1m": "0",
              "comments_1h": "1", "comments_24h": "1", "shares_1m": "4", "shares_5m": "5",
              "shares_1h": "5", "shares_24h": "5", "velocity": "1.0",
              "er_1h": "%.4f" % ((2 + 1 + 5) / 15), "er_24h": "%.4f" % ((2 + 1 + 5) / 26),
              "share_rate_1h": "%.4f" % (5 / 15), "share_rate_24h": "%.4f" % (5 / 26)}
    assert {k: h.get(k) for k in expect} == expect
    assert now - 60000 < int(h["updated_ms"]) <= now_ms()
    assert r.zscore(scenario.prefix + "top:velocity", vid) == 1.0
    assert r.zscore(scenario.prefix + "top:shares_1h", vid) == 5.0
    assert r.zscore(scenario.prefix + "top:hashtags:shares_1h", "fyp") == 4.0
    assert r.zscore(scenario.prefix + "top:hashtags:shares_1h", "dance") == 4.0
    c = r.hgetall("%sc:{%s}" % (scenario.prefix, cre))
    assert (c["follows"], c["follows_24h"]) == ("3", "2")

    # The series: one entry per ended minute with activity in the last hour
    # (older events were never in a minute bucket), ID = the minute start.
    series = dict(r.xrange(key + ":series"))
    m2 = (now - 2 * MIN) // MIN * MIN
    assert series["%d-0" % m2] == {"views": "5", "likes": "0", "comments": "0", "shares": "0"}
    m30 = (now - 30 * MIN - 20000) // MIN * MIN
    assert series["%d-0" % m30]["views"] == "7"
    m40 = (now - 40 * MIN) // MIN * MIN
    assert series["%d-0" % m40]["comments"] == "1"
    assert "%d-0" % ((now - 3 * HOUR) // MIN * MIN) not in series

    # The updates channel named the video, with the clock.
    msgs = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        m = sub.get_message(timeout=0.5)
        if m and m["type"] == "message":
            msgs.append(json.loads(m["data"]))
            if vid in msgs[-1]["videos"]:
                break
    assert any(vid in m["videos"] and m["t"] > now - 60000 for m in msgs)


def test_values_decay_to_zero_on_time_without_new_events(scenario, stack):
    now = now_ms()
    vid = "wd-" + scenario.group
    t_views, t_shares = now - 50000, now - (4 * MIN + 52000)
    ev = [{"type": "view", "video_id": vid, "ts": t_views}] * 3
    ev += [{"type": "share", "video_id": vid, "ts": t_shares}] * 2
    produce(stack, scenario.topic, ev)
    r = stack.redis()
    key = "%sv:{%s}" % (scenario.prefix, vid)
    scenario.start_daemon()
    wait_for(lambda: r.hget(key, "views_1m") == "3", 30, "views_1m")
    assert r.zscore(scenario.prefix + "top:velocity", vid) == 0.4
    lateness = 2000
    # shares_5m leaves when the clock (wall - lateness) passes t + 5 min, at
    # most one 2 s bucket early; then velocity is 0 and the video leaves the
    # velocity board but stays on the shares_1h one.
    wait_for(lambda: r.hget(key, "shares_5m") == "0", 20, "shares_5m to decay")
    t = now_ms()
    assert t_shares + 5 * MIN + lateness - 2000 <= t <= t_shares + 5 * MIN + lateness + 1000
    assert r.hget(key, "velocity") == "0.0"
    assert r.zscore(scenario.prefix + "top:velocity", vid) is None
    assert r.zscore(scenario.prefix + "top:shares_1h", vid) == 2.0
    # views_1m: still 3 a little before its moment, 0 within 1 s after it.
    while now_ms() < t_views + MIN + lateness - 2500:
        assert r.hget(key, "views_1m") == "3"
        time.sleep(0.1)
    wait_for(lambda: r.hget(key, "views_1m") == "0", 5, "views_1m to decay")
    assert now_ms() <= t_views + MIN + lateness + 1000
    assert r.hget(key, "views_5m") == "3"


@pytest.mark.parametrize("keys", ["video", "none"])
def test_windows_after_sigkills_equal_a_model_of_the_log(scenario, stack, keys):
    """Keyed by video id, each video's events are on one partition; without
    keys they spread over every partition, whose contributions to a video's
    windows add up in Redis. Event times span 6 minutes, so the series has
    minutes to check."""
    rnd = random.Random(11)
    gen = scenario.loadgen("--count", 240000, "--rate", 20000, "--videos", 2000,
                           "--creators", 200, "--seed", 9, "--span-hours", 0.1,
                           *(["--unkeyed"] if keys == "none" else []), background=True)
    _, static = scenario.kill_repeatedly(gen, 4, rnd, "wcrash", max_wait=1.5)
    wait_for(lambda: gen.poll() is not None, 120, "the load generator")
    d = scenario.start_daemon(*static)
    total = scenario.expected()["messages"]
    wait_for(lambda: scenario.applied() == total, 120, "catch-up")
    d.send_signal(signal.SIGTERM)
    assert d.wait(timeout=15) == 0

    # Unkeyed, a series minute holds the first partition's counts only
    # (docs/windows.md), so the series is checked keyed only.
    bad, checked = window_mismatches(stack, scenario, series=keys == "video")
    assert bad == []
    # 16 window fields, 5 derived values and (keyed) the series, per video.
    assert checked >= (22 if keys == "video" else 21) * 2000


FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


def faketime_env(tmp_path):
    """The environment that runs the daemon under libfaketime, whose
    CLOCK_REALTIME offset is the returned file's content (+0 to start)."""
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    env = dict(os.environ, LD_PRELOAD=FAKETIME, FAKETIME_TIMESTAMP_FILE=str(offset),
               FAKETIME_NO_CACHE="1", FAKETIME_DONT_FAKE_MONOTONIC="1",
               DONT_FAKE_MONOTONIC="1")
    # Under ASan the sanitizer runtime must come first; libfaketime before
    # it is harmless here (it only wraps the clock calls).
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0"
    return offset, env


def metric(port, name):
    import urllib.request
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port).read().decode()
    return float(next(l.split()[1] for l in text.splitlines() if l.startswith(name + " ")))


def test_system_clock_jumps_do_not_move_event_time(scenario, stack, tmp_path):
    """The machine's clock is stepped two hours forward, then back to ten
    minutes behind the truth, then right: the windows neither age at once
    nor stall, and events stamped with the real time are neither refused as
    future_ts nor lost (libfaketime shifts the daemon's CLOCK_REALTIME
    only)."""
    from conftest import free_port
    offset, env = faketime_env(tmp_path)
    vid = "wj-" + scenario.group
    key = "%sv:{%s}" % (scenario.prefix, vid)
    t_views = now_ms() - 20000
    produce(stack, scenario.topic, [{"type": "view", "video_id": vid, "ts": t_views}] * 3)
    port = free_port()
    d = subprocess.Popen(scenario.daemon_cmd("--set", "http.listen=127.0.0.1:%d" % port),
                         env=env, stderr=open(scenario.log_path, "ab"))
    scenario.procs.append(d)
    r = stack.redis()
    wait_for(lambda: r.hget(key, "views_1h") == "3", 30, "the first events")

    offset.write_text("+7200\n")          # two hours forward
    time.sleep(3)
    clock = metric(port, "sharepulse_clock_ms")
    assert abs(clock - (now_ms() - 2000)) < 3000, "the clock jumped with the system clock"
    assert r.hget(key, "views_1h") == "3" and r.hget(key, "views_5m") == "3"

    offset.write_text("-600\n")           # back, to ten minutes behind the truth
    produce(stack, scenario.topic, [{"type": "share", "video_id": vid, "ts": now_ms()}] * 2,
            create=False)
    wait_for(lambda: r.hget(key, "shares") == "2", 20, "the shares after the jump back")
    assert r.hget(key, "shares_1m") == "2"
    clock0 = metric(port, "sharepulse_clock_ms")
    time.sleep(2)
    assert metric(port, "sharepulse_clock_ms") - clock0 > 1500, "the clock stalled"
    assert "future_ts" not in scenario.log_text()
    offset.write_text("+0\n")
    # views_1m leaves on time by the real clock: the daemon's clock slewed at
    # most 10 % of the few seconds spent away from the truth.
    wait_for(lambda: r.hget(key, "views_1m") == "0", 60, "views_1m to decay")
    assert t_views + MIN - 2000 <= now_ms() <= t_views + MIN + 2000 + 2500


def test_clock_jumps_under_a_stream_lose_nothing_and_fire_the_same_alerts(
        scenario, stack, tmp_path):
    """While 200 000 events stream in at 20 000/s, the daemon's system clock
    is stepped two hours forward, then ten minutes back, then right: every
    total equals the log, every window the model of the log, and the alerts
    equal those of an undisturbed drain of the same log."""
    from conftest import assert_alerts_of_undisturbed_run, mismatches
    offset, env = faketime_env(tmp_path)
    gen = scenario.loadgen("--count", 200000, "--rate", 20000, "--videos", 1000,
                           "--creators", 100, "--seed", 53, background=True)
    d = subprocess.Popen(scenario.daemon_cmd(), env=env, stderr=open(scenario.log_path, "ab"))
    scenario.procs.append(d)
    wait_for(lambda: scenario.applied() > 20000, 60, "the daemon to make progress")
    for step in ["+7200", "-600", "+0"]:
        offset.write_text(step + "\n")
        before = scenario.applied()
        wait_for(lambda: scenario.applied() > before + 20000, 30, "progress at " + step)
    assert gen.poll() is None, "the stream ended before the last jump"
    wait_for(lambda: gen.poll() is not None, 60, "the stream")
    log_end = now_ms() - 5000
    wait_for(lambda: scenario.applied() == scenario.expected()["messages"], 60,
             "every message applied")
    d.terminate()
    assert d.wait(timeout=15) == 0
    assert "future_ts" not in scenario.log_text()
    assert mismatches(stack.redis(), scenario.prefix, scenario.expected()) == []
    bad, checked = window_mismatches(stack, scenario)
    assert bad == [] and checked > 16 * 500
    n = assert_alerts_of_undisturbed_run(stack, scenario, log_end)
    print("alerts compared after the clock jumps: %d" % n)
