"""Fault class: divergence. The loss turns non-finite (here a NaN feature at one step): the run stops naming that
step, even one that was neither logged nor saved, and keeps the last good checkpoint; rerun in the same workdir with
the cause fixed (--allow_config_change if the fix is in the config), it continues from that checkpoint."""

import pytest

from helpers import SyntheticLists, train_synthetic
from ranking_jax import train


def test_nan_guard_stops_with_step_and_keeps_checkpoint(tmp_path):
    with pytest.raises(train.DivergenceError, match=r"at step 4 .*Last good checkpoint: .*checkpoints/2.*"
                       r"--allow_config_change to continue from that checkpoint"):
        train_synthetic(tmp_path, 10, data=SyntheticLists(nan_at=3), checkpoint_every=2)
    from ranking_jax.checkpoint import Checkpointer
    assert Checkpointer(tmp_path / "checkpoints").latest_step() == 2
    # the recovery the message names: the same workdir, the cause fixed, continues from the last good checkpoint
    summary = train_synthetic(tmp_path, 10, data=SyntheticLists(), checkpoint_every=2)
    assert (summary["start"], summary["first_step"]) == ("workdir", 2)
    assert Checkpointer(tmp_path / "checkpoints").latest_step() == 10


def test_nan_guard_between_log_steps(tmp_path):
    """Step 4 is neither logged nor saved: its flag is read after step 5 is dispatched, and still names step 4."""
    with pytest.raises(train.DivergenceError, match=r"at step 4 .*Last good checkpoint: .*checkpoints/3"):
        train_synthetic(tmp_path, 10, data=SyntheticLists(nan_at=3), checkpoint_every=3, log_every=10)
    from ranking_jax.checkpoint import Checkpointer
    assert Checkpointer(tmp_path / "checkpoints").latest_step() == 3
