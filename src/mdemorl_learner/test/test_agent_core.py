"""The agent's ROS-free core: the policy runner (episode/epoch schedule, actions, batches, terminations,
pacing) and the agent's feedback (joint-state parsing; task steps of MuJoCo tasks)."""

import numpy as np
import pytest
import torch

from mdemorl_learner.agent_feedback import (LegFeedback, StochliteFeedback, TaskSample, TaskStepFeedback,
                                           joint_state_arrays)
from mdemorl_learner.learner_core import LearnerCore
from mdemorl_learner.numpy_actor import NumpyActor
from mdemorl_learner.policy_runner import EpisodeEnd, PolicyRunner, Step, pacing_can_progress, save_foot_path
from mdemorl_learner.sac import SACConfig
from mdemorl_planner.networks import SquashedGaussianActor
from stochlite_bringup.tasks.leg_task import ACT_DIM, JOINT_NAMES, OBS_DIM
from stochlite_bringup.tasks.stochlite_gait import foot_targets, gait_command, joint_targets, standing_joint_targets

Q, QDOT = np.array([0.1, -0.6]), np.array([0.5, -0.2])
LEG = LegFeedback(max_torque=10.0)


def leg(q, qdot, t: float) -> TaskSample:
    """The leg's sample of joint state ``q, qdot`` at ``t`` s into the episode."""
    return LEG.sample(JOINT_NAMES, q, qdot, t)


def numpy_actor(actor: SquashedGaussianActor) -> NumpyActor:
    return NumpyActor.from_state_dict(actor.state_dict())


def small_actor() -> NumpyActor:
    return numpy_actor(SquashedGaussianActor(OBS_DIM, ACT_DIM, 8, 1))


def run_episode(core: PolicyRunner, actor, version: int = 0) -> tuple[int, object]:
    """Feed joint states until the episode ends; returns (actions taken, EpisodeEnd)."""
    core.start_episode()
    actions = 0
    while True:
        step = core.step(leg(Q, QDOT, actions * 0.002), actor, version)
        if step.episode_end is not None:
            return actions, step.episode_end
        assert step.action.shape == (ACT_DIM,) and np.all(np.abs(step.action) <= 1.0)
        actions += 1


def test_epochs_cut_training_at_the_boundary_then_evaluate_and_finish():
    core = PolicyRunner(ACT_DIM, 3, steps_per_epoch=5, epochs=2, start_steps=2,
                     transitions_per_batch=4, seed=0)
    actor = small_actor()
    ends = []
    while not core.finished:
        ends.append(run_episode(core, actor))
    kinds = [(n, end.evaluation, end.epoch) for n, end in ends]
    assert kinds == [(3, False, 0), (2, False, 0), (3, True, 1), (3, False, 1), (2, False, 1), (3, True, 2)]
    assert core.env_steps == 10
    assert ends[2][1].foot.shape == ends[2][1].foot_desired.shape == (3, 2)
    batches = core.take_batches(flush=True)
    assert [len(b.data["reward"]) for b in batches] == [4, 4, 2]
    obs = np.concatenate([b.data["obs"] for b in batches])
    assert obs.shape == (10, OBS_DIM) and not np.concatenate([b.data["terminated"] for b in batches]).any()


def test_policy_version_change_starts_a_new_batch_and_nan_actions_become_zero():
    core = PolicyRunner(ACT_DIM, 100, steps_per_epoch=100, epochs=1, start_steps=0,
                     transitions_per_batch=50, seed=0)
    torch_actor = SquashedGaussianActor(OBS_DIM, ACT_DIM, 8, 1)
    core.start_episode()
    for i in range(4):
        core.step(leg(Q, QDOT, i * 0.002), numpy_actor(torch_actor), 1 if i < 2 else 2)
    assert [(len(b.data["reward"]), b.policy_version) for b in core.take_batches()] == [(2, 1)]
    with torch.no_grad():
        torch_actor.net[-1].bias.fill_(float("nan"))
    assert np.array_equal(core.step(leg(Q, QDOT, 0.008), numpy_actor(torch_actor), 2).action, np.zeros(ACT_DIM))
    assert core.nonfinite_actions == 1


def test_random_actions_and_policy_noise_come_from_the_seeds_two_streams():
    actor = small_actor()
    core = PolicyRunner(ACT_DIM, 100, steps_per_epoch=100, epochs=1, start_steps=3, transitions_per_batch=50,
                        seed=5)
    core.start_episode()
    samples = [leg(Q + 0.01 * i, QDOT, 0.002 * i) for i in range(6)]
    actions = [core.step(sample, actor, 1).action for sample in samples]
    uniform, noise = np.random.default_rng(5), np.random.default_rng(5).spawn(1)[0]
    for action in actions[:3]:  # env steps 0-2, before start_steps
        np.testing.assert_array_equal(action, uniform.uniform(-1.0, 1.0, ACT_DIM).astype(np.float32))
    for action, sample in zip(actions[3:], samples[3:]):
        np.testing.assert_array_equal(action, actor.sample(sample.obs, noise))


def test_joint_states_are_reordered_and_malformed_ones_rejected():
    q, qdot = joint_state_arrays(["knee", "hip"], [2.0, 1.0], [4.0, 3.0])
    assert q.tolist() == [1.0, 2.0] and qdot.tolist() == [3.0, 4.0]
    for names, position, velocity, match in [
        (["hip"], [1.0], [1.0], "lack one of"),
        (["hip", "knee"], [1.0], [1.0, 2.0], "2 names, 1 positions"),
        (["hip", "knee"], [1.0, float("nan")], [1.0, 2.0], "not finite"),
    ]:
        with pytest.raises(ValueError, match=match):
            joint_state_arrays(names, position, velocity)


def test_pacing_holds_the_command_while_the_policy_lags_and_resumes_with_a_newer_one():
    # start_steps 2, bound 3: the transition that makes env_steps 6 has lag (6 - 2) - 0 = 4 > 3
    core = PolicyRunner(ACT_DIM, 100, steps_per_epoch=100, epochs=1, start_steps=2,
                     transitions_per_batch=50, seed=0, pacing="step", max_policy_lag=3)
    actor = small_actor()
    core.start_episode()
    steps = [core.step(leg(Q, QDOT, i * 0.002), actor, 0) for i in range(7)]
    assert [s.action is not None for s in steps] == [True] * 6 + [False]
    assert steps[-1].held and steps[-1].episode_end is None and core.holding
    assert core.env_steps == 6 and core.policy_lag(0) == 4
    # the transition that ended in the held state is recorded and can be flushed to the learner
    assert sum(len(b.data["reward"]) for b in core.take_batches(flush=True)) == 6
    # no command went out: another joint state is not a step, and v1 still lags by 3 + 1
    assert core.step(leg(Q, QDOT, 0.014), actor, 0).held and core.env_steps == 6
    assert core.resume(actor, 0) is None and core.resume(actor, 0) is None and core.holding
    assert core.must_wait(0) and not core.must_wait(1)
    action = core.resume(actor, 1)
    assert action is not None and action.shape == (ACT_DIM,) and not core.holding
    assert core.resume(actor, 1) is None  # nothing held any more
    # the resumed action's transition carries the version it was taken with; lag (7-2)-1 = 4 > 3 holds again
    step = core.step(leg(Q, QDOT, 0.014), actor, 1)
    assert step.held and core.env_steps == 7
    assert [(len(b.data["reward"]), b.policy_version) for b in core.take_batches(flush=True)] == [(1, 1)]
    assert core.resume(actor, 2) is not None


def test_no_pacing_before_start_steps_or_with_pacing_off():
    for pacing, start_steps in (("off", 0), ("step", 40)):
        core = PolicyRunner(ACT_DIM, 100, steps_per_epoch=100, epochs=1, start_steps=start_steps,
                         transitions_per_batch=50, seed=0, pacing=pacing, max_policy_lag=3)
        core.start_episode()
        steps = [core.step(leg(Q, QDOT, i * 0.002), None, 0) for i in range(44)]
        assert all(s.action is not None for s in steps[:-1]) and core.env_steps == 43
        # lag (43 - 40) - 0 = 3 is within 3; the next transition would exceed it
        assert core.policy_lag(0) == 43 - start_steps
    assert core.step(leg(Q, QDOT, 0.088), None, 0).held and core.env_steps == 44
    with pytest.raises(ValueError, match="max_policy_lag=-1 must be >= 0"):
        PolicyRunner(ACT_DIM, 1000, 10, 1, 0, 10, 0, max_policy_lag=-1)
    with pytest.raises(ValueError, match="pacing='always' must be one of step, episode, off"):
        PolicyRunner(ACT_DIM, 1000, 10, 1, 0, 10, 0, pacing="always")


def test_episode_pacing_holds_only_an_episodes_first_command():
    # start_steps 0, bound 3, episodes of 5: inside an episode the lag grows past 3 without a hold; the next
    # episode's first command waits for a policy within 3 of the 5 env steps
    core = PolicyRunner(ACT_DIM, 5, steps_per_epoch=100, epochs=1, start_steps=0, transitions_per_batch=50, seed=0,
                        pacing="episode", max_policy_lag=3)
    actor = small_actor()
    core.start_episode()
    steps = [core.step(leg(Q, QDOT, i * 0.002), actor, 0) for i in range(6)]
    assert all(s.action is not None and not s.held for s in steps[:5]) and steps[5].episode_end is not None
    assert core.policy_lag(0) == 5
    core.start_episode()
    assert core.at_episode_start and core.must_wait(1) and not core.must_wait(2)
    assert core.step(leg(Q, QDOT, 0.0), actor, 1).held
    assert core.resume(actor, 2) is not None and not core.holding
    later = [core.step(leg(Q, QDOT, i * 0.002), actor, 2) for i in range(1, 5)]
    assert all(s.action is not None for s in later) and core.policy_lag(2) == 7


def test_evaluation_starts_only_with_a_policy_within_the_bound():
    core = PolicyRunner(ACT_DIM, 4, steps_per_epoch=5, epochs=1, start_steps=0,
                     transitions_per_batch=50, seed=0, pacing="step", max_policy_lag=2)
    torch_actor = SquashedGaussianActor(OBS_DIM, ACT_DIM, 8, 1)
    actor = numpy_actor(torch_actor)
    n, end = run_episode(core, actor, version=5)  # a fresh policy: no hold
    assert (n, end.evaluation) == (4, False)
    n, end = run_episode(core, actor, version=5)
    assert (n, end.evaluation, core.env_steps, core.evaluating) == (1, False, 5, True)
    core.start_episode()  # the evaluation: its first state is held while v2 lags (5 - 0) - 2 = 3 > 2
    assert core.step(leg(Q, QDOT, 0.0), actor, 2).held
    assert core.resume(actor, 2) is None
    first = core.resume(actor, 3)
    with torch.no_grad():
        mean = torch_actor.mean_action(torch.from_numpy(leg(Q, QDOT, 0.0).obs)).numpy()
    np.testing.assert_allclose(first, mean, rtol=1e-6)  # deterministic: the policy's mean
    actions = 1
    while (step := core.step(leg(Q, QDOT, actions * 0.002), actor, 3)).episode_end is None:
        assert not step.held
        actions += 1
    assert step.episode_end.evaluation and core.finished and actions == 4
    assert step.episode_end.foot.shape == (4, 2) and step.episode_end.dt == pytest.approx(0.002)


def test_pacing_rule_needs_a_bound_of_at_least_one_snapshot_period():
    assert pacing_can_progress(250, 250) and pacing_can_progress(1000, 250)
    assert not pacing_can_progress(249, 250) and not pacing_can_progress(0, 250)


def run_paced_graph(max_policy_lag: int, period: int, start_steps: int, batch_size: int, epochs: int = 2,
                    steps_per_epoch: int = 150, pacing: str = "step") -> tuple[PolicyRunner, LearnerCore, list[int], int]:
    """PolicyRunner and LearnerCore wired as in the graph, with a learner that only works while the agent waits.

    The learner's worst case: it never updates while the agent is acting. Returns the agent, the
    learner, the lag of every command sent after ``start_steps`` and the number of holds. Fails if
    a hold is not released by the learner's snapshots (a deadlock).
    """
    agent = PolicyRunner(ACT_DIM, 60, steps_per_epoch, epochs, start_steps, transitions_per_batch=25,
                      seed=0, pacing=pacing, max_policy_lag=max_policy_lag)
    learner = LearnerCore(OBS_DIM, ACT_DIM, SACConfig(hidden_size=8, num_layers=1, batch_size=batch_size), 0,
                          10_000, 100, start_steps, 1.0, 1.0)
    actor, version = small_actor(), 0
    lags, holds, t = [], 0, 0
    while not agent.finished:
        agent.start_episode()
        while True:
            step = agent.step(leg(Q + 0.01 * t, QDOT, 0.002 * t), actor, version)
            t += 1
            if step.held:
                assert pacing == "step" or agent.at_episode_start
                holds += 1
                for batch in agent.take_batches(flush=True):  # what the node does on a hold
                    learner.add_env(batch.data)
                while learner.update():  # the learner catches up, publishing every `period` updates
                    if learner.updates % period == 0:
                        version = learner.updates
                action = agent.resume(actor, version)
                assert action is not None, (f"deadlock at {agent.env_steps} env steps: policy v{version}, "
                                            f"{learner.updates} updates, lag {agent.policy_lag(version)}")
                step = Step(action)
            for batch in agent.take_batches(flush=step.episode_end is not None):
                learner.add_env(batch.data)
            if step.episode_end is not None:
                break
            if agent.env_steps >= start_steps:
                lags.append(agent.policy_lag(version))
    while learner.update():  # the last transitions' updates
        pass
    return agent, learner, lags, holds


@pytest.fixture
def one_torch_thread():
    """As the nodes run (torch_threads 1): on 2 busy cores more threads make tiny updates ~50x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_paced_agent_and_learner_never_deadlock_and_updates_track_env_steps(one_torch_thread):
    start_steps, period = 40, 20
    for max_policy_lag in (period, 2 * period + 7):
        agent, learner, lags, holds = run_paced_graph(max_policy_lag, period, start_steps, batch_size=32)
        assert agent.env_steps == learner.env_steps == 300
        assert holds >= (300 - start_steps) // (max_policy_lag + 1) - 1 and holds > 0
        assert max(lags) == max_policy_lag  # the agent runs up to the bound, never past it
        # updates per transition from start_steps on, as Trainer.env_step: 300 - 40 + 1
        assert learner.updates == 300 - start_steps + 1


def test_episode_paced_agent_and_learner_never_deadlock_and_keep_the_update_ratio(one_torch_thread):
    start_steps, period = 40, 20
    agent, learner, lags, holds = run_paced_graph(period, period, start_steps, batch_size=32, pacing="episode")
    assert agent.env_steps == learner.env_steps == 300 and holds > 0
    assert max(lags) > period  # inside an episode the robot runs on, past the bound
    assert learner.updates == 300 - start_steps + 1


def test_foot_path_is_saved_atomically_and_replaced_by_the_next_evaluation(tmp_path):
    path = tmp_path / "run" / "foot_path.npz"
    foot = np.array([[0.1, -0.2], [0.11, -0.21], [0.12, -0.22]])
    save_foot_path(path, EpisodeEnd(True, 1.5, 1, foot, foot + 0.01, 0.002))
    with np.load(path) as data:
        assert sorted(data.files) == ["dt", "foot", "foot_desired"]
        np.testing.assert_array_equal(data["foot"], foot)
        np.testing.assert_array_equal(data["foot_desired"], foot + 0.01)
        assert data["dt"] == 0.002
    save_foot_path(path, EpisodeEnd(True, 2.0, 2, foot[:2], foot[:2], 0.004))
    with np.load(path) as data:
        assert data["foot"].shape == data["foot_desired"].shape == (2, 2) and data["dt"] == 0.004
    assert sorted(p.name for p in path.parent.iterdir()) == ["foot_path.npz"]  # no .tmp left behind


def test_a_terminal_state_ends_the_episode_and_marks_its_transition():
    core = PolicyRunner(3, episode_steps=100, steps_per_epoch=100, epochs=1, start_steps=0, transitions_per_batch=50,
                     seed=0)
    core.start_episode()
    obs = [np.full(11, i, np.float32) for i in range(4)]
    for i in range(3):
        step = core.step(TaskSample(obs[i], reward=1.0, time_s=0.008 * i), None, 0)
        assert step.action.shape == (3,) and step.episode_end is None
    end = core.step(TaskSample(obs[3], reward=-5.0, time_s=0.024, terminated=True), None, 0).episode_end
    assert end is not None and not end.evaluation and end.episode_return == -3.0 and len(end.foot) == 0
    [batch] = core.take_batches(flush=True)
    assert batch.data["terminated"].tolist() == [0.0, 0.0, 1.0]
    np.testing.assert_array_equal(batch.data["next_obs"][-1], obs[3])
    assert core.env_steps == 3 and not core.evaluating


def test_task_steps_are_checked_and_actions_map_onto_the_action_box():
    hopper = TaskStepFeedback("Hopper-v5")
    assert (hopper.obs_dim, hopper.act_dim) == (11, 3)
    sample = hopper.sample([0.5] * 11, 2.0, True, 0.1)
    assert sample.terminated and sample.reward == 2.0 and sample.obs.dtype == np.float32
    for observation, reward, problem in (([0.5] * 10, 1.0, "10 observation values, expected 11"),
                                         ([float("nan")] * 11, 1.0, "not finite"),
                                         ([0.5] * 11, float("inf"), "not finite")):
        with pytest.raises(ValueError, match=problem):
            hopper.sample(observation, reward, False, 0.0)
    assert hopper.command(np.array([-1.0, 0.0, 1.0]), 0.5) == [-1.0, 0.0, 1.0]  # Hopper's box is [-1, 1]
    assert LEG.command(np.array([0.5, -1.0]), 0.5) == [5.0, -10.0]  # N*m at max_torque 10
    assert hopper.idle_command() == [0.0, 0.0, 0.0] and LEG.idle_command() == [0.0, 0.0]


def test_stochlite_commands_are_the_trot_targets_at_the_states_episode_time():
    quadruped = StochliteFeedback("stochlite")
    assert (quadruped.obs_dim, quadruped.act_dim) == (14, 13)
    action = np.linspace(-1.0, 1.0, 13)
    for time_s in (0.0, 0.13, 0.25):  # 0.25 s: a trot half-cycle later the diagonal pairs have swapped
        expected = joint_targets(foot_targets(time_s, gait_command(action)))
        np.testing.assert_allclose(quadruped.command(action, time_s), expected)
    assert not np.allclose(quadruped.command(action, 0.0), quadruped.command(action, 0.1))
    np.testing.assert_allclose(quadruped.idle_command(), standing_joint_targets())
    assert quadruped.gait(np.ones(13)).step_length_m == pytest.approx(0.1)


def test_resume_continues_the_epoch_count_with_fresh_noise():
    def fresh() -> PolicyRunner:
        return PolicyRunner(ACT_DIM, 100, steps_per_epoch=100, epochs=3, start_steps=1000, transitions_per_batch=50,
                         seed=4)

    original, resumed = fresh(), fresh()
    resumed.resume_at(env_steps=200, epoch=1)  # epoch 2's steps are in D_ENV, its evaluation is not
    assert resumed.evaluating and not resumed.finished and resumed.epoch == 1
    for core in (original, resumed):
        core.start_episode()
    first = [core.step(leg(Q, QDOT, 0.0), None, 0).action for core in (original, resumed)]
    assert not np.array_equal(*first)  # the resumed run does not replay the original's random actions
    with pytest.raises(ValueError, match="D_ENV lacks transitions of closed epochs"):
        fresh().resume_at(env_steps=150, epoch=2)
    done = fresh()
    done.resume_at(env_steps=300, epoch=3)
    assert done.finished


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda:0", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA"))])
def test_the_learner_trains_on_its_device_and_hands_out_cpu_snapshots_and_checkpoints(device, tmp_path):
    config = SACConfig(hidden_size=8, num_layers=1, batch_size=8, device=device)
    learner = LearnerCore(OBS_DIM, ACT_DIM, config, 0, 100, 100, 0, 1.0, 1.0)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(16, OBS_DIM)).astype(np.float32)
    learner.add_env({"obs": obs, "act": rng.uniform(-1, 1, (16, ACT_DIM)).astype(np.float32),
                     "reward": obs[:, 0], "next_obs": obs + 0.1, "terminated": np.zeros(16, np.float32)})
    assert learner.update() and {p.device for p in learner.sac.actor.parameters()} == {torch.device(device)}
    payload = learner.policy_payload()
    for name, tensor in learner.sac.actor.state_dict().items():
        sent = payload["actor"][name]
        assert sent.device == torch.device("cpu") and torch.equal(sent, tensor.cpu())
    learner.save_checkpoint(tmp_path / "latest.pt", {}, epoch=0)
    state = torch.load(tmp_path / "latest.pt", weights_only=True)  # no map_location: any host reads it
    resumed = LearnerCore(OBS_DIM, ACT_DIM, SACConfig(hidden_size=8, num_layers=1, batch_size=8), 1, 100, 100, 0,
                          1.0, 1.0)
    resumed.restore({"reward": np.zeros(0)}, state["sac"])
    assert resumed.updates == 1
    assert all(torch.equal(a.cpu(), b) for a, b in zip(learner.sac.actor.parameters(), resumed.sac.actor.parameters()))
