"""Screenshots of every screen at 80x24 and 120x40 on a seeded run (update with --snapshot-update).

The 120x40 variants are marked slow (with the tmux test they double the directory's run time);
``-m "not slow"`` keeps the 80x24 set. Time never moves in these apps (frozen clock, pinned timestamps, reads only on demand), so a
changed screenshot means changed layout or content.
"""

from __future__ import annotations

import pytest
from pilot_helpers import refreshed

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40", marks=pytest.mark.slow)]


def keys_then_refresh(*keys: str):
    async def run_before(pilot) -> None:
        await refreshed(pilot, after=0)
        for key in keys:
            await pilot.press(key)
            await refreshed(pilot)
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", SIZES)
class TestDashboard:
    """Run header (anthropic/claude-sonnet-4-5, sdxl on cuda:0), four stage rows with counts and
    progress (render 15 pending, 7 done, 1 failed), and the event log with the three failures in red."""

    def test_dashboard(self, snap_compare, seeded_db, frozen_app, size):
        assert snap_compare(frozen_app(seeded_db), terminal_size=size, run_before=keys_then_refresh())


@pytest.mark.parametrize("size", SIZES)
class TestCompare:
    """The metrics table (conv, div, diff, CI, Holm p, d_z per metric, diversity blank) and the
    per-clip bar chart of originality, all bars positive."""

    def test_compare(self, snap_compare, seeded_db, frozen_app, size):
        assert snap_compare(frozen_app(seeded_db), terminal_size=size, run_before=keys_then_refresh("c"))


@pytest.mark.parametrize("size", SIZES)
class TestFailures:
    """Four failed rows (analyze, 2 generate, render), the second one marked, its full error below."""

    def test_failures(self, snap_compare, seeded_db, frozen_app, size):
        assert snap_compare(frozen_app(seeded_db), terminal_size=size,
                            run_before=keys_then_refresh("f", "down", "space"))


@pytest.mark.parametrize("size", SIZES)
class TestSamples:
    """Six clips with key, tempo, prompts done, mean overall and mood; clip 5 failed."""

    def test_samples(self, snap_compare, seeded_db, frozen_app, size):
        assert snap_compare(frozen_app(seeded_db), terminal_size=size, run_before=keys_then_refresh("s"))


@pytest.mark.parametrize("size", SIZES)
class TestSampleDetail:
    """Clip 1: eight features, the ABC, five prompts with scores, the first prompt's image in cells."""

    def test_detail(self, snap_compare, seeded_db, frozen_app, size):
        assert snap_compare(frozen_app(seeded_db), terminal_size=size,
                            run_before=keys_then_refresh("s", "down", "enter"))


@pytest.mark.parametrize("size", SIZES)
class TestHelp:
    """The help modal over the dashboard, listing the keys of every screen."""

    def test_help(self, snap_compare, seeded_db, frozen_app, size):
        assert snap_compare(frozen_app(seeded_db), terminal_size=size,
                            run_before=keys_then_refresh("question_mark"))
