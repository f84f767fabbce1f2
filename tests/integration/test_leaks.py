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
