"""The CLI authenticates like the API: every verb that publishes first needs an operator token.

Rules kept here:

- The token is read from ``ECPDS_TOKEN`` (``Settings.token``), else ``~/.config/ecpds/token``,
  else ``$ECPDS_VAR/secrets/admin.token`` (the operator token the first ``ecpds up`` wrote for
  this machine's operator, mode 0600), and checked against the token file the API and the
  monitor read (``$ECPDS_VAR/secrets/api-tokens``, ``bus.tokens``) before anything is published.
- No token, an unknown or revoked one, or a read-only (viewer) one is a refusal naming
  ``token`` (exit 2); nothing is published.
- This guards the CLI's door, not the broker's: a process that reaches Kafka can still publish
  without it. Direct Kafka access is for services only (README, "Users, roles and tokens").
"""

from __future__ import annotations

from pathlib import Path

from bus.errors import ConfigurationError
from bus.settings import Settings
from bus.tokens import Token, TokenFile, tokens_path

USER_TOKEN = Path("~/.config/ecpds/token")
_WHERE = (
    "set ECPDS_TOKEN, or put it in ~/.config/ecpds/token "
    "(`ecpds token create NAME --role operator` makes one)"
)


def _read(path: Path) -> str | None:
    try:
        return path.expanduser().read_text().strip() or None
    except OSError:
        return None


def token_of(settings: Settings) -> str | None:
    """The token this command runs with, from the first place that has one."""
    secrets_dir = settings.var_dir / "secrets"
    return settings.token or _read(USER_TOKEN) or _read(secrets_dir / "admin.token")


def operator(settings: Settings) -> Token:
    """The operator token this command publishes with; a refusal (``ConfigurationError`` on
    ``token``) when there is none that may act."""
    token = token_of(settings)
    if token is None:
        raise ConfigurationError(
            "token", f"this verb publishes and needs an operator token: {_WHERE}"
        )
    found = TokenFile(tokens_path(settings.var_dir / "secrets")).check(token)
    if found is None:
        raise ConfigurationError("token", f"the token is not known (revoked?): {_WHERE}")
    if not found.can_act:
        raise ConfigurationError(
            "token", f"token {found.name} is read-only (viewer): this verb needs an operator token"
        )
    return found
