"""The OpenAPI 3.1 document of the monitor's ``/api/v1`` routes (built by hand: it is small,
and the routes are plain Starlette)."""

from __future__ import annotations

from typing import Any

from bus.requests import DESTINATION_VERBS, TRANSFER_VERBS

_OK = {"description": '`{"status": "ok", ...}`'}
_ERRORS = {
    "401": {"description": "no bearer token and no signed-in session"},
    "404": {"description": "no such item"},
}


def _get(summary: str, *params: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ],
            "responses": {"200": _OK, **_ERRORS},
        }
    }


def _post(summary: str, verbs: tuple[str, ...], *params: str) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params
    ]
    parameters.append(
        {"name": "verb", "in": "path", "required": True, "schema": {"enum": list(verbs)}}
    )
    return {
        "post": {
            "summary": summary,
            "parameters": parameters,
            "description": "Publishes an operator request event; the result shows in the read "
            "models once the scheduler has answered. Web sessions send X-CSRF-Token.",
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "priority": {"type": "integer", "minimum": 0, "maximum": 99},
                                "reason": {"type": "string"},
                                "immediate": {
                                    "type": "boolean",
                                    "description": "hold/restart: interrupt running transfers",
                                },
                                "lifetime": {
                                    "type": "string",
                                    "description": "extend: new lifetime from now (2d, 12h)",
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "202": {"description": "the request event was published"},
                "400": {"description": "bad action or priority"},
                "403": {"description": "role cannot act, or CSRF token wrong"},
                "503": {"description": "Kafka unreachable"},
            },
        }
    }


def _product_status() -> dict[str, Any]:
    """``POST /api/v1/products/{status}``: set a product's generation status."""
    text = {"type": "string"}
    return {
        "post": {
            "summary": "set a product's generation status (ecpds product ...)",
            "parameters": [
                {
                    "name": "status",
                    "in": "path",
                    "required": True,
                    "schema": {"enum": ["expected", "started", "completed", "reset"]},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["stream", "time", "step", "type"],
                            "properties": {
                                "stream": text,
                                "time": text,
                                "step": text,
                                "type": text,
                                "at": {
                                    "type": "string",
                                    "description": "ISO 8601 (UTC by default) or "
                                    "yyyyMMddHHmmss; default now",
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "202": {"description": "the ProductStatusChanged event was published"},
                "400": {"description": "a field missing or malformed (named in `field`)"},
                "403": {"description": "role cannot act, or CSRF token wrong"},
                "503": {"description": "Kafka unreachable"},
            },
        }
    }


def document() -> dict[str, Any]:
    """The OpenAPI document."""
    host_switch = _post(
        "switch a destination's host on or off, or change its priority",
        ("on", "off", "priority"),
        "name",
        "host",
    )
    host_switch["post"]["parameters"][-1]["name"] = "switch"
    return {
        "openapi": "3.1.0",
        "info": {"title": "ecpds monitor API", "version": "1"},
        "components": {
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "ecpds_monitor"},
            }
        },
        "security": [{"token": []}, {"session": []}],
        "paths": {
            "/api/v1/destinations": _get(
                "destinations with counts (query q, status: a code or `failing`, limit)"
            ),
            "/api/v1/destinations/{name}": _get("a destination, queue, running, hosts", "name"),
            "/api/v1/destinations/{name}/minutes": _get("files/bytes/errors per minute", "name"),
            "/api/v1/destinations/{name}/{verb}": _post(
                "act on a destination", tuple(v.value for v in DESTINATION_VERBS), "name"
            ),
            "/api/v1/destinations/{name}/hosts/{host}/{switch}": {"post": {**host_switch["post"]}},
            "/api/v1/transfers": _get("transfers (query status, q)"),
            "/api/v1/transfers/{transfer_id}": _get("a transfer and its timeline", "transfer_id"),
            "/api/v1/transfers/{transfer_id}/{verb}": _post(
                "act on a transfer", tuple(v.value for v in TRANSFER_VERBS), "transfer_id"
            ),
            "/api/v1/data-files": _get("data files (query q)"),
            "/api/v1/data-files/{data_file_id}": _get(
                "a data file and its transfers", "data_file_id"
            ),
            "/api/v1/hosts": _get("hosts"),
            "/api/v1/movers": _get("movers"),
            "/api/v1/acquisition": _get("acquisition hosts and recent files"),
            "/api/v1/charts": _get(
                "the charts of ?range=hour|day|week (of ?destination=): a time axis (x, epoch"
                " seconds) and per chart its unit and series; per-minute totals; errors by"
                " destination"
            ),
            "/api/v1/products/{status}": _product_status(),
            "/metrics": _get("Prometheus text"),
        },
    }
