#!/bin/sh
# deploy/stack.sh - a local stack for sharepulse: a real single-node Apache
# Kafka 4.x broker (KRaft, jars from Maven Central, Java 17) and a real
# redis-server, on loopback ports, data under .stack/ in the checkout.
#
#   deploy/stack.sh start     start both (idempotent), wait until they answer
#   deploy/stack.sh stop      stop both
#   deploy/stack.sh status    say what runs
#   deploy/stack.sh fetch     only fetch the Kafka jars
#   deploy/stack.sh start-redis|stop-redis|start-kafka|stop-kafka  one part
#
# Environment: SP_STACK_DIR (default .stack/default), SP_KAFKA_PORT (19092),
# SP_KAFKA_CONTROLLER_PORT (19093), SP_REDIS_PORT (16379).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LIBS="$ROOT/.stack/kafka-libs"
DIR=${SP_STACK_DIR:-$ROOT/.stack/default}
KPORT=${SP_KAFKA_PORT:-19092}
CPORT=${SP_KAFKA_CONTROLLER_PORT:-19093}
RPORT=${SP_REDIS_PORT:-16379}

log() { echo "stack: $*" >&2; }

fetch() {
    if [ -f "$LIBS/.complete" ]; then return 0; fi
    command -v mvn >/dev/null || { log "maven missing: run deploy/install-deps.sh"; exit 1; }
    log "fetching Apache Kafka jars from Maven Central into $LIBS"
    mkdir -p "$LIBS"
    (cd "$ROOT/deploy/kafka" && mvn -q -B dependency:copy-dependencies \
        -DoutputDirectory="$LIBS" -DincludeScope=runtime)
    touch "$LIBS/.complete"
}

kafka_up() {
    kcat -b "127.0.0.1:$KPORT" -L -m 2 >/dev/null 2>&1
}

redis_up() {
    [ "$(redis-cli -h 127.0.0.1 -p "$RPORT" ping 2>/dev/null)" = "PONG" ]
}

pid_alive() {
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

start_kafka() {
    if pid_alive "$DIR/kafka.pid" && kafka_up; then
        log "kafka already up on 127.0.0.1:$KPORT"; return 0
    fi
    fetch
    mkdir -p "$DIR/kafka-data"
    cat > "$DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$KPORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KPORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DIR/kafka-data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=168
PROPS
    cat > "$DIR/log4j2.properties" <<PROPS
rootLogger.level=WARN
rootLogger.appenderRef.f.ref=F
appender.f.type=File
appender.f.name=F
appender.f.fileName=$DIR/kafka-server.log
appender.f.layout.type=PatternLayout
appender.f.layout.pattern=[%d] %p %m (%c)%n
PROPS
    JAVA_OPTS="-Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true -Dlog4j2.configurationFile=$DIR/log4j2.properties"
    if [ ! -f "$DIR/kafka-data/meta.properties" ]; then
        CID=$(java $JAVA_OPTS -cp "$LIBS/*" kafka.tools.StorageTool random-uuid)
        java $JAVA_OPTS -cp "$LIBS/*" kafka.tools.StorageTool format --standalone \
            -t "$CID" -c "$DIR/server.properties" >"$DIR/kafka-format.log" 2>&1 ||
            { cat "$DIR/kafka-format.log" >&2; exit 1; }
    fi
    log "starting kafka on 127.0.0.1:$KPORT"
    # shellcheck disable=SC2086
    nohup java $JAVA_OPTS -cp "$LIBS/*" kafka.Kafka "$DIR/server.properties" \
        >"$DIR/kafka.out" 2>&1 &
    echo $! > "$DIR/kafka.pid"
    i=0
    until kafka_up; do
        i=$((i + 1))
        if ! pid_alive "$DIR/kafka.pid"; then
            log "kafka exited; see $DIR/kafka.out and $DIR/kafka-server.log"
            tail -20 "$DIR/kafka.out" >&2; exit 1
        fi
        [ $i -lt 240 ] || { log "kafka did not answer within 120 s"; exit 1; }
        sleep 0.5
    done
    log "kafka up (pid $(cat "$DIR/kafka.pid"))"
}

start_redis() {
    if redis_up; then log "redis already up on 127.0.0.1:$RPORT"; return 0; fi
    mkdir -p "$DIR/redis"
    log "starting redis on 127.0.0.1:$RPORT"
    redis-server --bind 127.0.0.1 --port "$RPORT" --dir "$DIR/redis" \
        --appendonly yes --appendfsync everysec --save "" \
        --stream-node-max-bytes 1024 \
        --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
    i=0
    until redis_up; do
        i=$((i + 1))
        [ $i -lt 100 ] || { log "redis did not answer"; cat "$DIR/redis.log" >&2; exit 1; }
        sleep 0.1
    done
    log "redis up"
}

stop_pid() {
    f=$1
    pid_alive "$f" || { rm -f "$f"; return 0; }
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 300 ] || { kill -9 "$pid" 2>/dev/null || true; break; }
        sleep 0.1
    done
    rm -f "$f"
}

case "${1:-}" in
    start) mkdir -p "$DIR"; start_redis; start_kafka
           echo "SP_KAFKA_BROKERS=127.0.0.1:$KPORT SP_REDIS_PORT=$RPORT" ;;
    stop) stop_pid "$DIR/kafka.pid"; stop_pid "$DIR/redis.pid"; log "stopped" ;;
    status)
        kafka_up && echo "kafka: up on 127.0.0.1:$KPORT" || echo "kafka: down"
        redis_up && echo "redis: up on 127.0.0.1:$RPORT" || echo "redis: down" ;;
    fetch) fetch ;;
    start-redis) mkdir -p "$DIR"; start_redis ;;
    stop-redis) stop_pid "$DIR/redis.pid" ;;
    start-kafka) mkdir -p "$DIR"; start_kafka ;;
    stop-kafka) stop_pid "$DIR/kafka.pid" ;;
    *) echo "usage: $0 start|stop|status|fetch|start-redis|stop-redis|start-kafka|stop-kafka" >&2
       exit 2 ;;
esac
