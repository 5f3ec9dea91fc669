"""The data movers: consumer loops that execute transfer orders (ECPDS-REFERENCE "Data
Dissemination").

``core`` is pure (Location from a Host, target path, offsets safe to commit); ``ports`` names
what a mover needs from outside (stores); ``delivery`` moves one object to one host (stream,
compress, MD5, put, verify); ``outcomes`` builds the events; ``config`` holds a process's
settings; ``runner`` is the aiokafka loop with concurrency, commits, heartbeats and graceful
shutdown (``python -m consumers.movers.runner``).
"""
