#!/bin/sh
# tests/bench/floor.sh - what the rolling windows cost Redis, measured on the
# daemon's own batches (docs/benchmarks.md, "Windows against the spine").
#
#   tests/bench/floor.sh [EVENTS] [PARTITIONS] [VIDEOS] [CAPTURE_MB]
#                        (1000000 4 100000 60)
#
# Loads EVENTS generated events, drains them through a recording proxy that
# keeps the first CAPTURE_MB the daemon sends to Redis, then replays the
# last apply batch of those (after the ones before it) in three forms and
# prints Redis' time in the script for each (tests/bench/replay.py): the batch as sent, its
# totals alone (pipeline.windows=false), and the floor of any per-flush
# window design (one HSET of the changed window fields and the state).
set -eu
N=${1:-1000000}
P=${2:-4}
V=${3:-100000}
MB=${4:-60}
. "$(dirname "$0")/stack.sh"
TOPIC="floor-$(date +%s)"
PROXY_PORT=$((SP_REDIS_PORT + 1))
# SP_REPLAY_CAPTURE=FILE keeps the capture for replay.py measure.
CAP=${SP_REPLAY_CAPTURE:-$(mktemp)}
"$BUILD/sp-loadgen" --brokers "$B" --topic "$TOPIC" --create-topic "$P" --count "$N" \
    --videos "$V" --creators $((V / 10)) --users 1000000 --seed 42 2>&1 | tail -1
/usr/bin/python3 tests/bench/replay.py proxy "$PROXY_PORT" "$SP_REDIS_PORT" "$CAP" \
    $((MB * 1048576)) &
PROXY=$!
trap 'kill $PROXY 2>/dev/null; [ -n "${SP_REPLAY_CAPTURE:-}" ] || rm -f "$CAP"' EXIT
/usr/bin/python3 -c "
import socket, sys, time
for _ in range(100):
    try: socket.create_connection(('127.0.0.1', $PROXY_PORT)).close(); sys.exit(0)
    except OSError: time.sleep(0.05)
sys.exit('floor: the proxy did not start')"
echo "floor: draining through the recording proxy"
"$BUILD/sharepulsed" --set kafka.brokers="$B" --set kafka.topics="$TOPIC" \
    --set kafka.group="$TOPIC" --set kafka.dlq_topic= --set http.listen= \
    --set redis.port="$PROXY_PORT" --set redis.prefix="$TOPIC:" --drain 2>/dev/null
kill $PROXY
echo "floor: replaying (Redis time in the apply script, per form)"
/usr/bin/python3 tests/bench/replay.py measure "$CAP" "$SP_REDIS_PORT" lib/apply_script.c ${SP_REPLAY_REPEATS:-9}
