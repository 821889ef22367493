"""DeliveryState: greylist triplets and per-client message windows, on explicit times; and
the pure greylist step every memory (this one, PostgreSQL's) applies."""

from __future__ import annotations

import pytest

from sinkd.core.delivery_state import (
    DeliveryState,
    GreylistDecision,
    GreylistEntry,
    greylist_step,
)

KEY = ("192.0.2.0/24", "alice@sender.example", "bob@corp.example")
T0 = 1_700_000_000.0


def attempt(state: DeliveryState, now: float, key: tuple[str, str, str] = KEY) -> GreylistDecision:
    return state.greylist_now(key, now, delay=300, retry_window=14400, remember=3600)


# --- greylisting -------------------------------------------------------------------------------


def test_the_first_attempt_of_a_triplet_is_recorded_and_deferred_for_the_whole_delay() -> None:
    decision = attempt(DeliveryState(), T0)
    assert decision == GreylistDecision(
        passed=False, first_seen=T0, retry_after=300, attempts=1, delay=300
    )


def test_a_retry_before_the_delay_is_deferred_again_with_the_time_left() -> None:
    state = DeliveryState()
    attempt(state, T0)
    decision = attempt(state, T0 + 120)
    assert not decision.passed
    assert decision.first_seen == T0
    assert decision.retry_after == 180
    assert decision.attempts == 2


def test_a_retry_after_the_delay_within_the_window_passes_and_says_how_long_it_waited() -> None:
    state = DeliveryState()
    attempt(state, T0)
    attempt(state, T0 + 60)
    decision = attempt(state, T0 + 301)
    assert decision.passed
    assert not decision.remembered
    assert decision.first_seen == T0
    assert decision.retry_after == 0
    assert decision.waited == 301
    assert decision.attempts == 3


def test_a_passed_triplet_is_remembered_and_later_mail_passes_at_once() -> None:
    state = DeliveryState()
    attempt(state, T0)
    attempt(state, T0 + 300)
    later = attempt(state, T0 + 3000)
    assert later.passed
    assert later.remembered
    assert later.waited == 300
    assert later.first_seen == T0


def test_remembering_counts_from_the_last_time_the_triplet_was_seen() -> None:
    state = DeliveryState()
    attempt(state, T0)
    attempt(state, T0 + 300)  # passes; remembered for 3600 s from now on
    assert attempt(state, T0 + 300 + 3500).remembered  # seen again: 3600 s more
    assert attempt(state, T0 + 300 + 3500 + 3500).remembered


def test_a_triplet_not_seen_for_longer_than_remember_starts_over() -> None:
    state = DeliveryState()
    attempt(state, T0)
    attempt(state, T0 + 300)
    decision = attempt(state, T0 + 300 + 3601)
    assert not decision.passed
    assert decision.first_seen == T0 + 300 + 3601
    assert decision.retry_after == 300
    assert decision.attempts == 1


def test_a_retry_after_the_retry_window_starts_over_as_a_first_attempt() -> None:
    state = DeliveryState()
    attempt(state, T0)
    decision = attempt(state, T0 + 14401)
    assert not decision.passed
    assert decision.first_seen == T0 + 14401
    assert decision.retry_after == 300
    assert decision.attempts == 1
    assert attempt(state, T0 + 14401 + 300).passed


def test_a_retry_exactly_at_the_delay_and_at_the_window_end_passes() -> None:
    early, late = DeliveryState(), DeliveryState()
    attempt(early, T0)
    attempt(late, T0)
    assert attempt(early, T0 + 300).passed
    assert attempt(late, T0 + 14400).passed


def test_triplets_are_independent() -> None:
    state = DeliveryState()
    attempt(state, T0)
    other = ("192.0.2.0/24", "alice@sender.example", "carol@corp.example")
    assert attempt(state, T0 + 300).passed
    decision = attempt(state, T0 + 300, other)
    assert not decision.passed
    assert decision.attempts == 1


def test_the_delay_override_replaces_the_filters_delay_and_is_reported() -> None:
    state = DeliveryState(delay_override=2)
    first = attempt(state, T0)
    assert (first.passed, first.retry_after, first.delay) == (False, 2, 2)
    assert not attempt(state, T0 + 1).passed
    assert attempt(state, T0 + 2).passed


def test_with_a_delay_of_zero_the_first_attempt_is_still_deferred_and_any_retry_passes() -> None:
    state = DeliveryState(delay_override=0)
    first = attempt(state, T0)
    assert not first.passed
    assert first.retry_after == 0
    assert attempt(state, T0).passed


def test_an_override_longer_than_the_retry_window_widens_the_window() -> None:
    state = DeliveryState(delay_override=20000)
    attempt(state, T0)
    assert not attempt(state, T0 + 14401).passed  # not restarted: still waiting
    assert attempt(state, T0 + 20000).passed


def test_a_clock_that_goes_backwards_defers_instead_of_passing() -> None:
    state = DeliveryState()
    attempt(state, T0)
    decision = attempt(state, T0 - 50)
    assert not decision.passed
    assert decision.retry_after == 300


def test_a_negative_delay_override_is_refused() -> None:
    with pytest.raises(ValueError, match="delay_override"):
        DeliveryState(delay_override=-1)


# --- message windows ---------------------------------------------------------------------------


def test_note_message_counts_the_clients_messages_in_the_sliding_window_including_this_one() -> (
    None
):
    state = DeliveryState()
    assert [state.note_message_now("192.0.2.7", T0 + i) for i in range(3)] == [1, 2, 3]
    assert state.note_message_now("198.51.100.1", T0 + 3) == 1  # another client
    assert state.note_message_now("192.0.2.7", T0 + 59) == 4
    # (T0 + 60 - 60) falls out of the window (now - window, now]: T0 itself no longer counts.
    assert state.note_message_now("192.0.2.7", T0 + 60) == 4
    assert state.note_message_now("192.0.2.7", T0 + 200) == 1


def test_note_message_scopes_keep_the_counters_of_different_filters_apart() -> None:
    state = DeliveryState()
    assert state.note_message_now("192.0.2.7", T0, scope="a") == 1
    assert state.note_message_now("192.0.2.7", T0, scope="a") == 2
    assert state.note_message_now("192.0.2.7", T0, scope="b") == 1


def test_note_message_honours_its_window() -> None:
    state = DeliveryState()
    state.note_message_now("192.0.2.7", T0, window=10)
    assert state.note_message_now("192.0.2.7", T0 + 9, window=10) == 2
    assert state.note_message_now("192.0.2.7", T0 + 20, window=10) == 1


# --- bounded memory ----------------------------------------------------------------------------


def test_expired_triplets_and_idle_clients_are_swept_as_time_passes() -> None:
    state = DeliveryState()
    for n in range(50):
        attempt(state, T0, (f"192.0.2.{n}/32", "a@b.example", "c@d.example"))
        state.note_message_now(f"192.0.2.{n}", T0)
    assert len(state) == 100
    attempt(state, T0 + 14401, KEY)  # a sweep runs: pending triplets and windows have expired
    assert len(state) == 1


def test_a_remembered_triplet_survives_sweeps_until_it_is_forgotten() -> None:
    state = DeliveryState()
    attempt(state, T0)
    attempt(state, T0 + 300)
    state.sweep(T0 + 3000)
    assert len(state) == 1
    state.sweep(T0 + 300 + 3601)
    assert len(state) == 0


def test_past_max_entries_the_least_recently_used_entries_are_dropped() -> None:
    state = DeliveryState(max_entries=3)
    keys = [(f"192.0.2.{n}/32", "a@b.example", "c@d.example") for n in range(4)]
    for key in keys[:3]:
        attempt(state, T0, key)
    attempt(state, T0 + 1, keys[0])  # keys[0] used again: keys[1] is now the oldest
    attempt(state, T0 + 2, keys[3])
    assert len(state) == 3
    assert attempt(state, T0 + 300, keys[0]).passed  # still known
    assert attempt(state, T0 + 300, keys[1]).attempts == 1  # forgotten: a first attempt again
    for n in range(5):
        state.note_message_now(f"198.51.100.{n}", T0 + 300)
    assert len(state._windows) == 3


# --- the pure step and the async face --------------------------------------------------------


def step(entry: GreylistEntry | None, now: float) -> tuple[GreylistEntry, GreylistDecision]:
    return greylist_step(entry, now, delay=300, retry_window=14400, remember=3600)


def test_the_step_makes_a_first_entry_that_expires_after_the_retry_window() -> None:
    entry, decision = step(None, T0)
    assert entry == GreylistEntry(first_seen=T0, last_seen=T0, expires=T0 + 14400)
    assert (decision.passed, decision.retry_after, decision.attempts) == (False, 300, 1)


def test_the_step_defers_an_early_retry_keeping_the_first_attempts_expiry() -> None:
    first, _ = step(None, T0)
    entry, decision = step(first, T0 + 100)
    assert entry == GreylistEntry(first_seen=T0, last_seen=T0 + 100, expires=T0 + 14400, attempts=2)
    assert (decision.passed, decision.retry_after) == (False, 200)


def test_the_step_passes_a_retry_after_the_delay_and_remembers_it_from_then() -> None:
    first, _ = step(None, T0)
    entry, decision = step(first, T0 + 300)
    assert entry.passed_at == T0 + 300 and entry.expires == T0 + 300 + 3600
    assert (decision.passed, decision.remembered, decision.waited) == (True, False, 300)
    again, remembered = step(entry, T0 + 1000)
    assert remembered.remembered and remembered.waited == 300 and remembered.attempts == 3
    assert again.expires == T0 + 1000 + 3600


def test_the_step_starts_over_after_the_window_or_once_a_passed_triplet_is_forgotten() -> None:
    first, _ = step(None, T0)
    late, decision = step(first, T0 + 14401)
    assert late.first_seen == T0 + 14401 and decision.attempts == 1 and not decision.passed
    passed, _ = step(first, T0 + 300)
    forgotten, decision = step(passed, T0 + 300 + 3601)
    assert forgotten.first_seen == T0 + 300 + 3601 and not decision.passed


def test_the_step_never_changes_the_entry_it_was_given() -> None:
    first, _ = step(None, T0)
    kept = GreylistEntry(**{name: getattr(first, name) for name in GreylistEntry.__slots__})
    step(first, T0 + 300)
    assert first == kept


async def test_the_async_methods_decide_as_the_synchronous_ones() -> None:
    state, twin = DeliveryState(), DeliveryState()
    for now in (T0, T0 + 100, T0 + 300, T0 + 400):
        assert await state.greylist(KEY, now, 300, 14400, 3600) == attempt(twin, now)
    assert [await state.note_message("192.0.2.7", T0 + i) for i in range(3)] == [1, 2, 3]
    assert await state.entries() == 2
    assert await state.forget() == 2
    assert await state.entries() == 0
