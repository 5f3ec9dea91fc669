"""The dissemination scheduler: which transfer goes where, when, and what happens when it fails.

``core`` is the pure part: ``evolve(state, event)``, ``decide(state, settings, now)`` and
``next_due(state, now)``, time always passed in. ``state`` holds the state (frozen entries per
transfer, a frozen summary per destination, derived indexes), ``lifecycle`` the transfer status
table, ``transitions`` and ``configuration`` how events change the state, ``failover`` the host
provider, ``windows`` the active time windows, ``requests`` the answers to operator requests,
``decisions`` the decide loop and ``outputs`` the decided events.

``runner`` wires it, one loop per worker (its docstring has the details):

1. on partition assignment, a fresh state is rebuilt from the configuration, recent mover
   events, the latest snapshot of each owned partition of ``ecpds.transfers`` (``snapshots``)
   and the events after it (the log holds the scheduler's own past decisions, so counters,
   attempts and due times come back), then ``gc.freeze()`` (a million long-lived entries
   should not be rescanned by the cyclic collector);
2. for each consumed event (transfers, orders' twins, config, mover heartbeats): ``evolve``;
   then ``decide(state, settings, now)``, ``evolve`` every decision and publish it
   (``TransferOrdered`` to ``ecpds.orders.<transfer group>``, the rest to ``ecpds.transfers``);
3. between events, sleep until ``next_due(state, now)`` and decide again.

``snapshots`` captures a partition's state and restores it as ``SchedulerState.restore`` would
(``restore``/``drain_changes`` remain for a table-backed store, DESIGN.md §8, unused today);
``snapshot_store`` keeps the snapshots on ``ecpds.scheduler.snapshots``.

Decisions read back from ``ecpds.transfers`` are ignored by ``evolve`` once applied: each
decision's id is derived from the version of the transfer (or destination) it was made on.
"""
