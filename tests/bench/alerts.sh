#!/bin/sh
# tests/bench/alerts.sh - alert latency and the cost of a dead receiver.
#
#   tests/bench/alerts.sh [RATE] [SECONDS]     (20000 120)
#   SP_BENCH_LATENESS=500 tests/bench/alerts.sh   (allowed_lateness_ms, 2000)
#
# 1. Latency: the daemon runs live with a webhook to a local receiver while
#    the load generator produces RATE events/s for SECONDS with a burst on a
#    different quiet video every 10 s. For every momentum alert, the time
#    from the share that crossed the threshold (read back from the topic:
#    the share that brought the 5 minutes before the alert's at_ms to its
#    shares_5m; its ts is its production time) to the webhook request
#    arriving. Printed as p50/p99/max.
# 2. Dead receiver: a 2 000 000-event log with 30 bursts drained
#    (--drain) once with no webhook and once with a webhook whose port
#    refuses connections; events/s of both.
set -eu
RATE=${1:-20000}
SECS=${2:-120}
. "$(dirname "$0")/stack.sh"

/usr/bin/python3 - "$B" "$SP_REDIS_PORT" "$BUILD" "$RATE" "$SECS" <<'PY'
import json, os, socket, subprocess, sys, threading, time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from confluent_kafka import Consumer, TopicPartition

brokers, rport, build, rate, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def daemon(topic, *extra):
    return ["%s/sharepulsed" % build, "--set", "kafka.brokers=" + brokers,
            "--set", "kafka.topics=" + topic, "--set", "kafka.group=" + topic,
            "--set", "kafka.dlq_topic=", "--set", "redis.port=%d" % rport,
            "--set", "redis.prefix=%s:" % topic, "--set", "http.listen=", *extra]

def shares_by_video(topic):
    c = Consumer({"bootstrap.servers": brokers, "group.id": "bench-reader",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out, done = {}, set()
    while len(done) < len(parts):
        for m in c.consume(10000, timeout=5):
            if m.error():
                done.add(m.partition())
                continue
            e = json.loads(m.value())
            if e["type"] == "share":
                ts = e["ts"]
                if isinstance(ts, str):  # RFC 3339, as some events carry it
                    ts = round(datetime.fromisoformat(ts).timestamp() * 1000)
                out.setdefault(e["video_id"], []).append(ts)
    c.close()
    return out

# ---- 1. latency ----
arrivals = {}
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        arrivals.setdefault(self.headers["webhook-id"], (time.time() * 1000, json.loads(body)))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
port = free_port()
srv = ThreadingHTTPServer(("127.0.0.1", port), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
topic = "alat-%d" % time.time()
bursts = ["--burst=%d:%d:60:900" % (5000 + i, 10 + 10 * i) for i in range(secs // 10 - 7)]
burst_videos = {"v%d" % (5000 + i) for i in range(secs // 10 - 7)}
lateness = os.environ.get("SP_BENCH_LATENESS", "2000")
d = subprocess.Popen(daemon(topic, "--set", "webhook.b.url=http://127.0.0.1:%d/" % port,
                            "--set", "pipeline.allowed_lateness_ms=" + lateness),
                     stderr=subprocess.DEVNULL)
subprocess.run(["%s/sp-loadgen" % build, "--brokers", brokers, "--topic", topic,
                "--create-topic", "4", "--count", str(rate * secs), "--rate", str(rate),
                "--videos", "100000", "--creators", "10000", "--seed", "5", *bursts],
               check=True, stderr=subprocess.DEVNULL)
time.sleep(3)
d.terminate(); d.wait()
srv.shutdown()
shares = shares_by_video(topic)
lat, detail = [], []
for arrival, a in arrivals.values():
    if a["kind"] != "momentum" or a["video_id"] not in burst_videos:
        continue
    # The crossing share: the one that brought the 5 minutes before at_ms
    # to the alert's shares_5m, in log order (a video is on one partition).
    window = [t for t in shares[a["video_id"]] if a["at_ms"] - 300000 <= t < a["at_ms"]]
    lat.append(arrival - window[a["shares_5m"] - 1])
    detail.append("%s:%s:%.0f" % (a["video_id"], a["level"], lat[-1]))
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print("RESULT allowed_lateness_ms=%s alerts=%d crossing_share_to_webhook_ms_p50=%.0f p99=%.0f "
      "max=%.0f" % (lateness, len(lat), q(0.5), q(0.99), lat[-1]))
print("latencies (video:level:ms):", " ".join(detail))

# ---- 2. a dead receiver does not slow counting ----
topic = "adead-%d" % time.time()
bursts = ["--burst=%d:%d:60:900" % (5000 + i, 30 + 30 * i) for i in range(30)]
subprocess.run(["%s/sp-loadgen" % build, "--brokers", brokers, "--topic", topic,
                "--create-topic", "4", "--count", "2000000", "--span-hours", "1",
                "--videos", "100000", "--creators", "10000", "--seed", "6", *bursts],
               check=True, stderr=subprocess.DEVNULL)
dead = free_port()
for name, extra in (("no webhook", []),
                    ("dead webhook", ["--set", "webhook.d.url=http://127.0.0.1:%d/" % dead]),
                    ("no webhook again", [])):
    t = time.time()
    group = "%s-%d" % (topic, int(t * 1000))
    cmd = daemon(topic, "--drain", *extra)
    cmd[cmd.index("kafka.group=" + topic)] = "kafka.group=" + group
    cmd[cmd.index("redis.prefix=%s:" % topic)] = "redis.prefix=%s:" % group
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    print("RESULT drain_%s events_per_s=%.0f" % (name.replace(" ", "_"), 2000000 / (time.time() - t)))
PY
