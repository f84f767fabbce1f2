"""The live page in a real browser (SPEC 7): Debian's Chromium, driven by
npm's playwright-core (installed here from tests/browser/package-lock.json,
no browser download), opens GET /, signs in with a token while a steady
stream runs; then a burst of shares for one video is produced, and within
seconds that video leads the leaderboard and its alert is in the feed. The
screenshot of that moment is saved in the build directory."""
import hashlib
import os
import shutil
import subprocess
import time

from conftest import BUILD, SRC, free_port, wait_for
from test_windows import produce

BROWSER_DIR = os.path.join(SRC, "tests", "browser")


def ensure_playwright():
    assert shutil.which("node") and os.path.exists("/usr/bin/chromium"), \
        "node or chromium missing: run deploy/install-deps.sh"
    if not os.path.exists(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=BROWSER_DIR, check=True)


def test_page_shows_a_burst_at_the_top_and_its_alert(scenario, stack, tmp_path):
    ensure_playwright()
    tokens = tmp_path / "tokens"
    tokens.write_text("%s admin *\n" % hashlib.sha256(b"dash-admin").hexdigest())
    port = free_port()
    # A steady stream, so the leaderboard has rows before the burst.
    gen = scenario.loadgen("--count", 0, "--rate", 200, "--videos", 300, "--creators", 30,
                           "--seed", 5, background=True)
    scenario.start_daemon("--set", "http.listen=127.0.0.1:%d" % port,
                          "--set", "http.tokens_file=%s" % tokens)
    wait_for(lambda: scenario.applied() > 500, 60, "the stream to be counted")
    shot = os.path.join(BUILD, "dashboard.png")
    node = subprocess.Popen(
        ["node", os.path.join(BROWSER_DIR, "dashboard.mjs"), "--url",
         "http://127.0.0.1:%d/" % port, "--token", "dash-admin", "--video", "vburst",
         "--screenshot", shot, "--timeout-ms", "30000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    scenario.procs.append(node)
    line = node.stdout.readline().strip()
    assert line == "ready", (line, node.stderr.read() if node.poll() is not None else "")
    # The burst: 3000 shares of one video over the last 5 seconds.
    now = int(time.time() * 1000)
    produce(stack, scenario.topic, [
        {"type": "share", "video_id": "vburst", "creator_id": "c7", "share_type": "duet",
         "user_id": "fan%d" % i, "ts": now - 5000 + i} for i in range(3000)], create=False)
    out, err = node.communicate(timeout=60)
    assert node.returncode == 0, err
    assert out.strip().startswith("ok "), out
    seconds = int(out.split()[1]) / 1000
    print("the page showed the burst on top with its alert %.1f s after the page was"
          " ready (the burst was produced right then)" % seconds)
    assert os.path.getsize(shot) > 10000
    assert gen.poll() is None, "the steady stream stopped early"
