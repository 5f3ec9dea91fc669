"""What the backup stage needs from outside: the current configuration.

The object store is ``store.ports.ObjectStore``; copies go through ``protocols.registry``. The
configuration is anything holding a current ``ConfigView`` (``bus.config.view.LiveConfig`` in
production, ``FixedConfig`` in tests and demos).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bus.config.view import ConfigView


class ConfigSource(Protocol):
    """Holds the latest configuration view."""

    @property
    def view(self) -> ConfigView: ...


@dataclass(frozen=True)
class FixedConfig:
    """A configuration that never changes (tests, demos)."""

    view: ConfigView
