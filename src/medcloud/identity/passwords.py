"""The password policy: long enough, not common, not the account's own name (NIST SP 800-63B)."""

from __future__ import annotations

from medcloud.platform.errors import FieldError

# The most common passwords of public breach corpora that pass a length rule; a short list keeps
# the obvious ones out without shipping a data set.
COMMON = frozenset(
    {
        "123456789012",
        "1234567890123",
        "qwertyuiopas",
        "password1234",
        "password12345",
        "passwordpassword",
        "iloveyou1234",
        "qwerty123456",
        "111111111111",
        "000000000000",
        "abcdefghijkl",
        "letmeinletmein",
        "welcome12345",
        "administrator",
        "changeme1234",
        "hospital1234",
        "medcloud1234",
        "correcthorsebatterystaple",
        "trustno1trustno1",
    }
)


def check_password(password: str, *, email: str, min_length: int) -> list[FieldError]:
    """Return why `password` is not acceptable (empty when it is)."""
    problems = []
    if len(password) < min_length:
        problems.append(f"at least {min_length} characters")
    if len(set(password)) < 4:
        problems.append("more than a few distinct characters")
    lowered = password.lower().replace(" ", "")
    if lowered in COMMON:
        problems.append("not a commonly used password")
    local = email.split("@", 1)[0].lower()
    if len(local) >= 3 and local in lowered:
        problems.append("not containing the email address")
    if not problems:
        return []
    return [FieldError("password", "the password needs " + ", ".join(problems))]
