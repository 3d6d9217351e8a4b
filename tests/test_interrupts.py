"""`interrupts_deferred`: a signal inside the block waits for the block to finish."""

from __future__ import annotations

import os
import signal

import pytest

from vinterp.interrupts import Interrupted, interrupts_deferred, signals_as_interrupts


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_is_held_until_the_block_ends(sig):
    done = []
    with signals_as_interrupts(), pytest.raises(Interrupted) as e:
        with interrupts_deferred():
            os.kill(os.getpid(), sig)
            done.append("rest of the step")
    assert done == ["rest of the step"]
    assert e.value.signum == sig and e.value.exit_code == 128 + sig


def test_a_second_signal_raises_at_once_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    done = []
    with pytest.raises(Interrupted), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("never")
    assert done == [] and signal.getsignal(signal.SIGTERM) is before


def test_latched_signal_waits_for_a_check_and_a_second_one_raises_at_once():
    from vinterp.interrupts import Interrupted, latched_interrupts

    with latched_interrupts() as latch:
        os.kill(os.getpid(), signal.SIGTERM)
        assert latch.signum == signal.SIGTERM  # remembered, not raised
        with pytest.raises(Interrupted) as first:
            latch.check()
        assert first.value.signum == signal.SIGTERM
        with pytest.raises(Interrupted):  # the second signal: at once
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10**6):
                pass
