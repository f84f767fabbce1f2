"""Crash test: the daemon is SIGKILLed at random moments while a stream of
500 000 events is produced and consumed, and restarted each time; after the
last run drains, every total equals the ground truth exactly."""
import random
import signal

from conftest import mismatches, wait_for


def test_sigkill_at_random_moments_loses_and_doubles_nothing(scenario, stack):
    rnd = random.Random(2026)
    gen = scenario.loadgen("--count", 500000, "--rate", 20000, "--videos", 5000,
                           "--creators", 400, "--users", 20000, "--bad", 0.002,
                           "--seed", 5, background=True)
    kills = 0
    progress = []
    while kills < 6:
        # A restarted member takes its partitions back at once (static
        # membership), as a systemd-restarted daemon would with it set.
        d = scenario.start_daemon("--set", "kafka.rdkafka.group.instance.id=crash",
                                  "--set", "kafka.rdkafka.session.timeout.ms=6000")
        before = scenario.applied()
        # Let it apply at least one batch, then kill it at a random moment.
        wait_for(lambda: scenario.applied() > before, 30,
                 "progress after restart %d" % kills)
        assert gen.poll() is None, "the stream ended before the kills"
        try:
            d.wait(timeout=rnd.uniform(0.05, 1.2))
        except Exception:
            pass
        assert d.poll() is None, "the daemon died on its own"
        d.send_signal(signal.SIGKILL)
        d.wait()
        kills += 1
        progress.append(scenario.applied())
    wait_for(lambda: gen.poll() is not None, 300, "the load generator")
    assert gen.returncode == 0
    scenario.drain()
    exp = scenario.expected()
    assert mismatches(stack.redis(), scenario.prefix, exp) == []
    assert kills >= 5
    # The kills happened while the log was still being consumed.
    assert progress[0] < exp["messages"]
