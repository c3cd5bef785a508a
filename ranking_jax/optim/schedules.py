"""Learning-rate schedules in steps: linear warm-up from 0, then constant, linear or cosine decay."""

from __future__ import annotations

import optax

SCHEDULES = ("constant", "linear", "cosine")


def make_schedule(*, kind: str, peak: float, warmup_steps: int = 0, total_steps: int = 0,
                  end_factor: float = 0.0) -> optax.Schedule:
    """``lr(t)``: ``peak · t / warmup`` for ``t < warmup``, then ``peak`` (constant) or a linear / cosine
    decay reaching ``peak · end_factor`` at ``total_steps`` and staying there."""
    if kind not in SCHEDULES:
        raise ValueError(f"config.optimizer.schedule={kind!r} is unknown; valid: {', '.join(SCHEDULES)}")
    if warmup_steps < 0:
        raise ValueError(f"config.optimizer.warmup_steps must be >= 0, got {warmup_steps}")
    if kind != "constant" and total_steps <= warmup_steps:
        raise ValueError(f"config.optimizer.schedule={kind!r} decays until total_steps, which must exceed "
                         f"warmup_steps={warmup_steps}; got total_steps={total_steps}. Set "
                         "config.optimizer.total_steps (e.g. to the run's number of steps)")
    end = peak * end_factor
    if kind == "constant":
        after = optax.constant_schedule(peak)
    elif kind == "linear":
        after = optax.linear_schedule(peak, end, total_steps - warmup_steps)
    else:
        after = optax.cosine_decay_schedule(peak, total_steps - warmup_steps, alpha=end_factor)
    if warmup_steps == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup_steps), after], [warmup_steps])


__all__ = ["make_schedule", "SCHEDULES"]
