"""Ingest: registering data files (pure ``core``, the ``index`` it reads, the ``service`` shell)."""
