"""The stream monitor: the batch pipeline on a sliding window, checked as inputs arrive."""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.studies.novelty.discovery import AlarmRule, Background, discover
from benchmark.studies.novelty.protocols import Stream
from benchmark.studies.novelty.space import ClusterSpace


@dataclass
class Monitor:
    """Every ``check_every`` inputs, BH at ``q`` over the last ``window`` inputs, HDBSCAN on
    the selected ones (one cluster allowed: a window holds at most one new group, as a rule),
    alarm when the rule calls a cluster a new class (``background``: the ID yardstick of the
    rule's background test). After an alarm the window starts afresh (the next alarm needs
    new evidence)."""

    space: ClusterSpace
    rule: AlarmRule
    q: float = 0.2
    window: int = 1000
    check_every: int = 10
    method: str = "hdbscan"
    background: Background | None = None

    def alarms(self, s: Stream, stop_at: int | None = None) -> list[int]:
        """Positions (0-based, the input that completed the evidence) of the alarms; with
        ``stop_at``, the watch ends at the first alarm at or after that position."""
        found: list[int] = []
        start = 0
        x = s.inputs
        for t in range(self.check_every - 1, len(x), self.check_every):
            lo = max(start, t + 1 - self.window)
            if t + 1 - lo < self.rule.min_size + 1:
                continue
            d = discover(x.pvalues[lo:t + 1], x.features[lo:t + 1], self.space, self.rule,
                         self.q, self.method, seed=t, single=True,
                         background=self.background)
            if d.new_classes:
                found.append(t)
                if stop_at is not None and t >= stop_at:
                    break
                start = t + 1
        return found


def delay(s: Stream, alarms: list[int]) -> tuple[float, int]:
    """(inputs from the first novel one to the first alarm at or after it, inf = missed;
    alarms before the first novel input = false alarms)."""
    if s.onset is None:
        return float("nan"), len(alarms)
    before = sum(a < s.onset for a in alarms)
    after = [a for a in alarms if a >= s.onset]
    return (float(after[0] - s.onset + 1) if after else float("inf")), before
