"""The stall rule (fewer than half the owed SAC updates over a whole epoch, recorded for the run's summary)
and the update-ratio rule (owing more than 10 % of the configured updates and more than pacing allows)."""
import math

from stochlite_bringup.node_table import STALLS_FILE

from mdemorl_learner.stalls import (EpochPace, PaceSample, describe_ratio_behind, describe_update_stall,
                                   ratio_behind, record_stall, update_ratio_stalled)


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


def test_the_update_ratio_is_behind_once_the_owed_updates_exceed_10_percent_and_the_pacing_backlog():
    assert not ratio_behind(PaceSample(credited_steps=7000, updates=6300), 1.0, 250)  # owes 700 = 10 %
    assert ratio_behind(PaceSample(7000, 6299), 1.0, 250)
    assert ratio_behind(PaceSample(7000, 1015), 1.0, 250)  # 0.145, as on the emulated leg
    assert not ratio_behind(PaceSample(20000, 9000), 0.5, 250)  # owes 1000 of 10000
    assert ratio_behind(PaceSample(20000, 8999), 0.5, 250)


def test_the_backlog_that_pacing_allows_is_never_behind():
    """Lockstep pacing lets the agent run up to two snapshot periods ahead: early in a run that is far more than
    10 % of the updates, and it is no shortfall."""
    assert not ratio_behind(PaceSample(1250, 1250 - 500), 1.0, 250)  # 0.6 so far, 500 owed
    assert ratio_behind(PaceSample(1250, 1250 - 501), 1.0, 250)
    assert not ratio_behind(PaceSample(18000, 17891 - 1000), 1.0, 250)  # 0.94 late in a run: within 10 %


def test_before_any_credited_step_the_learner_is_never_behind():
    """Before start_steps (or while no real step arrives) the learner only waits for data."""
    assert not ratio_behind(PaceSample(0, 0), 1.0, 250)


def test_episode_pacing_allows_an_epoch_more_of_backlog():
    """The robot runs a whole episode (up to an epoch) before it waits: that backlog is no shortfall either."""
    assert not ratio_behind(PaceSample(2000, 2000 - 1500), 1.0, 250, episode_backlog=1000)  # 500 + 1000 owed
    assert ratio_behind(PaceSample(2000, 2000 - 1501), 1.0, 250, episode_backlog=1000)
    assert ratio_behind(PaceSample(2000, 2000 - 501), 1.0, 250)  # without it, the same run is behind


def test_the_ratio_description_names_the_measured_and_configured_ratios():
    text = describe_ratio_behind(PaceSample(5000, 725), 1.0)
    assert text == "0.14 SAC updates per real step against 1 configured (725 updates for 5000 real steps: 4275 owed)"
