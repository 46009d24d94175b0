"""The closed loop that makes a latency budget hold for the *measured* latency, not only the predicted one.

A search under ``--latency T`` keeps the predicted latency ≤ T. The winner sits on that boundary,
and a search picks, among designs of equal predicted latency, the ones the model underestimates
most (the optimiser exploits the model's error), so the winner's measured latency tends to exceed
its prediction: a mean error of ~8 % over random networks became +13 % for one winner.

The loop: build and time the winner on the table's device; if it measures more than T × (1 +
slack) — slack its own timing noise (IQR / median), at most ``MAX_SLACK`` — search again with the
predicted budget set to the winner's predicted latency × T / measured (so the failed design is
excluded and the budget moves by the observed ratio), up to ``MAX_ROUNDS`` searches in all. The
first design that measures within the budget is kept; when none does, the fastest measured one is
kept and the result says the budget was not honoured. Given the same measurements the loop is
deterministic (the searches are seeded). Pure logic: the caller supplies ``search`` and ``measure``
(tests inject a fake timer). No torch, no printing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

MAX_ROUNDS = 4  # searches in all: the first and up to three with a tightened predicted budget
MAX_SLACK = 0.03  # a measurement may exceed the budget by its own noise estimate, at most this


@dataclass(frozen=True)
class Round:
    """One search of the loop and its measurement."""

    target: float  # the predicted-latency budget the search ran under (seconds)
    predicted: float  # the winner's predicted latency
    measured: float  # its measured latency (median)
    noise: float  # the measurement's noise (IQR / median)
    load: float | None  # 1-minute load average while timing
    objective: float
    accepted: bool  # measured ≤ budget × (1 + min(noise, MAX_SLACK))


@dataclass
class LoopResult:
    """The kept design and every round; ``honoured`` is False when no round measured within the budget."""

    budget: float
    genotype: Any
    objective: float
    chosen: int
    honoured: bool
    rounds: list[Round] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"budget": self.budget, "chosen": self.chosen, "honoured": self.honoured, "max_rounds": MAX_ROUNDS,
                "max_slack": MAX_SLACK, "rounds": [asdict(r) for r in self.rounds]}


def accepts(budget: float, measured: float, noise: float, max_slack: float = MAX_SLACK) -> bool:
    """Whether a measurement honours ``budget``: within the measurement's own noise, at most ``max_slack``."""
    return measured <= budget * (1.0 + min(max(noise, 0.0), max_slack))


def next_target(budget: float, predicted: float, measured: float) -> float:
    """The predicted-latency budget of the next search: the failed winner's prediction scaled by budget / measured."""
    return predicted * budget / measured


def honour_budget(budget: float, search: Callable[[float], tuple[Any, float, float]],
                  measure: Callable[[Any], dict], first: tuple[Any, float, float] | None = None, *,
                  max_rounds: int = MAX_ROUNDS, max_slack: float = MAX_SLACK,
                  on_round: Callable[[Round, float | None], None] | None = None) -> LoopResult:
    """Search, time, and re-search under a tightened predicted budget until a design measures within ``budget``.

    Args:
        budget: the latency budget T in seconds.
        search: predicted-latency budget → (genotype, objective, predicted seconds), or None when no
            design fits that budget (the loop then ends with the rounds so far).
        measure: genotype → {"seconds", "noise", "load"} timed on the table's device.
        first: the result of ``search(budget)`` when the caller already ran it.
        max_rounds: searches in all (≥ 1).
        max_slack: largest relative excess a noisy measurement is forgiven.
        on_round: called after each round with the round and the next target (None when the loop ends).

    Returns:
        The ``LoopResult``: the first accepted design, else the fastest measured one.
    """
    if max_rounds < 1:
        raise ValueError(f"max_rounds: expected an integer >= 1, got {max_rounds!r}")
    rounds, designs = [], []
    target = budget
    for i in range(max_rounds):
        found = first if (i == 0 and first is not None) else search(target)
        if found is None:
            break
        genotype, objective, predicted = found
        m = measure(genotype)
        ok = accepts(budget, m["seconds"], m.get("noise", 0.0), max_slack)
        r = Round(target, predicted, m["seconds"], m.get("noise", 0.0), m.get("load"), objective, ok)
        rounds.append(r)
        designs.append(genotype)
        nxt = None if ok or i == max_rounds - 1 else next_target(budget, predicted, m["seconds"])
        if on_round is not None:
            on_round(r, nxt)
        if nxt is None:
            break
        target = nxt
    if not rounds:
        raise ValueError(f"latency budget: no design fits a predicted latency of {budget!r} s")
    ok = [i for i, r in enumerate(rounds) if r.accepted]
    chosen = ok[0] if ok else min(range(len(rounds)), key=lambda i: (rounds[i].measured, i))
    return LoopResult(budget, designs[chosen], rounds[chosen].objective, chosen, bool(ok), rounds)
