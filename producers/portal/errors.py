"""What a portal operation answers when it does not happen; each door turns these into its
own protocol's codes (SFTP statuses, HTTP statuses)."""

from __future__ import annotations

from producers.portal.access import Denied


class PortalError(Exception):
    """Why an operation did not happen; each door answers it with its own code."""


class Refused(PortalError):
    """The access model refused it (published as ``PortalAccessDenied``)."""

    def __init__(self, denied: Denied) -> None:
        super().__init__(denied.message)
        self.denied = denied


class NotFound(PortalError):
    """No such file or folder in the user's view."""


class Unsupported(PortalError):
    """The view cannot do that (e.g. rename a registered file)."""


class Failed(PortalError):
    """The operation was tried and failed (a store error, a refused registration ...)."""


class TooLarge(Failed):
    """An upload passed its cap (the destination's, ECPDS_MAX_UPLOAD or the user's)."""


__all__ = ["Failed", "NotFound", "PortalError", "Refused", "TooLarge", "Unsupported"]
