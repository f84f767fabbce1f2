#!/bin/sh
# deploy/quickstart.sh - from a fresh Debian 12 checkout to live counters:
# installs the packages, fetches Kafka, builds, starts a local Kafka broker
# and redis-server, feeds a realistic demo event stream (sp-loadgen, with a
# viral burst every few minutes and a few malformed messages) and runs
# sharepulsed in the foreground. Ctrl-C stops the daemon and the stream;
# `deploy/stack.sh stop` stops Kafka and Redis.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

./deploy/install-deps.sh
./deploy/stack.sh fetch
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build
./deploy/stack.sh start >/dev/null

KPORT=${SP_KAFKA_PORT:-19092}
RPORT=${SP_REDIS_PORT:-16379}
CONF="$ROOT/.stack/quickstart.conf"
cat > "$CONF" <<CONFEOF
[kafka]
brokers = 127.0.0.1:$KPORT
topics = engagement-events
group = sharepulse-demo
dlq_topic = engagement-events-dlq
[redis]
port = $RPORT
[http]
tokens_file = $ROOT/.stack/quickstart.tokens
CONFEOF

# A dashboard token for this machine (docs/api.md): made once, kept in .stack/.
TOKEN_FILE="$ROOT/.stack/demo-token"
[ -s "$TOKEN_FILE" ] || head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$TOKEN_FILE"
TOKEN=$(cat "$TOKEN_FILE")
echo "$(printf %s "$TOKEN" | sha256sum | cut -d' ' -f1) admin *" > "$ROOT/.stack/quickstart.tokens"

# The demo stream: 2000 events/s over 5000 videos, video v42 goes viral
# a minute in, v7 four minutes in; 0.1% malformed messages.
./build/sp-loadgen --brokers "127.0.0.1:$KPORT" --topic engagement-events \
    --create-topic 4 --count 0 --rate 2000 --videos 5000 --creators 500 \
    --bad 0.001 --burst 42:60:120:6000 --burst 7:240:60:4000 2>"$ROOT/.stack/loadgen.log" &
GEN=$!
trap 'kill $GEN 2>/dev/null || true' EXIT INT TERM

cat <<EOF2

  sharepulse is starting on the local stack.

  The live dashboard: open http://127.0.0.1:9321/ and sign in with the token
      $TOKEN
  (an admin token, in .stack/demo-token). The API it reads:
    curl -s -H "Authorization: Bearer $TOKEN" '127.0.0.1:9321/api/v1/top?limit=3'
    curl -s -H "Authorization: Bearer $TOKEN" 127.0.0.1:9321/api/v1/videos/v42
    curl -sN -H "Authorization: Bearer $TOKEN" 127.0.0.1:9321/api/v1/events

  In another terminal, look at what it writes in Redis:

    redis-cli -p $RPORT hgetall 'sp:v:{v0}'           # the most popular video
    redis-cli -p $RPORT hgetall 'sp:v:{v42}'          # goes viral after a minute
    redis-cli -p $RPORT hgetall 'sp:c:{c0}'           # its creator's rollup
    redis-cli -p $RPORT pfcount 'sp:v:{v0}:reach'     # distinct viewers
    redis-cli -p $RPORT lrange 'sp:v:{v0}:sharers' 0 2  # newest public sharers
    redis-cli -p $RPORT zrevrange sp:top:velocity 0 4 withscores   # share velocity leaders
    redis-cli -p $RPORT hmget 'sp:v:{v42}' shares_5m velocity baseline level
    redis-cli -p $RPORT xrevrange sp:alerts + - count 2   # momentum alerts
    redis-cli -p $RPORT xrevrange 'sp:v:{v0}:series' + - count 3  # last minutes
    redis-cli -p $RPORT hgetall 'sp:offsets:{sharepulse-demo}'
    kcat -b 127.0.0.1:$KPORT -C -t engagement-events-dlq -o -5 -e -f '%h  %s\n'
    curl -s 127.0.0.1:9321/healthz; curl -s 127.0.0.1:9321/metrics | grep events_total

  Ctrl-C stops the daemon and the stream; deploy/stack.sh stop stops Kafka and Redis.

EOF2
./build/sharepulsed -c "$CONF"
