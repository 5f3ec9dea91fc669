"""The API token file: roles, the format from before roles, creation and revocation."""

from __future__ import annotations

import stat
from pathlib import Path

from bus.tokens import Token, TokenFile, TokenRole, create_file, token_digest


def test_a_line_without_role_is_an_operator_token(tmp_path: Path) -> None:
    """A ``name:sha256hex`` line written before roles existed still acts as an operator."""
    path = tmp_path / "api-tokens"
    path.write_text(f"# old\nscript:{token_digest('t0k')}\n")
    assert TokenFile(path).check("t0k") == Token("script", TokenRole.OPERATOR)
    assert TokenFile(path).check("other") is None


def test_created_tokens_carry_their_role_and_revocation_takes_effect(tmp_path: Path) -> None:
    """A created viewer token checks as a read-only viewer, an operator one may act; a revoked
    token is refused by the same (long-lived) reader at once, and the file stays 0600."""
    path = tmp_path / "secrets" / "api-tokens"
    admin = create_file(path)
    assert admin is not None
    assert create_file(path) is None
    book = TokenFile(path)
    reader = book.create("reader", TokenRole.VIEWER)
    ops = TokenFile(path).create("ops", TokenRole.OPERATOR)
    found = book.check(reader)
    assert found == Token("reader", TokenRole.VIEWER)
    assert not found.can_act
    assert (book.check(ops) or Token("", TokenRole.VIEWER)).can_act
    assert book.check(admin) == Token("admin", TokenRole.OPERATOR)
    assert [t.name for t in book.tokens()] == ["admin", "ops", "reader"]
    assert TokenFile(path).revoke("reader")
    assert not book.revoke("nobody")
    assert book.check(reader) is None
    assert reader not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_unknown_role_grants_nothing(tmp_path: Path) -> None:
    """A line whose role is not viewer or operator is ignored, not read as an operator."""
    path = tmp_path / "api-tokens"
    path.write_text(f"x:administrator:{token_digest('t')}\n")
    assert TokenFile(path).check("t") is None
