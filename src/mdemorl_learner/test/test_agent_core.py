"""AgentCore (ROS-free): episode/epoch schedule, actions, batches; joint-state parsing."""

import numpy as np
import pytest
import torch

from mdemorl_learner.agent_core import AgentCore, joint_state_arrays
from mdemorl_planner.networks import SquashedGaussianActor
from stochlite_bringup.tasks.leg_task import ACT_DIM, OBS_DIM, LegTask

Q, QDOT = np.array([0.1, -0.6]), np.array([0.5, -0.2])


def run_episode(core: AgentCore, actor, version: int = 0) -> tuple[int, object]:
    """Feed joint states until the episode ends; returns (actions taken, EpisodeEnd)."""
    core.start_episode()
    actions = 0
    while True:
        step = core.step(Q, QDOT, actions * 0.002, actor, version)
        if step.episode_end is not None:
            return actions, step.episode_end
        assert step.action.shape == (ACT_DIM,) and np.all(np.abs(step.action) <= 1.0)
        actions += 1


def test_epochs_cut_training_at_the_boundary_then_evaluate_and_finish():
    core = AgentCore(LegTask(episode_steps=3), steps_per_epoch=5, epochs=2, start_steps=2,
                     transitions_per_batch=4, seed=0)
    actor = SquashedGaussianActor(OBS_DIM, ACT_DIM, 8, 1)
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
    core = AgentCore(LegTask(episode_steps=100), steps_per_epoch=100, epochs=1, start_steps=0,
                     transitions_per_batch=50, seed=0)
    actor = SquashedGaussianActor(OBS_DIM, ACT_DIM, 8, 1)
    core.start_episode()
    for i in range(4):
        core.step(Q, QDOT, i * 0.002, actor, 1 if i < 2 else 2)
    assert [(len(b.data["reward"]), b.policy_version) for b in core.take_batches()] == [(2, 1)]
    with torch.no_grad():
        actor.net[-1].bias.fill_(float("nan"))
    assert np.array_equal(core.step(Q, QDOT, 0.008, actor, 2).action, np.zeros(ACT_DIM))
    assert core.nonfinite_actions == 1


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
