"""Crash test: the daemon is SIGKILLed at random moments while a stream of
500 000 events is produced and consumed, and restarted each time; after the
last run drains, every total equals the ground truth exactly."""
import random

from conftest import mismatches, wait_for


def test_sigkill_at_random_moments_loses_and_doubles_nothing(scenario, stack):
    rnd = random.Random(2026)
    gen = scenario.loadgen("--count", 500000, "--rate", 20000, "--videos", 5000,
                           "--creators", 400, "--users", 20000, "--bad", 0.002,
                           "--seed", 5, background=True)
    progress, _ = scenario.kill_repeatedly(gen, 6, rnd, "crash")
    wait_for(lambda: gen.poll() is not None, 300, "the load generator")
    assert gen.returncode == 0
    scenario.drain()
    exp = scenario.expected()
    assert mismatches(stack.redis(), scenario.prefix, exp) == []
    assert len(progress) == 6
    # The kills happened while the log was still being consumed.
    assert progress[0] < exp["messages"]
