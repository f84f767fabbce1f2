"""Running sharepulsed as a service: the systemd notify protocol, /healthz,
/metrics, SIGHUP reloads, config errors, and the Debian package."""
import os
import re
import signal
import socket
import subprocess
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import BUILD, SRC, mismatches, wait_for


def http_port(scenario):
    wait_for(lambda: re.search(r"http: listening on \S+:(\d+)", scenario.log_text()), 20,
             "the HTTP server")
    return int(re.search(r"http: listening on \S+:(\d+)", scenario.log_text()).group(1))


def get(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def test_notify_protocol_ready_watchdog_reloading_stopping(scenario, tmp_path):
    scenario.loadgen("--count", 2000, "--videos", 50, "--creators", 5)
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    got = []

    def until(prefix):
        while True:
            msg = sock.recv(4096).decode()
            got.append(msg)
            if any(line.startswith(prefix) for line in msg.split("\n")):
                return msg

    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    d = subprocess.Popen(scenario.daemon_cmd(), env=env, stderr=open(scenario.log_path, "ab"))
    scenario.procs.append(d)
    try:
        until("READY=1")
        # Watchdog pings come from the loop while it is healthy.
        until("WATCHDOG=1")
        until("WATCHDOG=1")
        d.send_signal(signal.SIGHUP)
        msg = until("RELOADING=1")
        assert re.search(r"^MONOTONIC_USEC=\d+$", msg, re.M)
        until("READY=1")
        d.send_signal(signal.SIGTERM)
        until("STOPPING=1")
        assert d.wait(timeout=10) == 0
    finally:
        sock.close()
    # READY came only once the daemon was connected and assigned.
    log = scenario.log_text()
    assert log.index("redis: ready") < log.index("daemon: ready")
    assert "pipeline: assigned" in log


def test_healthz_follows_redis(scenario, stack):
    scenario.loadgen("--count", 1000, "--videos", 20, "--creators", 2)
    d = scenario.start_daemon("--set", "http.listen=127.0.0.1:0")
    port = http_port(scenario)
    wait_for(lambda: get(port, "/healthz")[0] == 200, 20, "healthy")
    status, ctype, body = get(port, "/healthz")
    assert ctype == "application/json" and '"status":"ok"' in body
    stack.run("stop-redis")
    try:
        wait_for(lambda: get(port, "/healthz")[0] == 503, 10, "503 with Redis down")
        status, _, body = get(port, "/healthz")
        assert '"redis":"down"' in body and "redis: not connected" in body
    finally:
        stack.run("start-redis")
    wait_for(lambda: get(port, "/healthz")[0] == 200, 20, "200 with Redis back")
    assert get(port, "/nope")[0] == 404
    d.terminate()
    assert d.wait(timeout=10) == 0


def test_metrics_are_valid_and_match_the_events(scenario, stack):
    scenario.loadgen("--count", 30000, "--videos", 400, "--creators", 40, "--bad", 0.01,
                     "--seed", 21)
    exp = scenario.expected()
    d = scenario.start_daemon("--set", "http.listen=127.0.0.1:0")
    port = http_port(scenario)
    total = exp["messages"]
    wait_for(lambda: scenario.applied() == total, 60,
             "every message applied")
    status, ctype, text = get(port, "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    fams = {f.name: f for f in text_string_to_metric_families(text)}

    def samples(name, suffix=""):
        return [s for s in fams[name].samples if s.name == name + suffix]

    by_type = {s.labels["type"]: s.value for s in samples("sharepulse_events", "_total")}
    want = {"view": 0, "like": 0, "comment": 0, "share": 0}
    for v in exp["videos"].values():
        want["view"] += v["views"]
        want["like"] += v["likes"]
        want["comment"] += v["comments"]
        want["share"] += v["shares"]
    want["follow"] = sum(c["follows"] for c in exp["creators"].values())
    assert by_type == {k: float(n) for k, n in want.items()}
    bad = {s.labels["reason"]: s.value for s in samples("sharepulse_bad_events", "_total")}
    assert bad == {k: float(n) for k, n in exp["bad"].items()}
    assert samples("sharepulse_dead_letters", "_total")[0].value == sum(exp["bad"].values())
    assert samples("sharepulse_flushed_events", "_total")[0].value == sum(want.values())
    flushes = samples("sharepulse_flushes", "_total")[0].value
    assert samples("sharepulse_flush_duration_seconds", "_count")[0].value == flushes
    lags = samples("sharepulse_consumer_lag")
    assert len(lags) == scenario.partitions and all(s.value == 0 for s in lags)
    assert samples("sharepulse_redis_up")[0].value == 1
    d.terminate()
    assert d.wait(timeout=10) == 0


def test_sighup_reloads_thresholds_and_refuses_a_bad_file(scenario, stack, tmp_path):
    conf = tmp_path / "sp.conf"
    conf.write_text("[momentum]\nmin_velocity = 5\n")
    gen = scenario.loadgen("--count", 60000, "--rate", 15000, "--videos", 500,
                           "--creators", 50, "--seed", 9, background=True)
    d = scenario.start_daemon("-c", str(conf))
    wait_for(lambda: "daemon: ready" in scenario.log_text(), 30, "ready")
    conf.write_text("[momentum]\nmin_velocity = 7.5\n")
    d.send_signal(signal.SIGHUP)
    wait_for(lambda: "reloaded [momentum], [webhook.*] and [log]: min_velocity=7.5" in scenario.log_text(),
             10, "the reload")
    conf.write_text("[momentum]\nmin_velocity = fast\n")
    d.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in scenario.log_text(), 10, "the refusal")
    assert '%s:2: [momentum] min_velocity: "fast" is not a number' % conf in scenario.log_text()
    wait_for(lambda: gen.poll() is not None, 60, "the stream")
    assert d.poll() is None, "the daemon kept running"
    d.terminate()
    assert d.wait(timeout=10) == 0
    scenario.drain()
    assert mismatches(stack.redis(), scenario.prefix, scenario.expected()) == []


BAD_CONFIGS = [
    ("[redis]\nport = 0\n", 2, "[redis] port: 0 is out of range (allowed: 1 to 65535)"),
    ("[redis]\nport = six\n", 2, '[redis] port: "six" is not an integer (allowed: 1 to 65535)'),
    ("[redis]\nprefix =\n", 2, "[redis] prefix: must not be empty"),
    ("[kafka]\ngroup =\n", 2, "[kafka] group: must not be empty"),
    ("[kafka]\nbrokerz = x\n", 2, '[kafka] unknown key "brokerz" (allowed: brokers, topics'),
    ("[kafka]\nrdkafka.fetch.min.bytes = -5\n", 2, "[kafka] rdkafka.fetch.min.bytes:"),
    ("[kafka]\nrdkafka.no.such.prop = 1\n", 2, "[kafka] rdkafka.no.such.prop: No such configuration property"),
    ("[pipeline]\nflush_interval_ms = 5\n", 2, "[pipeline] flush_interval_ms: 5 is out of range (allowed: 10 to 60000)"),
    ("[momentum]\nmin_z = -1\n", 2, "[momentum] min_z: -1 is out of range"),
    ("[momentum]\nsend_resolved = maybe\n", 2, '[momentum] send_resolved: "maybe" is not a boolean (allowed: true, false)'),
    ("[log]\nformat = xml\n", 2, '[log] format: "xml" is not allowed (allowed: text,json)'),
    ("[webhook.ops]\ntimeout_ms = 500\n", 1, "[webhook.ops] url: missing (required)"),
    ("[webhook.ops]\nurl = ftp://x\n", 2, '[webhook.ops] url: "ftp://x" (allowed: http://... or https://...)'),
    ("[webhook.a b]\nurl = http://x\n", 1, "[webhook.a b]: bad webhook name"),
    ("[webhook]\nurl = http://x\n", 1, "[webhook] needs a name (allowed: [webhook.NAME]"),
    ("[surprise]\nx = 1\n", 2, "unknown section [surprise] (allowed: kafka, redis, pipeline"),
    ("brokers = x\n", 1, 'key "brokers" outside any section'),
    ("[kafka]\nthis line has no equals sign\n", 2, "syntax error"),
]


@pytest.mark.parametrize("text,line,message", BAD_CONFIGS)
def test_each_bad_config_is_named_with_file_and_line(tmp_path, text, line, message):
    conf = tmp_path / "bad.conf"
    conf.write_text(text)
    r = subprocess.run([os.path.join(BUILD, "sharepulsed"), "-c", str(conf), "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "%s:%d: %s" % (conf, line, message) in r.stderr, r.stderr


def test_all_errors_of_a_file_are_reported_at_once(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("".join(t for t, _, _ in BAD_CONFIGS[:5]))
    r = subprocess.run([os.path.join(BUILD, "sharepulsed"), "-c", str(conf), "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "5 config error(s)" in r.stderr


def test_environment_names_the_default_config(tmp_path):
    conf = tmp_path / "env.conf"
    conf.write_text("[redis]\npassword = hunter2\nprefix = envtest:\n")
    r = subprocess.run([os.path.join(BUILD, "sharepulsed"), "--dump-config"],
                       capture_output=True, text=True,
                       env=dict(os.environ, SHAREPULSE_CONFIG=str(conf)))
    assert r.returncode == 0
    assert "prefix = envtest:" in r.stdout
    assert "hunter2" not in r.stdout and "password = ********" in r.stdout


def test_debian_package_installs_a_working_daemon(tmp_path):
    r = subprocess.run([os.path.join(SRC, "deploy", "package.sh")], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    deb = r.stdout.strip().splitlines()[-1]
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", deb, str(root)], check=True)
    info = subprocess.run(["dpkg-deb", "-I", deb], capture_output=True, text=True).stdout
    assert "librdkafka1" in info and "libuv1" in info
    for f in ["usr/bin/sharepulsed", "etc/sharepulse/sharepulse.conf",
              "usr/lib/systemd/system/sharepulsed.service",
              "usr/lib/sysusers.d/sharepulse.conf", "usr/share/man/man8/sharepulsed.8"]:
        assert (root / f).exists(), f
    r = subprocess.run([str(root / "usr/bin/sharepulsed"), "-c",
                        str(root / "etc/sharepulse/sharepulse.conf"), "--check-config"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    unit = (root / "usr/lib/systemd/system/sharepulsed.service").read_text()
    assert "ExecStart=/usr/bin/sharepulsed -c /etc/sharepulse/sharepulse.conf" in unit
    assert "Type=notify" in unit
    sec = subprocess.run(["systemd-analyze", "security", "--offline=true",
                          str(root / "usr/lib/systemd/system/sharepulsed.service")],
                         capture_output=True, text=True)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", sec.stdout + sec.stderr)
    assert m and float(m.group(1)) <= 2.0, sec.stdout[-500:]
