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
                     "--span-hours", SPAN_H, "--seed", 17,
                     *["--burst=%d:%d:%d:%d" % b for b in BURSTS])
    prefix = run(scenario, stack, "a")
    r = stack.redis()
    got = alerts(r, prefix)
    assert got, "no alert at all"
    warm = start + 45 * MIN  # the first baselines are still being learnt
    momentum = [a for a in got if a["kind"] == "momentum" and a["at_ms"] >= warm]
    fired = {a["video_id"] for a in momentum}
    assert fired == {"v%d" % v for v, _, _, _ in BURSTS}, [(a["video_id"], a["level"], (a["at_ms"] - start) // 1000, a["velocity"], a["baseline"], a["z"], a["shares_5m"]) for a in momentum]
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
    again = [a for a in alerts(r, prefix2) if a["at_ms"] < end]
    assert [a["alert_id"] for a in again] == [a["alert_id"] for a in got if a["at_ms"] < end]
    assert again == [a for a in got if a["at_ms"] < end]
