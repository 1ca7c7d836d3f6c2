"""The policy runner inside a driver's loop, cycle by cycle on the stepped clock against the emulated MCUs on a pty:
each command leaves in the cycle of the state that caused it, episodes start homed, episode pacing holds the
robot at home until a policy within the bound arrives, a failing runner ends the run while the loop goes on, and
StochLite's episodes run on its position loop from the estimator's view."""
import numpy as np
from mdemorl_learner.numpy_actor import NumpyActor
from stochlite_bringup.sim_robots import start_joint_angles
from stochlite_bringup.tasks.leg_task import ACT_DIM, OBS_DIM

from leg_driver.onboard_runner import DONE, RUNNING, WAITING, OnboardRunner, RunnerSettings
from leg_driver.runner_profiles import LegProfile, StochliteProfile

SCALE_NM = 2.0
HOMING_CYCLES = 3000  # 6 s on the stepped clock: more than the 5 s homing timeout


def settings(**overrides) -> RunnerSettings:
    values = dict(episode_steps=20, steps_per_epoch=40, epochs=1, start_steps=40, transitions_per_batch=8, seed=3,
                  pacing="episode", max_policy_lag=10)
    return RunnerSettings(**{**values, **overrides})


def actor(obs_dim: int = OBS_DIM) -> NumpyActor:
    rng = np.random.default_rng(1)
    sizes = [obs_dim, 16, 2 * ACT_DIM]
    return NumpyActor([0.1 * rng.standard_normal((n_out, n_in)) for n_in, n_out in zip(sizes, sizes[1:])],
                      [np.zeros(n_out) for n_out in sizes[1:]])


def attach(rig, runner_settings: RunnerSettings) -> tuple[OnboardRunner, list[tuple]]:
    messages = []
    onboard = OnboardRunner(runner_settings, LegProfile(SCALE_NM, start_joint_angles(), 5.0), rig.loop,
                            messages.append)
    rig.loop.policy = onboard.command
    rig.start_armed()
    onboard.run_episodes()
    return onboard, messages


def cycle_until(rig, done, limit: int = HOMING_CYCLES) -> list[int]:
    """Cycle until ``done()``; the cycles run."""
    cycles = []
    while not done():
        assert len(cycles) < limit, "the condition never came"
        cycles.append(rig.cycle())
    return cycles


def kinds(messages: list[tuple]) -> list[str]:
    return [m[0] for m in messages]


def test_each_command_leaves_in_the_cycle_of_its_state_through_a_homed_episode(leg_rig):
    rig = leg_rig
    onboard, messages = attach(rig, settings())
    cycle_until(rig, lambda: "begin" in kinds(messages))
    begin = rig.loop.clock.cycle  # the cycle whose state began the episode sent its first command
    episode = [begin] + cycle_until(rig, lambda: "episode" in kinds(messages))
    # start_steps 40: uniform random actions from the seed's stream, one per state, each sent in its own cycle
    expected = np.random.default_rng(3).uniform(-1.0, 1.0, (20, ACT_DIM)).astype(np.float32) * SCALE_NM
    received = np.array([rig.received(c) for c in episode[:20]])
    np.testing.assert_allclose(received, expected, rtol=1e-6)
    report = next(m[1] for m in messages if m[0] == "episode")
    assert (report.commands, report.cycles, report.missed_cycles, report.watchdog_trips) == (20, 20, 0, 0)
    assert report.late_acks == 0  # each torque reached the MCU before the tick that made the next state
    assert report.env_steps == 20 and not report.end.evaluation and not report.finished
    batches = [m[1] for m in messages if m[0] == "batch"]
    assert [len(b.data["reward"]) for b in batches] == [8, 8, 4]  # full batches, then the flushed rest
    np.testing.assert_allclose(np.concatenate([b.data["act"] for b in batches]) * SCALE_NM, expected, rtol=1e-6)
    # the robot is homed again at once: the next episode starts at the start of the foot path
    cycle_until(rig, lambda: kinds(messages).count("begin") == 2)
    np.testing.assert_allclose(rig.loop.latest_state.position, start_joint_angles(), atol=0.05)
    assert rig.loop.watchdog_trips == 0


def test_episode_pacing_holds_the_homed_robot_until_a_policy_within_the_bound(leg_rig):
    rig = leg_rig
    onboard, messages = attach(rig, settings(start_steps=0))
    cycle_until(rig, lambda: "episode" in kinds(messages))  # 20 steps: lag 20 - 0 > 10 before the next one
    cycle_until(rig, lambda: "hold" in kinds(messages))
    assert onboard.phase == WAITING and messages[-1] == ("hold", 20, 0)
    held = [rig.cycle() for _ in range(100)]
    assert "begin" not in kinds(messages[-1:]) and kinds(messages).count("begin") == 1
    assert all(rig.received(c) != (0.0, 0.0) for c in held[-10:])  # the homing PID holds the pose
    np.testing.assert_allclose(rig.loop.latest_state.position, start_joint_angles(), atol=0.05)
    onboard.offer_policy(actor(), 9)  # lag 20 - 9 = 11: still too far behind
    [rig.cycle() for _ in range(5)]
    assert onboard.phase == WAITING
    onboard.offer_policy(actor(), 10)
    rig.cycle()
    assert onboard.phase == RUNNING and messages[-1] == ("begin", 20, 10, False)
    cycle_until(rig, lambda: kinds(messages).count("episode") == 2)
    assert [m[1].policy_version for m in messages if m[0] == "batch"][-1] == 10
    assert rig.loop.watchdog_trips == 0


def test_the_last_evaluation_ends_the_runner_with_the_robot_held(leg_rig):
    rig = leg_rig
    onboard, messages = attach(rig, settings(steps_per_epoch=20, pacing="off"))
    onboard.offer_policy(actor(), 0)
    cycle_until(rig, lambda: onboard.phase == DONE, limit=2 * HOMING_CYCLES)
    reports = [m[1] for m in messages if m[0] == "episode"]
    assert [(r.end.evaluation, r.commands, r.finished) for r in reports] == [(False, 20, False), (True, 20, True)]
    assert reports[1].end.foot.shape == (20, 2)


def test_a_failing_runner_ends_the_run_and_the_loop_holds_the_robot(leg_rig):
    rig = leg_rig
    onboard, messages = attach(rig, settings(start_steps=0, pacing="off"))
    onboard.offer_policy(actor(obs_dim=OBS_DIM + 1), 0)  # a policy for another task: its forward pass fails
    cycle_until(rig, lambda: "failed" in kinds(messages))
    assert messages[-1][1].startswith("the policy runner failed: ValueError(")
    cycles = [rig.cycle() for _ in range(20)]
    assert rig.loop.clock.cycle == cycles[-1] and not rig.loop.fault  # the loop goes on
    assert all(rig.received(c) != (0.0, 0.0) for c in cycles)  # holding the homed pose, no policy command


def test_stochlite_runs_its_episodes_on_its_position_loop_from_the_estimators_view(stochlite_rig):
    rig = stochlite_rig
    messages = []
    profile = StochliteProfile(0.0, 0.0, 10.0)
    onboard = OnboardRunner(settings(episode_steps=10, steps_per_epoch=20, start_steps=20), profile, rig.loop,
                            messages.append)
    rig.loop.policy = onboard.command
    rig.start_armed()
    onboard.run_episodes()
    cycle_until(rig, lambda: "begin" in kinds(messages))  # stood up first
    episode = [rig.loop.clock.cycle] + cycle_until(rig, lambda: "episode" in kinds(messages))
    report = next(m[1] for m in messages if m[0] == "episode")
    assert (report.commands, report.cycles, report.watchdog_trips) == (10, 10, 0) and report.end.foot.shape == (0, 2)
    assert all(rig.received(c) for c in episode[:10])  # a POSITION frame in each cycle of the episode
    batches = [m[1] for m in messages if m[0] == "batch"]
    acts = np.concatenate([b.data["act"] for b in batches])
    np.testing.assert_array_equal(acts, np.random.default_rng(3).uniform(-1.0, 1.0, (10, 13)).astype(np.float32))
    obs = np.concatenate([b.data["obs"] for b in batches])
    assert obs.shape == (10, 14) and np.isfinite(obs).all()
    assert profile.gait is not None  # the last action's trot, for /stochlite/gait_command
    cycle_until(rig, lambda: kinds(messages).count("begin") == 2)  # stood up again, then the next episode
