"""The timeliness watcher: learns when products arrive and are delivered, and publishes
``TransferLate`` / ``ProductLate`` when they are late (``core`` pure, ``runner`` its stage)."""
