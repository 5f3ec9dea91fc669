"""How one mover process runs: its group, capacity, topics and timings."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from bus.topics import CONFIG, DEADLETTER, MOVERS, TRANSFERS, orders_topic


@dataclass(frozen=True)
class MoverConfig:
    """How one mover process runs."""

    bootstrap: str
    transfer_group: str
    key_file: Path
    capacity: int = 8
    # callers one multiplexed (SFTP) connection serves at once: their requests share packets
    # and one server process (measured: ~15% less mover and ~35% less sshd CPU per small file)
    share: int = 4
    mover_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    heartbeat_s: float = 3.0
    session_timeout_ms: int = 10_000
    # longest gap between polls before the group evicts us; the loop polls even when full
    max_poll_interval_ms: int = 300_000
    orders_topic: str | None = None  # default ecpds.orders.<group>
    group_id: str | None = None  # default ecpds-movers-<group>
    transfers_topic: str = TRANSFERS
    movers_topic: str = MOVERS
    deadletter_topic: str = DEADLETTER
    config_topic: str = CONFIG  # where host keys learnt on connecting are recorded

    @property
    def topic(self) -> str:
        return self.orders_topic or orders_topic(self.transfer_group).name

    @property
    def group(self) -> str:
        return self.group_id or f"ecpds-movers-{self.transfer_group}"

    @property
    def source(self) -> str:
        return f"mover/{self.mover_id}"
