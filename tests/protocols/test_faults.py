"""The one table of whose problem each error is (``protocols.base.FAULTS``): complete for every
error the transfer modules and the store raise, in step with each class's ``retriable``, and
read through base classes."""

from __future__ import annotations

import builtins
import importlib
import inspect
import pkgutil

import pytest

import bus.errors
import protocols
import store.errors
from bus.events.transfers import Fault
from bus.templates.lexer import TemplateError
from protocols import base
from protocols.base import FAULTS, fault_of, reported_fault


def _classes(module: object) -> dict[str, type]:
    return {n: c for n, c in vars(module).items() if inspect.isclass(c)}


def _protocol_errors() -> set[type[base.TransferError]]:
    """Every ``TransferError`` subclass defined in a module of ``protocols``."""
    found: set[type[base.TransferError]] = set()
    for info in pkgutil.iter_modules(protocols.__path__):
        module = importlib.import_module(f"protocols.{info.name}")
        for cls in _classes(module).values():
            if issubclass(cls, base.TransferError) and cls.__module__ == module.__name__:
                found.add(cls)
    return found


KNOWN = {
    **_classes(builtins),
    **_classes(bus.errors),
    **_classes(store.errors),
    **_classes(base),
    **{c.__name__: c for c in _protocol_errors()},  # a module's own (sftp's HostKeyChanged)
}


def test_every_protocol_and_store_error_has_its_row() -> None:
    """Each error class a transfer module or the store defines is in the table by name."""
    errors = _protocol_errors() - {base.TransferError}
    errors |= {c for c in _classes(store.errors).values() if issubclass(c, store.errors.StoreError)}
    assert errors
    assert sorted(c.__name__ for c in errors if c.__name__ not in FAULTS) == []


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_each_row_names_a_real_class_and_its_retriable_flag(name: str) -> None:
    """A row names an existing error class, and says its ``retriable`` as the class does."""
    cls = KNOWN[name]
    assert issubclass(cls, BaseException)
    if issubclass(cls, bus.errors.EcpdsError):
        assert FAULTS[name].retriable is cls.retriable


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (base.AuthenticationFailed("login refused"), Fault.HOST),
        (base.PermissionDenied("not writable"), Fault.HOST),
        (base.NotFound("no such directory /in"), Fault.HOST),
        (base.ConnectionLost("reset"), Fault.HOST),
        (TemplateError("unknown variable", 1, 3), Fault.HOST),  # through ConfigurationError
        (ConnectionRefusedError(111, "refused"), Fault.HOST),  # through ConnectionError
        (store.errors.ObjectNotFound("gone everywhere"), Fault.FILE),
        (store.errors.ObjectCorrupt("ADLER32"), Fault.TRANSIENT),
        (ValueError("a bug"), Fault.TRANSIENT),  # unknown: never ends a transfer
    ],
)
def test_fault_of_reads_the_nearest_listed_class(error: BaseException, fault: Fault) -> None:
    """An error takes the row of its class or its nearest listed base; an unlisted one is
    transient."""
    assert fault_of(error) is fault


def test_failure_without_a_fault_is_classed_by_name_then_by_retriable() -> None:
    """A failure reported before TransferFailed carried a fault is classed by its error class,
    and a class the table does not know by its flag (retriable: the host's, else the file's)."""
    assert reported_fault(Fault.TRANSIENT, "AuthenticationFailed", False) is Fault.TRANSIENT
    assert reported_fault(None, "AuthenticationFailed", False) is Fault.HOST
    assert reported_fault(None, "ObjectNotFound", False) is Fault.FILE
    assert reported_fault(None, "SomethingElse", True) is Fault.HOST
    assert reported_fault(None, "SomethingElse", False) is Fault.FILE
