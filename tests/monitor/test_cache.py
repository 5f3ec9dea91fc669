"""Renderings cached by read-model version (``projections.monitor.cache.VersionCache``): one
making per page and version for every viewer, a fresh one after a projector commit, and, with
``refresh_after`` (the timeliness grid), a background making while the previous one is still
served."""

from __future__ import annotations

import asyncio

from markupsafe import Markup

from projections.monitor.cache import VersionCache


class Maker:
    """Counts makings; each takes ``delay`` seconds and returns its number."""

    def __init__(self, delay: float = 0.0) -> None:
        self.count = 0
        self.delay = delay

    async def __call__(self) -> Markup:
        self.count += 1
        number = self.count
        await asyncio.sleep(self.delay)
        return Markup(f"<p>{number}</p>")  # noqa: S704 (a number)


async def test_viewers_of_one_page_and_version_share_one_making() -> None:
    """Ten viewers at once, then one more: one making, the same rendering for all."""
    grids, make = VersionCache[Markup](), Maker(delay=0.05)
    bodies = await asyncio.gather(*(grids.get("p", 7, make) for _ in range(10)))
    assert set(bodies) == {Markup("<p>1</p>")}
    assert await grids.get("p", 7, make) == Markup("<p>1</p>")
    assert make.count == 1


async def test_a_projector_commit_makes_the_next_viewer_wait_for_a_fresh_page() -> None:
    """A new version is never answered with the rendering of the old one."""
    grids, make = VersionCache[Markup](), Maker()
    assert await grids.get("p", 7, make) == Markup("<p>1</p>")
    assert await grids.get("p", 8, make) == Markup("<p>2</p>")


async def test_an_old_rendering_is_served_while_the_next_is_made() -> None:
    """Past ``refresh_after``, the viewer gets the previous rendering at once; the next viewer
    the new."""
    grids, make = VersionCache[Markup](refresh_after=0.0), Maker(delay=0.05)
    assert await grids.get("p", 7, make) == Markup("<p>1</p>")
    await asyncio.sleep(0.01)
    assert await grids.get("p", 7, make) == Markup("<p>1</p>")  # served old, making the next
    await asyncio.sleep(0.1)
    assert make.count == 2
    assert await grids.get("p", 7, make) == Markup("<p>2</p>")
    await asyncio.sleep(0.1)  # the making that get started, past refresh_after again, ends
