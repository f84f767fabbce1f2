# tests/bench/stack.sh - sourced by the benchmark scripts: the benchmarks'
# own local stack (ports 29092/29093 Kafka, 26379 Redis unless set, data in
# .stack/bench), started if needed, with an empty Redis so that earlier
# runs' keys and AOF rewrites do not weigh on this one. Sets ROOT, B (the
# bootstrap servers) and BUILD, and leaves the shell in ROOT.
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export SP_STACK_DIR="$ROOT/.stack/bench" SP_KAFKA_PORT=${SP_KAFKA_PORT:-29092}
export SP_KAFKA_CONTROLLER_PORT=${SP_KAFKA_CONTROLLER_PORT:-29093}
export SP_REDIS_PORT=${SP_REDIS_PORT:-26379}
B="127.0.0.1:$SP_KAFKA_PORT"
BUILD=${SP_BUILD_DIR:-$ROOT/build}
./deploy/stack.sh start >/dev/null
redis-cli -p "$SP_REDIS_PORT" flushall >/dev/null
redis-cli -p "$SP_REDIS_PORT" bgrewriteaof >/dev/null
