"""The password policy, as a table: long enough, varied, not common, not the account's name."""

from __future__ import annotations

import pytest

from medcloud.identity.passwords import check_password

EMAIL = "nina.nurse@stmary.example"


@pytest.mark.parametrize(
    ("password", "needs"),
    [
        ("tidal-granite-orchard-9", []),
        ("a-b-c-d-e-f-", []),
        ("a-b-c-d-e-f", ["at least 12 characters"]),
        ("abababababababab", ["more than a few distinct characters"]),
        ("Password 1234", ["not a commonly used password"]),
        ("Correct Horse Battery Staple", ["not a commonly used password"]),
        ("NINA.NURSE on nights", ["not containing the email address"]),
        ("aaaa", ["at least 12 characters", "more than a few distinct characters"]),
    ],
)
def test_a_password_is_checked_against_every_rule_at_once(password: str, needs: list[str]) -> None:
    problems = check_password(password, email=EMAIL, min_length=12)
    if not needs:
        assert problems == []
        return
    (problem,) = problems
    assert problem.field == "password"
    assert problem.message == "the password needs " + ", ".join(needs)


def test_a_short_local_part_of_the_email_is_not_held_against_the_password() -> None:
    assert check_password("al-is-my-name-here", email="al@stmary.example", min_length=12) == []
    assert check_password("alice-is-my-name", email="alice@stmary.example", min_length=12)
