"""Replication: copies of stored data files to the secondary stores of their transfer group.

``core`` decides (which stores, in what order, the outcome events) and is pure; ``runner``
consumes ``ecpds.datafiles``, copies through ``store.named.NamedStores`` (verified by ADLER32)
and publishes one ``DataFileReplicated`` per copy to ``ecpds.datafiles``; a file that cannot
reach its policy is dead-lettered with the reason.
"""
