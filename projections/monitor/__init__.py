"""The monitor: a Starlette web UI and ``/api/v1`` JSON API over the read models.

It reads only read models (``projections.monitor.queries``) and acts only by publishing operator
request events (``projections.monitor.actions``); it never writes a read-model row.
"""
