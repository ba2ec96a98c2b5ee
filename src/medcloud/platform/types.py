"""Field types every context's wire models share."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator


def _json_number(raw: Any) -> Any:
    # bool is an int in Python and "72" would be coerced: only real JSON numbers pass, and a
    # refusal names the field itself rather than the branches of an int | float union.
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError("must be a number")
    return raw


Number = Annotated[float, BeforeValidator(_json_number)]
"""A JSON number (integer or not); booleans and numeric strings are refused."""
