"""The steady load of the chaos suite: files POSTed to the ingest API at a fixed rate, round
robin over the destinations, each retried as a careful client would until it is accepted.

A client that gets an error (5xx, 507, a refused or timed-out connection) sends the same
file again, with the same target, after a short pause: so a file lost by the API's fault is
not a lost file, but a registration the API made and did not answer is a second transfer of
the same target, which the checks count as a duplicate registration -- unless the API answers
the same bytes with the registration it already made (200) or refuses them as a duplicate
(409), either of which tells the client its first request did register the file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from tests.chaos.world import Destination


@dataclass
class Sent:
    """One file of the load: where it goes, its digest and what the API answered."""

    destination: str
    target: str
    sha256: str
    transfer_ids: list[str] = field(default_factory=list)
    # 409 to a retry: an earlier request that got no answer did register the file
    registered_unanswered: bool = False

    @property
    def accepted(self) -> bool:
        return bool(self.transfer_ids) or self.registered_unanswered


@dataclass
class Load:
    """Files put at ``rate`` per second while ``run`` runs; every put is awaited at the end."""

    url: str
    token: str
    destinations: list[Destination]
    rate: float
    sent: list[Sent] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)  # status code or error class
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self, prefix: str, seconds: float, give_up: float) -> None:
        """Put files for ``seconds``, then wait for every put (each given up after
        ``give_up`` seconds of refusals)."""
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(32)  # the API's connections: a client's, not a flood
        async with httpx.AsyncClient(timeout=10) as client:
            start = loop.time()
            count = int(seconds * self.rate)
            for i in range(count):
                await asyncio.sleep(max(0.0, start + i / self.rate - loop.time()))
                dest = self.destinations[i % len(self.destinations)]
                data = os.urandom(512 + (i * 7919) % 3584)  # 0.5 to 4 KiB, every byte random
                sent = Sent(dest.name, f"{prefix}-{i:05d}.bin", hashlib.sha256(data).hexdigest())
                self.sent.append(sent)
                task = asyncio.create_task(self._put(client, gate, sent, data, give_up))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            while self._tasks:
                await asyncio.gather(*list(self._tasks))

    async def _put(
        self,
        client: httpx.AsyncClient,
        gate: asyncio.Semaphore,
        sent: Sent,
        data: bytes,
        give_up: float,
    ) -> None:
        deadline = time.monotonic() + give_up
        params = {"destination": sent.destination, "target": sent.target}
        headers = {"Authorization": f"Bearer {self.token}"}
        while time.monotonic() < deadline:
            async with gate:
                try:
                    response = await client.post(
                        f"{self.url}/api/v1/datafiles", params=params, content=data, headers=headers
                    )
                except httpx.HTTPError as error:
                    self.answers[type(error).__name__] += 1
                else:
                    self.answers[str(response.status_code)] += 1
                    # 200: the same bytes put again are the registration an earlier put made
                    # (answered 503 once its bytes were stored); 201: a new one
                    if response.status_code in (200, 201):
                        ids = [t["transfer_id"] for t in response.json()["transfers"]]
                        sent.transfer_ids.extend(str(i) for i in ids)
                        if ids or response.status_code == 201:
                            return
                        # the first put's transfers still on their way to the broker: the
                        # answer names none yet, so the client asks again for them
                        self.answers["200 without transfers"] += 1
                    if response.status_code == 409 and "Duplicate" in response.text:
                        sent.registered_unanswered = True
                        return
            await asyncio.sleep(1.0)
