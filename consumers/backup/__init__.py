"""Backup: copies of data files of backup destinations to the transfer group's backup host.

``core`` decides (which transfers, which host, where, the outcome events) and is pure;
``runner`` consumes ``ecpds.transfers``, copies through the transfer modules and publishes
``DataFileBackedUp`` / ``DataFileBackupFailed`` to ``ecpds.datafiles``.
"""
