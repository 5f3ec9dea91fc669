"""Data acquisition: poll providers, discover new files, retrieve them through ingest."""
