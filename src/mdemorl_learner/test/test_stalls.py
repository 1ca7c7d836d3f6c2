"""The stall rule: fewer than half the owed SAC updates over a whole epoch, recorded for the run's summary."""
import math

from stochlite_bringup.node_table import STALLS_FILE

from mdemorl_learner.stalls import EpochPace, describe_update_stall, record_stall, update_ratio_stalled


def test_an_epoch_is_stalled_below_half_the_configured_updates_per_step():
    assert not update_ratio_stalled(EpochPace(3, updates=500, eligible_steps=1000, epoch_steps=1000, seconds=10), 1.0)
    assert update_ratio_stalled(EpochPace(3, updates=499, eligible_steps=1000, epoch_steps=1000, seconds=10), 1.0)
    assert update_ratio_stalled(EpochPace(3, updates=999, eligible_steps=1000, epoch_steps=1000, seconds=10), 2.0)
    assert not update_ratio_stalled(EpochPace(3, updates=250, eligible_steps=1000, epoch_steps=1000, seconds=10), 0.5)


def test_epochs_before_start_steps_or_only_partly_past_them_are_never_stalled():
    assert not update_ratio_stalled(EpochPace(1, updates=0, eligible_steps=0, epoch_steps=1000, seconds=5), 1.0)
    assert not update_ratio_stalled(EpochPace(1, updates=0, eligible_steps=1, epoch_steps=1000, seconds=5), 1.0)
    assert math.isnan(EpochPace(1, 0, 0, 1000, 5).updates_per_step)


def test_the_description_names_the_ratio_the_rate_and_the_compute(tmp_path):
    pace = EpochPace(4, updates=145, eligible_steps=1000, epoch_steps=1000, seconds=10)
    text = describe_update_stall(pace, 1.0, "SAC bfloat16 on cpu (AVX2)")
    assert text == ("epoch 4: 0.14 SAC updates per real step against 1 configured (145 updates in 10 s, "
                    "14.5 updates/s; SAC bfloat16 on cpu (AVX2))")
    assert not (tmp_path / STALLS_FILE).exists()
    record_stall(tmp_path, "learner", text)
    record_stall(tmp_path, "agent", "waiting 31 s for a policy")
    lines = (tmp_path / STALLS_FILE).read_text().splitlines()
    assert lines == [f"learner: {text}", "agent: waiting 31 s for a policy"]
