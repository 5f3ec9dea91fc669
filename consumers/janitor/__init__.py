"""The janitor: garbage collection of expired and delivered data files (ECPDS-REFERENCE §6.4).

``core`` holds the state (one small entry per data file, rebuilt from ``ecpds.datafiles`` and
``ecpds.transfers``), ``evolve`` and ``sweep`` (pure, ``now`` passed in); ``feed`` replays the
topics; ``runner`` sweeps on a timer, publishes expiries, deletes from the store, then records
``DataFileDeleted``.
"""
