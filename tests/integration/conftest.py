"""Shared fixtures: one real Kafka broker and one real redis-server for the
test session, started by deploy/stack.sh on free loopback ports, and helpers
to run the load generator and the daemon and to read what they produced."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
import redis

SRC = os.environ.get("SP_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("SP_BUILD_DIR", os.path.join(SRC, "build"))
STACK = os.path.join(SRC, "deploy", "stack.sh")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, tmp):
        self.env = dict(os.environ,
                        SP_STACK_DIR=os.path.join(tmp, "stack"),
                        SP_KAFKA_PORT=str(free_port()),
                        SP_KAFKA_CONTROLLER_PORT=str(free_port()),
                        SP_REDIS_PORT=str(free_port()))
        self.brokers = "127.0.0.1:" + self.env["SP_KAFKA_PORT"]
        self.redis_port = int(self.env["SP_REDIS_PORT"])
        self.tmp = tmp

    def run(self, *cmd):
        subprocess.run([STACK, *cmd], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)

    def redis(self):
        return redis.Redis(port=self.redis_port, decode_responses=True)


@pytest.fixture(scope="session")
def stack():
    tmp = tempfile.mkdtemp(prefix="sp-it-")
    s = Stack(tmp)
    s.run("start")
    yield s
    s.run("stop")


class Scenario:
    """One test's own topic, group and key prefix on the shared stack."""

    def __init__(self, stack, partitions=4):
        tag = uuid.uuid4().hex[:8]
        self.stack = stack
        self.topic = "ev-" + tag
        self.dlq = "dlq-" + tag
        self.group = "g-" + tag
        self.prefix = "t" + tag + ":"
        self.partitions = partitions
        self.expect_path = os.path.join(stack.tmp, tag + "-expect.json")
        self.procs = []

    def loadgen(self, *args, background=False):
        cmd = [os.path.join(BUILD, "sp-loadgen"), "--brokers", self.stack.brokers,
               "--topic", self.topic, "--create-topic", str(self.partitions),
               "--expect", self.expect_path, *map(str, args)]
        if background:
            p = subprocess.Popen(cmd, stderr=subprocess.PIPE)
            self.procs.append(p)
            return p
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)

    def expected(self):
        with open(self.expect_path) as f:
            return json.load(f)

    def daemon_cmd(self, *extra):
        return [os.path.join(BUILD, "sharepulsed"),
                "--set", "kafka.brokers=" + self.stack.brokers,
                "--set", "kafka.topics=" + self.topic,
                "--set", "kafka.group=" + self.group,
                "--set", "kafka.dlq_topic=" + self.dlq,
                "--set", "redis.port=%d" % self.stack.redis_port,
                "--set", "redis.prefix=" + self.prefix,
                "--set", "http.listen=",
                *extra]

    @property
    def log_path(self):
        return os.path.join(self.stack.tmp, self.group + ".log")

    def log_text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def start_daemon(self, *extra):
        log = open(self.log_path, "ab")
        p = subprocess.Popen(self.daemon_cmd(*extra), stderr=log)
        self.procs.append(p)
        return p

    def drain(self, *extra, timeout=300):
        r = subprocess.run(self.daemon_cmd("--drain", *extra), stderr=subprocess.PIPE,
                           timeout=timeout)
        assert r.returncode == 0, r.stderr.decode()[-3000:]
        self.drain_log = r.stderr.decode()
        return self.drain_log

    def offsets(self):
        return self.stack.redis().hgetall(self.prefix + "offsets:{%s}" % self.group)

    def applied(self):
        """Messages applied to Redis so far: the sum of the stored offsets."""
        return sum(int(v) for v in self.offsets().values())

    def live(self, *loadgen_args, daemon_args=(), progress=10000):
        """Starts a background stream and a daemon on it, and returns both
        once the daemon has applied more than progress messages."""
        gen = self.loadgen(*loadgen_args, background=True)
        d = self.start_daemon(*daemon_args)
        wait_for(lambda: self.applied() > progress, 60, "the daemon to make progress")
        return gen, d

    def kill_repeatedly(self, gen, kills, rnd, member, max_wait=1.2):
        """Starts the daemon and SIGKILLs it at a random moment after it
        applied at least one batch, kills times, while gen still produces.
        A restarted member takes its partitions back at once (static
        membership `member`), as a systemd-restarted daemon would with it
        set. Returns the applied count after each kill and the extra
        arguments used, for the run that follows."""
        static = ("--set", "kafka.rdkafka.group.instance.id=" + member,
                  "--set", "kafka.rdkafka.session.timeout.ms=6000")
        progress = []
        for k in range(kills):
            d = self.start_daemon(*static)
            before = self.applied()
            wait_for(lambda: self.applied() > before, 30, "progress after restart %d" % k)
            assert gen.poll() is None, "the stream ended before the kills"
            try:
                d.wait(timeout=rnd.uniform(0.05, max_wait))
            except subprocess.TimeoutExpired:
                pass
            assert d.poll() is None, "the daemon died on its own"
            d.send_signal(signal.SIGKILL)
            d.wait()
            progress.append(self.applied())
        return progress, static

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def scenario(stack):
    s = Scenario(stack)
    yield s
    s.cleanup()


def mismatches(r, prefix, exp, limit=20):
    """Every difference between Redis and the load generator's ground truth."""
    out = []
    pipe = r.pipeline(transaction=False)
    vids = list(exp["videos"].items())
    for vid, _ in vids:
        pipe.hgetall("%sv:{%s}" % (prefix, vid))
        pipe.hgetall("%sv:{%s}:demo" % (prefix, vid))
        pipe.pfcount("%sv:{%s}:reach" % (prefix, vid))
        pipe.llen("%sv:{%s}:sharers" % (prefix, vid))
    res = pipe.execute()
    for i, (vid, e) in enumerate(vids):
        h, demo, reach, nsharers = res[4 * i:4 * i + 4]
        for k, v in e.items():
            if k in ("demo", "reach", "public_sharers"):
                continue
            if str(h.get(k, 0)) != str(v):
                out.append("video %s %s: redis %s, expected %s" % (vid, k, h.get(k), v))
        for k in h:
            if k.startswith("shares:") and k not in e:
                out.append("video %s: unexpected field %s=%s" % (vid, k, h[k]))
        if {k: int(v) for k, v in demo.items()} != e["demo"]:
            out.append("video %s demo: %s != %s" % (vid, demo, e["demo"]))
        # HyperLogLog: 0.81% standard error; 5% is beyond any real draw.
        if "reach" in e and abs(reach - e["reach"]) > max(3, 0.05 * e["reach"]):
            out.append("video %s reach: %d, expected about %d" % (vid, reach, e["reach"]))
        if nsharers != min(100, e["public_sharers"]):
            out.append("video %s sharers: %d, expected %d" % (vid, nsharers,
                                                              min(100, e["public_sharers"])))
    pipe = r.pipeline(transaction=False)
    cids = list(exp["creators"].items())
    for cid, _ in cids:
        pipe.hgetall("%sc:{%s}" % (prefix, cid))
    for (cid, e), h in zip(cids, pipe.execute()):
        for k, v in e.items():
            if int(h.get(k, 0)) != v:
                out.append("creator %s %s: redis %s, expected %s" % (cid, k, h.get(k), v))
    return out[:limit] if out else []


def alerts_before(r, prefix, log_end, skip=None):
    """The alerts in prefix's stream at event times before log_end (and
    outside the (start, end) event-time range skip), in order."""
    out = [json.loads(f["alert"]) for _, f in r.xrange(prefix + "alerts")]
    return sorted((x for x in out if x["at_ms"] < log_end and
                   not (skip and skip[0] <= x["at_ms"] < skip[1])),
                  key=lambda x: (x["at_ms"], x["alert_id"]))


def final_clock(r, prefix):
    """The clock T of a run's last writes: the newest updated_ms it wrote."""
    pipe = r.pipeline(transaction=False)
    keys = [k for k in r.scan_iter(prefix + "v:{*}", count=1000) if k.endswith("}")]
    for k in keys:
        pipe.hget(k, "updated_ms")
    return max(int(v) for v in pipe.execute() if v is not None)


def assert_alerts_of_undisturbed_run(stack, scenario, log_end, skip=None):
    """The alerts a disturbed run fired equal those of an undisturbed drain
    of the same log by another group, byte for byte, up to log_end and up
    to where the disturbed run's clock got (after the log ends a live run
    goes on stepping with the wall clock; a drain steps to the present),
    leaving out the event-time range skip. Returns how many were compared."""
    r = stack.redis()
    log_end = min(log_end, final_clock(r, scenario.prefix))
    scenario.drain("--set", "kafka.group=%s-ref" % scenario.group,
                   "--set", "redis.prefix=%sref:" % scenario.prefix)
    got = alerts_before(r, scenario.prefix, log_end, skip)
    want = alerts_before(r, scenario.prefix + "ref:", log_end, skip)
    assert want, "the stream fired no alert"
    assert [x["alert_id"] for x in got] == [x["alert_id"] for x in want]
    assert got == want
    return len(want)


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


# ---- rolling windows: a model computed from the log itself ----

MIN_MS = 60000
# (bucket ms, buckets) of each window; see lib/window.h.
WINDOWS = {"1m": (2000, 30), "5m": (2000, 150), "1h": (MIN_MS, 60), "24h": (1800000, 48)}
METRICS = ("views", "likes", "comments", "shares")


def event_ms(ts):
    """An event's ts as the daemon reads it: epoch ms or RFC 3339."""
    if isinstance(ts, int):
        return ts
    from datetime import datetime
    return round(datetime.fromisoformat(ts).timestamp() * 1000)


def window_value(ts_list, window, clock):
    g, n = WINDOWS[window]
    lower = (clock // g - n + 1) * g
    return sum(1 for ts in ts_list if ts >= lower)


def window_mismatches(stack, scenario, limit=20, series=True):
    """Every window field of every video that differs from a model computed
    from the topic at the video's updated_ms (the clock of its last write).
    Messages that went to the dead-letter topic are left out. Returns the
    differences and the number of fields checked."""
    from test_spine import read_topic
    bad = set()
    if scenario.dlq:
        try:
            for _, _, _, _, h in read_topic(stack.brokers, scenario.dlq):
                bad.add((int(h["sp-partition"]), int(h["sp-offset"])))
        except Exception:
            pass  # no dead letters: the topic was never created
    by_video = {}
    for part, off, _, value, _ in read_topic(stack.brokers, scenario.topic):
        if (part, off) in bad:
            continue
        e = json.loads(value)
        m = e["type"] + "s"
        if m in METRICS:
            by_video.setdefault(e["video_id"], {k: [] for k in METRICS})[m].append(
                event_ms(e["ts"]))
    r = stack.redis()
    pipe = r.pipeline(transaction=False)
    vids = sorted(by_video)
    for v in vids:
        pipe.hgetall("%sv:{%s}" % (scenario.prefix, v))
    out, checked = [], 0
    boards = {b: dict(r.zrange(scenario.prefix + "top:" + b, 0, -1, withscores=True))
              for b in ("velocity", "shares_1h")}
    hashes = pipe.execute()
    nonzero_velocity = nonzero_shares = 0
    for v, h in zip(vids, hashes):
        clock = int(h.get("updated_ms", 0))
        val = {}
        for m in METRICS:
            for w in WINDOWS:
                want = val[m, w] = window_value(by_video[v][m], w, clock)
                got = int(h.get("%s_%s" % (m, w), 0))
                checked += 1
                if got != want:
                    out.append("%s %s_%s: redis %d, model %d at %d" % (v, m, w, got, want, clock))
        # What is derived from them: rates (absent while there are no views),
        # velocity, and the leaderboards (trimmed to top_n: members only).
        derived = {"velocity": "%.1f" % (val["shares", "5m"] / 5)}
        for w in ("1h", "24h"):
            views = val["views", w]
            eng = val["likes", w] + val["comments", w] + val["shares", w]
            derived["er_" + w] = "%.4f" % (eng / views) if views else None
            derived["share_rate_" + w] = "%.4f" % (val["shares", w] / views) if views else None
        derived["top:velocity"] = val["shares", "5m"] / 5 or None
        derived["top:shares_1h"] = float(val["shares", "1h"]) or None
        nonzero_velocity += derived["top:velocity"] is not None
        nonzero_shares += derived["top:shares_1h"] is not None
        for name, want in derived.items():
            if name.startswith("top:"):
                got = boards[name[4:]].get(v)
                if got is None and want is not None:
                    continue  # trimmed, or not yet there
            else:
                got = h.get(name)
            checked += 1
            if got != want:
                out.append("%s %s: redis %r, model %r at %d" % (v, name, got, want, clock))
    # A trimmed board can miss members (above), but not be empty or long.
    for b, want_any in (("velocity", nonzero_velocity), ("shares_1h", nonzero_shares)):
        checked += 1
        if want_any and not 0 < len(boards[b]) <= 1000:
            out.append("top:%s holds %d members, %d videos have a value" %
                       (b, len(boards[b]), want_any))
    # The per-minute series: each minute, as the sum of its events (SPEC 3)
    # whatever partitions they came from. Checked up to a few seconds
    # before the run's last clock, which every partition's clock had passed
    # (each writes a minute when its own clock passes the minute's end).
    upto = max(int(h.get("updated_ms", 0)) for h in hashes) - 5000
    pipe = r.pipeline(transaction=False)
    for v in vids if series else []:
        pipe.xrange("%sv:{%s}:series" % (scenario.prefix, v))
    for v, entries in zip(vids, pipe.execute()):
        want = {}
        for m in METRICS:
            for ts in by_video[v][m]:
                start = ts // MIN_MS * MIN_MS
                if start + MIN_MS <= upto:
                    want.setdefault(start, dict.fromkeys(METRICS, 0))[m] += 1
        got = {int(i.split("-")[0]): {m: int(f[m]) for m in METRICS} for i, f in entries}
        got = {k: c for k, c in got.items() if k + MIN_MS <= upto}
        checked += 1
        if got != want:
            diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
            out.append("%s series: %d minutes differ, first %d: redis %s, model %s" %
                       (v, len(diff), diff[0], got.get(diff[0]), want.get(diff[0])))
    return out[:limit], checked
