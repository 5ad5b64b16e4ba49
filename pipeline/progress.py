"""What a long job tells its user: a progress bar with rate and ETA, and a closing summary table.

Bars go to stderr (stdout may carry JSON lines) and update at most ``MIN_INTERVAL`` apart;
the summary counts models per outcome (ok / held for review / rejected / failed) and
says why, the commonest reasons first, so a run over thousands of models ends in a
few readable lines.
"""
from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

OUTCOMES = ("ok", "held for review", "rejected", "failed")
MIN_INTERVAL = 0.1  # seconds between bar redraws
REASONS_SHOWN = 3  # per outcome; the rest are counted as "n more"


def bar(total: int, desc: str, unit: str, *, initial: int = 0, enabled: bool = True) -> Any:
    """A tqdm bar to stderr showing count, rate and ETA, only on a terminal (a log gets the summary)."""
    from tqdm import tqdm

    enabled = enabled and sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True,
                mininterval=MIN_INTERVAL, smoothing=0.1, unit_scale=total >= 10_000)


def summary_table(outcomes: Mapping[str, Sequence[str | None]], what: str = "models") -> str:
    """One line per outcome: its count and its reasons, e.g. ``rejected  2  no vertices (2)``.

    ``outcomes`` maps an outcome (one of OUTCOMES, others appended) to one reason per model
    (None where there is nothing to say).
    """
    names = [name for name in OUTCOMES if name in outcomes] + [name for name in outcomes if name not in OUTCOMES]
    width = max(len(name) for name in names)
    lines = [f"{what}:"]
    for name in names:
        reasons = Counter(reason for reason in outcomes[name] if reason)
        shown = [f"{reason} ({n})" for reason, n in reasons.most_common(REASONS_SHOWN)]
        if len(reasons) > REASONS_SHOWN:
            shown.append(f"{len(reasons) - REASONS_SHOWN} more")
        lines.append(f"  {name:<{width}}  {len(outcomes[name]):>6}  {'; '.join(shown)}".rstrip())
    return "\n".join(lines)


class ShardProgress:
    """A build's bar, in images: finished shards count whole, shards in progress by their committed
    pieces, polled from disk every ``POLL_SECONDS`` by a thread (workers may be other machines)."""

    POLL_SECONDS = 0.2

    def __init__(self, out: Path, planned: Mapping[str, int], finished: Sequence[str], enabled: bool) -> None:
        self.out, self.planned, self.done = out, dict(planned), set(finished)
        self.bar = bar(sum(planned.values()), "build", "img", enabled=enabled,
                       initial=sum(self.planned[name] for name in self.done))
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.thread = threading.Thread(target=self._watch, name="mmdsynth-progress", daemon=True)

    def __enter__(self) -> ShardProgress:
        if not self.bar.disable:
            self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
        self.bar.close()

    def finished(self, name: str) -> None:
        with self.lock:
            self.done.add(name)
        self.poll()

    def poll(self) -> None:
        """Move the bar to what is on disk now (never backwards: a shard's pieces vanish when it is assembled)."""
        from pipeline.pieces import committed_images

        with self.lock:
            images = sum(self.planned[name] if name in self.done else committed_images(self.out / name)
                         for name in self.planned)
            if images > self.bar.n:
                self.bar.update(images - self.bar.n)

    def _watch(self) -> None:
        while not self.stop.wait(self.POLL_SECONDS):
            self.poll()
