"""Where a stage reads the current configuration: anything holding a ``ConfigView``.

``ConfigSource`` is the one port for it: ``bus.config.view.LiveConfig`` in production (kept up
to date from ``ecpds.config``), ``FixedConfig`` in tests and demos (a view that never changes).
A stage reads ``source.view`` each time it decides, so a change applied meanwhile is seen.
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
