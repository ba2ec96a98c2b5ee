"""YAML files rendered from the route table, written the way the repository's linters read them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml


class _Indented(yaml.SafeDumper):
    """Lists indented under their key, as yamllint and most hand-written manifests have them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:  # noqa: ARG002
        # PyYAML asks for lists under a key to be indentless; here they never are.
        super().increase_indent(flow, indentless=False)


def header(command: str) -> str:
    """The comment that opens every rendered file: where it comes from."""
    return (
        f"# Rendered by `medcloud gateway {command}` from medcloud's route table;\n"
        "# render it again rather than editing it.\n"
    )


def render(command: str, documents: Iterable[Any], *, note: str = "") -> str:
    """The documents as one YAML stream, headed by the command that renders them."""
    body = yaml.dump_all(
        documents, Dumper=_Indented, sort_keys=False, width=100, explicit_start=False
    )
    return header(command) + note + body
