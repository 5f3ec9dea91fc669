"""The OpenAPI 3.1 document of the ingest routes (served at ``/api/v1/openapi.json``).

Written by hand next to the routes it describes: the options are the same list the parser
reads (``params.OPTIONS``), so a new option shows up here by construction.
"""

from __future__ import annotations

from typing import Any

from producers.api.params import FLAGS, OPTIONS

_DESCRIPTIONS = {
    "destination": "destination name (required)",
    "target": "name of the file at the destination, relative (required)",
    "priority": "0-99, lower first (default 99)",
    "lifetime": "how long the file is kept, e.g. 2d (default: the destination's lifetime)",
    "delay": "queue the transfers this much later, e.g. 10m",
    "at": "queue the transfers at this time (yyyyMMddHHmmss or ISO 8601, UTC)",
    "metadata": "k=v,k2=v2",
    "standby": "queue in HOLD (standby) instead of WAIT",
    "asap": "deliver as soon as possible",
    "event": "publish a notification when delivered",
    "requeue": "re-submit an existing (destination, target, version): new file instance",
    "force": "same as requeue (force a new file instance)",
    "version": "version, part of the uniqueness key (destination, target, version)",
    "identity": "recurring-product key (default: the target)",
    "original": "original file name, recorded with the file",
}

_ERROR = {
    "type": "object",
    "required": ["status", "message"],
    "properties": {
        "status": {"const": "error"},
        "field": {"type": "string", "description": "the option the error concerns"},
        "reason": {"type": "string", "description": "refusal reason, as in the event"},
        "message": {"type": "string"},
        "data_file_id": {"type": "string"},
    },
}
_TRANSFER = {
    "type": "object",
    "properties": {
        "transfer_id": {"type": "string"},
        "destination": {"type": "string"},
        "status": {"type": "string", "enum": ["WAIT", "HOLD", "EXEC", "DONE", "RETR", "STOP"]},
        "priority": {"type": "integer"},
        "queue_time": {"type": "string", "format": "date-time"},
        "expiry_time": {"type": "string", "format": "date-time"},
        "alias_of": {"type": ["string", "null"]},
    },
}
_RECEIPT = {
    "type": "object",
    "properties": {
        "status": {"const": "ok"},
        "data_file_id": {"type": "string"},
        "file_instance": {"type": "integer"},
        "size": {"type": "integer"},
        "checksums": {
            "type": "object",
            "properties": {"adler32": {"type": "string"}, "md5": {"type": "string"}},
        },
        "transfers": {"type": "array", "items": {"$ref": "#/components/schemas/Transfer"}},
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _parameter(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "boolean"} if name in FLAGS else {"type": "string"}
    if name == "priority":
        schema = {"type": "integer", "minimum": 0, "maximum": 99, "default": 99}
    return {
        "name": name,
        "in": "query",
        "required": name in ("destination", "target"),
        "description": f"{_DESCRIPTIONS[name]} (or header X-Ecpds-{name.capitalize()})",
        "schema": schema,
    }


def document() -> dict[str, Any]:
    """The OpenAPI document of ``POST /api/v1/datafiles`` and ``GET /api/v1/datafiles/{id}``."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "ecpds ingest API", "version": "1"},
        "components": {
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer"},
                "dataUser": {"type": "http", "scheme": "basic"},
            },
            "schemas": {"Error": _ERROR, "Transfer": _TRANSFER, "Receipt": _RECEIPT},
        },
        "security": [{"token": []}, {"dataUser": []}],
        "paths": {
            "/api/v1/datafiles": {
                "post": {
                    "summary": "Register a data file: store its bytes and queue its transfers",
                    "operationId": "putDataFile",
                    "parameters": [_parameter(name) for name in OPTIONS],
                    "requestBody": {
                        "required": True,
                        "description": "the file's bytes, streamed",
                        "content": {"application/octet-stream": {"schema": {"format": "binary"}}},
                    },
                    "responses": {
                        "200": {
                            "description": "the same bytes were registered by an earlier put "
                            "of this name: that registration (a safe retry)",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Receipt"}
                                }
                            },
                        },
                        "201": {
                            "description": "registered, stored and queued",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Receipt"}
                                }
                            },
                        },
                        "400": _error("invalid option, or already expired"),
                        "401": _error("no or bad credentials"),
                        "403": _error("not permitted (data user, inactive destination)"),
                        "404": _error("unknown destination"),
                        "409": _error("duplicate (destination, target, version), other bytes"),
                        "413": _error("larger than the destination's max file size"),
                        "429": _error("more pending transfers than the destination allows"),
                        "503": {
                            **_error(
                                "the bytes could not be stored or recorded in time; put the "
                                "same file again after Retry-After seconds"
                            ),
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        },
                    },
                }
            },
            "/api/v1/datafiles/{data_file_id}": {
                "get": {
                    "summary": "A data file and the queued state of its transfers",
                    "operationId": "getDataFile",
                    "parameters": [
                        {
                            "name": "data_file_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {"description": "the data file"},
                        "401": _error("no or bad credentials"),
                        "404": _error("no such data file"),
                    },
                }
            },
        },
    }
