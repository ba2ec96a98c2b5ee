"""HTTP edge settings refuse what would open the API to any page."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from medcloud.config import HttpSettings


def test_a_wildcard_origin_with_credentials_is_refused() -> None:
    with pytest.raises(ValidationError, match="credentials"):
        HttpSettings(cors_origins=["*"], cors_allow_credentials=True)
    with pytest.raises(ValidationError, match="not an origin"):
        HttpSettings(cors_origins=["https://ward.example.org/app"])
    assert HttpSettings(cors_origins=["*"]).cors_origins == ["*"]
