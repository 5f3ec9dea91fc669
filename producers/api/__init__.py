"""The ingest REST API (Starlette): ``POST``/``GET /api/v1/datafiles``, tokens, OpenAPI."""
