#!/bin/sh
# tests/bench/memory.sh - memory of the rolling windows per active video, in
# the daemon and in Redis, after a generated day of events.
#
#   tests/bench/memory.sh [EVENTS] [VIDEOS]    (4000000 150000)
#
# Loads EVENTS events whose times are spread evenly over the last 24 hours
# (Zipf popularity over VIDEOS videos, so most are quiet and a few are hot),
# runs the daemon live until it has applied all of them and its clock has
# reached the present, then reports:
#   - daemon: heap bytes of the window state (sharepulse_window_bytes) per
#     active video, and the process's RSS;
#   - Redis: MEMORY USAGE of each active video's keys (the hash, :series,
#     :reach, :demo, :sharers, :platforms) plus its share of the window state
#     hash, mean and percentiles.
# "Active" = a video with a non-zero 24h window.
set -eu
N=${1:-4000000}
V=${2:-150000}
HTTP_PORT=${SP_BENCH_HTTP_PORT:-29321}
. "$(dirname "$0")/stack.sh"
TOPIC="mem-$(date +%s)"
echo "memory: loading $N events over the last 24 h into $TOPIC ($V videos)"
"$BUILD/sp-loadgen" --brokers "$B" --topic "$TOPIC" --create-topic 4 --count "$N" \
    --videos "$V" --creators $((V / 10)) --users 1000000 --seed 7 --span-hours 24 \
    2>&1 | tail -1

"$BUILD/sharepulsed" --set kafka.brokers="$B" --set kafka.topics="$TOPIC" \
    --set kafka.group="$TOPIC" --set kafka.dlq_topic= --set redis.port="$SP_REDIS_PORT" \
    --set redis.prefix="$TOPIC:" --set http.listen="127.0.0.1:$HTTP_PORT" 2>/dev/null &
DPID=$!
trap 'kill $DPID 2>/dev/null || true' EXIT

/usr/bin/python3 - "$SP_REDIS_PORT" "$TOPIC" "$N" "$HTTP_PORT" "$DPID" <<'PY'
import sys, time, urllib.request, redis
port, topic, n, http, pid = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
r = redis.Redis(port=port, decode_responses=True)
pfx = topic + ":"
t0 = time.time()
while sum(int(v) for v in r.hgetall(pfx + "offsets:{%s}" % topic).values()) < n:
    assert time.time() - t0 < 900, "the daemon did not apply every event"
    time.sleep(0.5)
def metrics():
    text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % http).read().decode()
    return {l.split()[0]: float(l.split()[1]) for l in text.splitlines()
            if l and not l.startswith("#") and "{" not in l}
# The clock reaches the present once every partition is caught up.
while metrics()["sharepulse_clock_ms"] < time.time() * 1000 - 10000:
    time.sleep(0.5)
time.sleep(2)  # one more flush of what became due
m = metrics()
rss_kb = int(next(l.split()[1] for l in open("/proc/%s/status" % pid) if l.startswith("VmRSS")))

vids = []
for k in r.scan_iter(pfx + "v:{*}", count=5000):
    if k.endswith("}"):
        vids.append(k[len(pfx) + 3:-1])
state = {}
for k in r.scan_iter(pfx + "win:*", count=100):
    for f, blob in r.hscan_iter(k, count=5000):
        state[f] = len(f) + len(blob)
pipe = r.pipeline(transaction=False)
for v in vids:
    pipe.hget(pfx + "v:{%s}" % v, "views_24h")
    pipe.hget(pfx + "v:{%s}" % v, "shares_24h")
active = [v for v, (a, b) in zip(vids, zip(*[iter(pipe.execute())] * 2))
          if int(a or 0) or int(b or 0)]
sizes, series = [], []
for i in range(0, len(active), 2000):
    chunk = active[i:i + 2000]
    pipe = r.pipeline(transaction=False)
    for v in chunk:
        base = pfx + "v:{%s}" % v
        for suffix in ("", ":series", ":reach", ":demo", ":sharers", ":platforms"):
            pipe.memory_usage(base + suffix, samples=0)
    res = pipe.execute()
    for j, v in enumerate(chunk):
        row = [x or 0 for x in res[6 * j:6 * j + 6]]
        # a state field costs its bytes plus about 16 of listpack/dict entry
        sizes.append(sum(row) + state.get("v:" + v, 0) + 16)
        series.append(row[1])
sizes.sort()
q = lambda a, p: a[min(len(a) - 1, int(p * len(a)))]
na = len(active)
print("RESULT events=%d videos_seen=%d active_videos=%d daemon_window_entities=%d "
      "daemon_window_bytes=%d daemon_window_bytes_per_active_video=%.0f daemon_rss_mb=%.0f "
      "redis_bytes_per_active_video_mean=%.0f p50=%d p99=%d max=%d series_bytes_mean=%.0f "
      "redis_used_memory_mb=%.0f" %
      (n, len(vids), na, m["sharepulse_window_entities"], m["sharepulse_window_bytes"],
       m["sharepulse_window_bytes"] / na, rss_kb / 1024, sum(sizes) / na, q(sizes, 0.5),
       q(sizes, 0.99), sizes[-1], sum(series) / na,
       int(r.info("memory")["used_memory"]) / 2**20))
PY
