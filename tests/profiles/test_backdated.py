"""A backdated timestamp cannot steal an identifier (review I2): links are ordered by a key clamped
to the message's receivedAt minus ``rules.LINK_SKEW``."""

from __future__ import annotations

from collector.profiles.rules import LINK_SKEW, link_key

from .conftest import at, ev


def test_a_backdated_identify_does_not_take_a_device_from_the_person_who_signed_in_on_it(build):
    store = build([
        ev("page", at(1), anonymousId="a-victim"),
        ev("identify", at(2), anonymousId="a-victim", userId="u-victim"),
        # received 20 minutes later (more than LINK_SKEW), from anyone with the public write key, dated in year 1
        {**ev("identify", "0001-01-01T00:00:00.000Z", anonymousId="a-victim", userId="u-attacker"),
         "receivedAt": at(1200)},
    ])  # fmt: skip
    assert store.find("anonymous_id", "a-victim") == store.find("user_id", "u-victim")
    assert store.find("user_id", "u-attacker") != store.find("user_id", "u-victim")


def test_a_link_key_is_clamped_to_received_at_minus_the_skew_and_is_otherwise_the_key():
    event = {"timestamp": "2026-11-28T10:00:00.000Z", "receivedAt": "2026-11-28T10:00:05.000Z", "messageId": "m"}
    assert link_key(event, "2026-11-28T10:00:00.000Z|m") == "2026-11-28T10:00:00.000Z|m"
    old = {**event, "timestamp": "2026-11-20T10:00:00.000Z"}
    assert LINK_SKEW == 600
    assert link_key(old, "2026-11-20T10:00:00.000Z|m") == "2026-11-28T09:50:00.000Z|m"
