"""The dissemination scheduler: which transfer goes where, when, and what happens when it fails.

``core`` is the pure part: ``evolve(state, event)``, ``decide(state, settings, now)`` and
``next_due(state, now)``, time always passed in. ``state`` holds the state (frozen entries per
transfer, a frozen summary per destination, derived indexes), ``lifecycle`` the transfer status
table, ``transitions`` and ``configuration`` how events change the state, ``failover`` the host
provider, ``windows`` the active time windows, ``requests`` the answers to operator requests,
``decisions`` the decide loop and ``outputs`` the decided events.

The runner (not here) wires it, one loop per worker:

1. on partition assignment, ``SchedulerState.restore`` from the persisted entries, summaries,
   pending requests and configuration, then ``gc.freeze()`` (a million long-lived entries
   should not be rescanned by the cyclic collector);
2. for each consumed event (transfers, orders' twins, config, data files, mover heartbeats):
   ``evolve``; then ``decide(state, settings, now)``, ``evolve`` every decision, publish them
   (``TransferOrdered`` to ``ecpds.orders.<transfer group>``, the rest to ``ecpds.transfers``),
   write back ``drain_changes()``, and only then commit;
3. between events, sleep until ``next_due(state, now)`` and decide again.

Decisions read back from ``ecpds.transfers`` are ignored by ``evolve`` once applied: each
decision's id is derived from the version of the transfer (or destination) it was made on.
"""
