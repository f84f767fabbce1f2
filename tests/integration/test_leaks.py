"""The daemon's whole life under valgrind: start, connect, drain a stream
with bad input (dead-letter producer on) and the HTTP server up, stop.
Zero leaks, zero memory errors, and uv_loop_close() returns 0 (the daemon
exits 1 if it does not)."""
import subprocess

from conftest import wait_for


def test_start_drain_stop_cycle_has_no_leaks_under_valgrind(scenario, stack):
    scenario.loadgen("--count", 5000, "--videos", 100, "--creators", 10, "--bad", 0.02,
                     "--seed", 17)
    cmd = ["valgrind", "--leak-check=full", "--show-leak-kinds=definite,indirect",
           "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=3",
           *scenario.daemon_cmd("--drain", "--set", "http.listen=127.0.0.1:0")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "ERROR SUMMARY: 0 errors" in r.stderr
    assert "definitely lost: 0 bytes" in r.stderr or "All heap blocks were freed" in r.stderr
    assert "uv_loop_close" not in r.stderr
    assert "drain complete" in r.stderr


def test_api_requests_and_open_streams_leave_no_leaks(scenario, stack, tmp_path):
    """Every API endpoint answered, an event stream closed by its client and
    one still open at SIGTERM: the stop resumes it, and nothing leaks."""
    import hashlib
    import signal

    from conftest import free_port
    from test_api import Api, Stream

    scenario.loadgen("--count", 3000, "--videos", 50, "--creators", 5, "--seed", 3)
    tokens = tmp_path / "tokens"
    tokens.write_text("%s admin *\n%s personal c1\n" % (
        hashlib.sha256(b"adm").hexdigest(), hashlib.sha256(b"per").hexdigest()))
    port = free_port()
    log = open(scenario.log_path, "ab")
    d = subprocess.Popen(
        ["valgrind", "--leak-check=full", "--show-leak-kinds=definite,indirect",
         "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=3",
         *scenario.daemon_cmd("--set", "http.listen=127.0.0.1:%d" % port,
                              "--set", "http.tokens_file=%s" % tokens)], stderr=log)
    scenario.procs.append(d)
    wait_for(lambda: scenario.applied() == 3000, 120, "every event applied")
    api = Api(port)
    wait_for(lambda: api.get("/healthz")[0] == 200, 60, "healthz")
    closed, kept = Stream(port, "adm"), Stream(port, "per")
    assert closed.status == kept.status == 200
    closed.until(lambda k, data: k in ("update", "alert"), 60, "an update or alert")
    closed.close()
    for path in ["/", "/api/v1/videos/v0", "/api/v1/videos/v1", "/api/v1/creators/c0",
                 "/api/v1/top", "/api/v1/top?by=shares_1h&limit=100", "/api/v1/alerts",
                 "/api/v1/top?by=nope", "/api/v1/nope"]:
        for tok in ["adm", "per", "wrong"]:
            assert api.get(path, tok)[0] in (200, 400, 401, 404), path
    d.send_signal(signal.SIGTERM)
    assert d.wait(timeout=60) == 0, scenario.log_text()[-4000:]
    kept.close()
    text = scenario.log_text()
    assert "ERROR SUMMARY: 0 errors" in text
    assert "definitely lost: 0 bytes" in text or "All heap blocks were freed" in text
