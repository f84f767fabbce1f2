#!/bin/sh
# tests/bench/bench.sh - end-to-end throughput of sharepulsed against a raw
# librdkafka consume of the same topic, in the same run, on the local stack.
#
#   tests/bench/bench.sh [EVENTS] [PARTITIONS] [VIDEOS]   (3000000 4 100000)
#
# Loads EVENTS generated events into a fresh topic, then times
#   1. sp-rawconsume: librdkafka consume to the end, no processing;
#   2. sp-rawconsume --parse: the same plus the daemon's parse and
#      validation of each event (Jansson), nothing else: the ceiling of
#      any daemon built on that parser, on this machine;
#   3. sharepulsed --drain with pipeline.windows=false (the spine: totals
#      only): parse, validate, aggregate, apply to Redis exactly once
#      (offsets in the same atomic unit), commit;
#   4. sharepulsed --drain with everything on (windows, rates, leaderboards,
#      series, detector), and its rate against 3.
# Prints events/s of each, their ratio, the daemon's peak RSS and the
# latency of a flush (batch sent to Redis -> acknowledged); then runs the
# daemon live at SP_BENCH_RATE events/s (50000) and samples the latency from
# an event's creation to its counts in Redis.
set -eu
N=${1:-3000000}
P=${2:-4}
V=${3:-100000}
. "$(dirname "$0")/stack.sh"
TOPIC="bench-$(date +%s)"
echo "bench: loading $N events into $TOPIC ($P partitions, $V videos)"
"$BUILD/sp-loadgen" --brokers "$B" --topic "$TOPIC" --create-topic "$P" --count "$N" \
    --videos "$V" --creators $((V / 10)) --users 1000000 --seed 42 2>&1 | tail -1

echo "bench: raw librdkafka consume"
RAW=$("$BUILD/sp-rawconsume" "$B" "$TOPIC")
echo "  $RAW"
echo "bench: raw consume + the daemon's parse (Jansson), nothing else"
PARSE=$("$BUILD/sp-rawconsume" "$B" "$TOPIC" --parse)
echo "  $PARSE"

# drain NAME [--set ...]: times sharepulsed --drain of the topic into its
# own key prefix and group; prints its RESULT line, keeps its events/s.
drain() {
    NAME=$1; shift
    echo "bench: sharepulsed --drain ($NAME)"
    LOG=$(mktemp)
    /usr/bin/time -f "maxrss_kb=%M" "$BUILD/sharepulsed" --set kafka.brokers="$B" \
        --set kafka.topics="$TOPIC" --set kafka.group="$TOPIC-$NAME" --set kafka.dlq_topic= \
        --set redis.port="$SP_REDIS_PORT" --set redis.prefix="$TOPIC-$NAME:" \
        --set log.level=debug "$@" --drain 2>"$LOG"
    /usr/bin/python3 - "$LOG" "$RAW" "$N" "$PARSE" "$NAME" <<'PY'
import json, re, sys
from datetime import datetime
log, raw, n = open(sys.argv[1]).read().splitlines(), json.loads(sys.argv[2]), int(sys.argv[3])
parse, name = json.loads(sys.argv[4]), sys.argv[5]
def t(line):
    return datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()
start = next(t(l) for l in log if "pipeline: assigned" in l)
end = next(t(l) for l in log if "drain complete" in l)
lat = sorted(int(m.group(1)) for l in log for m in [re.search(r"flushed .* ms=(\d+)", l)] if m)
rss = next(int(l.split("=")[1]) for l in log if l.startswith("maxrss_kb="))
eps = n / (end - start)
pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
print("  events=%d seconds=%.2f events_per_s=%.0f" % (n, end - start, eps))
print("RESULT %s raw_events_per_s=%.0f daemon_events_per_s=%.0f ratio=%.2f peak_rss_mb=%.0f "
      "flushes=%d flush_latency_ms_p50=%d p99=%d max=%d" %
      (name, raw["msgs_per_s"], eps, eps / raw["msgs_per_s"], rss / 1024, len(lat),
       pct(0.5), pct(0.99), lat[-1]))
print("RESULT %s parse_only_events_per_s=%.0f parse_only_ratio=%.2f daemon_vs_parse_only=%.2f" %
      (name, parse["msgs_per_s"], parse["msgs_per_s"] / raw["msgs_per_s"], eps / parse["msgs_per_s"]))
open(sys.argv[1] + ".eps", "w").write("%.0f" % eps)
PY
    EPS=$(cat "$LOG.eps")
    rm -f "$LOG" "$LOG.eps"
}

# The spine alone (pipeline.windows=false), then everything on (the default).
drain totals --set pipeline.windows=false
TOTALS_EPS=$EPS
drain full
echo "RESULT windows_vs_totals=$(/usr/bin/python3 -c "print('%.2f' % ($EPS / $TOTALS_EPS))")" \
    "totals_events_per_s=$TOTALS_EPS full_events_per_s=$EPS"

# Steady state: the daemon runs live while the generator produces at a fixed
# rate; the latency from an event's creation (its ts, the wall clock at
# production) to its appearance in Redis is sampled on the hottest video,
# whose event_ms moves with every batch. Printed for all samples and for
# those after the first 5 s (the daemon and the generator start together).
RATE=${SP_BENCH_RATE:-50000}
LTOPIC="$TOPIC-live"
echo "bench: steady state at $RATE events/s for 20 s (event -> Redis latency)"
"$BUILD/sharepulsed" --set kafka.brokers="$B" --set kafka.topics="$LTOPIC" \
    --set kafka.group="$LTOPIC" --set kafka.dlq_topic= --set redis.port="$SP_REDIS_PORT" \
    --set redis.prefix="$LTOPIC:" --set http.listen= 2>/dev/null &
DPID=$!
"$BUILD/sp-loadgen" --brokers "$B" --topic "$LTOPIC" --create-topic "$P" --count $((RATE * 20)) \
    --rate "$RATE" --videos "$V" --creators $((V / 10)) --users 1000000 --seed 43 2>/dev/null &
GPID=$!
/usr/bin/python3 - "$SP_REDIS_PORT" "$LTOPIC:v:{v0}" "$GPID" <<'PY'
import os, sys, time, redis
r = redis.Redis(port=int(sys.argv[1])); key = sys.argv[2]; gen = int(sys.argv[3])
samples, last = [], None
t0 = time.time()
while time.time() < t0 + 25:
    try:
        os.kill(gen, 0)
    except OSError:
        break
    v = r.hget(key, "event_ms")
    now = time.time() * 1000
    if v is not None and v != last:
        samples.append((now / 1000 - t0, now - int(v)))
        last = v
    time.sleep(0.01)
# All samples, and those after the first 5 s: the daemon starts with the
# generator, so the first ones include joining the group.
for name, lat in (("", [l for _, l in samples]), ("after_5s_", [l for t, l in samples if t >= 5])):
    lat.sort()
    if lat:
        q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
        print("RESULT steady_state_%ssamples=%d event_to_redis_ms_p50=%.0f p99=%.0f max=%.0f" %
              (name, len(lat), q(0.5), q(0.99), lat[-1]))
PY
wait "$GPID" 2>/dev/null || true
kill "$DPID"; wait "$DPID" 2>/dev/null || true
