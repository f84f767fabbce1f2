#!/bin/sh
# tests/bench/api.sh - the dashboard API under load while the daemon counts
# at full speed, and what serving it costs the counting, in the same run.
#
#   tests/bench/api.sh [EVENTS] [PARTITIONS] [VIDEOS]   (3000000 4 100000)
#
# Loads EVENTS generated events into a fresh topic, then drains it three
# times with sharepulsed --drain (each with its own group and key prefix,
# so each counts every event from scratch):
#   1. no API traffic: the counting throughput to compare with;
#   2. wrk on GET /api/v1/videos/v0 (an admin token) during the drain;
#   3. wrk on GET /api/v1/top?by=velocity&limit=20 during the drain.
# wrk (1 thread, SP_BENCH_CONNS connections, 8 by default) starts once v0 is
# in Redis and runs for 75 % of run 1's time, so it stops before the drain
# it loads does. Then, for the API's own capacity, wrk on each endpoint for
# 10 s against a daemon that has nothing left to count. Prints the API's
# requests/s and latency, and each drain's events/s and loss against run 1.
set -eu
N=${1:-3000000}
P=${2:-4}
V=${3:-100000}
CONNS=${SP_BENCH_CONNS:-8}
. "$(dirname "$0")/stack.sh"
command -v wrk >/dev/null || { echo "api.sh: wrk missing: run deploy/install-deps.sh"; exit 1; }
TOPIC="apibench-$(date +%s)"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
TOKEN=bench-admin-token
echo "$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1) admin *" > "$WORK/tokens"
PORT=${SP_BENCH_HTTP_PORT:-29321}

echo "api: loading $N events into $TOPIC ($P partitions, $V videos)"
"$BUILD/sp-loadgen" --brokers "$B" --topic "$TOPIC" --create-topic "$P" --count "$N" \
    --videos "$V" --creators $((V / 10)) --users 1000000 --seed 42 2>&1 | tail -1

# drain NAME: drains the topic as group NAME with the API on; prints seconds.
drain() {
    "$BUILD/sharepulsed" --set kafka.brokers="$B" --set kafka.topics="$TOPIC" \
        --set kafka.group="$1" --set kafka.dlq_topic= --set redis.port="$SP_REDIS_PORT" \
        --set redis.prefix="$1:" --set http.listen="127.0.0.1:$PORT" \
        --set http.tokens_file="$WORK/tokens" --drain 2>"$WORK/$1.log"
    /usr/bin/python3 - "$WORK/$1.log" <<'PY'
import sys
from datetime import datetime
log = open(sys.argv[1]).read().splitlines()
t = lambda l: datetime.strptime(l[:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()
start = next(t(l) for l in log if "pipeline: assigned" in l)
end = next(t(l) for l in log if "drain complete" in l)
print("%.3f" % (end - start))
PY
}

# loaded NAME PATH SECONDS: a drain with wrk on PATH; prints its seconds.
loaded() {
    drain "$1" > "$WORK/$1.secs" &
    DR=$!
    # wrk starts once v0 is in Redis (the daemon is up and counting).
    until curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$PORT/api/v1/videos/v0"; do
        kill -0 "$DR" 2>/dev/null || break
        sleep 0.05
    done
    wrk -t1 -c"$CONNS" -d"${3}s" --latency -H "Authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$PORT$2" > "$WORK/$1.wrk"
    wait "$DR"
    cat "$WORK/$1.secs"
}

echo "api: 1. drain, no API traffic"
S0=$(drain "$TOPIC-idle")
WRK_S=$(/usr/bin/python3 -c "print(max(3, int($S0 * 0.75)))")
echo "api: 2. drain with wrk on /api/v1/videos/v0 for ${WRK_S} s"
S1=$(loaded "$TOPIC-video" "/api/v1/videos/v0" "$WRK_S")
echo "api: 3. drain with wrk on /api/v1/top for ${WRK_S} s"
S2=$(loaded "$TOPIC-top" "/api/v1/top?by=velocity&limit=20" "$WRK_S")

echo "api: 4. the API alone: a daemon with nothing left to count"
"$BUILD/sharepulsed" --set kafka.brokers="$B" --set kafka.topics="$TOPIC" \
    --set kafka.group="$TOPIC-idle" --set kafka.dlq_topic= --set redis.port="$SP_REDIS_PORT" \
    --set redis.prefix="$TOPIC-idle:" --set http.listen="127.0.0.1:$PORT" \
    --set http.tokens_file="$WORK/tokens" 2>"$WORK/alone.log" &
DPID=$!
until curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$PORT/api/v1/videos/v0"; do sleep 0.05; done
for ep in "videos:/api/v1/videos/v0" "top:/api/v1/top?by=velocity&limit=20"; do
    wrk -t1 -c"$CONNS" -d10s --latency -H "Authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$PORT${ep#*:}" > "$WORK/alone-${ep%%:*}.wrk"
done
kill "$DPID"; wait "$DPID" 2>/dev/null || true

/usr/bin/python3 - "$N" "$S0" "$S1" "$S2" "$WORK/$TOPIC-video.wrk" "$WORK/$TOPIC-top.wrk" \
    "$WORK/alone-videos.wrk" "$WORK/alone-top.wrk" <<'PY'
import re, sys
n, s0, s1, s2 = int(sys.argv[1]), *map(float, sys.argv[2:5])
def wrk(path):
    t = open(path).read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    errs = re.search(r"Socket errors: (.*)", t)
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", t, re.M))
    return rps, int(bad.group(1)) if bad else 0, errs.group(1) if errs else "none", lat
for name, s, path in [("videos", s1, sys.argv[5]), ("top", s2, sys.argv[6])]:
    rps, bad, errs, lat = wrk(path)
    print("RESULT endpoint=%s api_requests_per_s=%.0f latency_p50=%s p99=%s non_2xx=%d "
          "socket_errors=%s daemon_events_per_s=%.0f idle_events_per_s=%.0f loss=%.1f%%" %
          (name, rps, lat.get("50"), lat.get("99"), bad, errs, n / s, n / s0,
           100 * (1 - s0 / s)))
for name, path in [("videos", sys.argv[7]), ("top", sys.argv[8])]:
    rps, bad, errs, lat = wrk(path)
    print("RESULT endpoint=%s alone api_requests_per_s=%.0f latency_p50=%s p99=%s non_2xx=%d "
          "socket_errors=%s" % (name, rps, lat.get("50"), lat.get("99"), bad, errs))
PY
