"""The agent's loop without ROS: episodes, epochs, actions and transition batches (Algorithm 1, line 4).

Mirrors ``Trainer.env_step`` / ``Trainer.evaluate``: ``start_steps`` uniform random actions, then
samples of the squashed-Gaussian policy; after every ``steps_per_epoch`` env steps one
deterministic evaluation episode that is not recorded in D_ENV; ``epochs`` epochs in all. A
training episode also ends at an epoch boundary, because the robot has to be reset for the
evaluation (the single-process trainer uses a second env instead).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from mdemorl_planner.networks import SquashedGaussianActor
from numpy.typing import NDArray
from stochlite_bringup.tasks.leg_task import ACT_DIM, JOINT_NAMES, LegTask


@dataclass(frozen=True)
class EpisodeEnd:
    """A finished episode; ``epoch`` counts completed epochs (an evaluation completes one)."""

    evaluation: bool
    episode_return: float
    epoch: int
    foot: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 2)))
    foot_desired: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 2)))


@dataclass(frozen=True)
class Step:
    """What to do after a joint state: apply ``action`` (in [-1, 1]), or the episode ended."""

    action: NDArray[np.float32] | None
    episode_end: EpisodeEnd | None = None


@dataclass(frozen=True)
class Batch:
    """Transitions ready to publish, all produced by the policy ``policy_version``."""

    data: dict[str, NDArray[np.float32]]
    policy_version: int


def joint_state_arrays(
    names: Sequence[str], position: Sequence[float], velocity: Sequence[float]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``q, qdot`` in :data:`JOINT_NAMES` order from a JointState's fields; ValueError if malformed."""
    names = list(names)
    if len(position) != len(names) or len(velocity) != len(names):
        raise ValueError(
            f"joint state has {len(names)} names, {len(position)} positions and {len(velocity)} velocities"
        )
    try:
        index = [names.index(joint) for joint in JOINT_NAMES]
    except ValueError:
        raise ValueError(f"joint state names {names} lack one of {list(JOINT_NAMES)}") from None
    q = np.asarray(position, dtype=np.float64)[index]
    qdot = np.asarray(velocity, dtype=np.float64)[index]
    if not (np.isfinite(q).all() and np.isfinite(qdot).all()):
        raise ValueError(f"joint state is not finite: position {list(position)}, velocity {list(velocity)}")
    return q, qdot


class AgentCore:
    """Turns each joint state into an action and, for training episodes, a transition.

    Call :meth:`start_episode` after each reset, then :meth:`step` on every joint state with
    the time since the episode's first state; :meth:`take_batches` returns the transitions to
    publish. ``finished`` is set by the evaluation of the last epoch.
    """

    def __init__(
        self,
        task: LegTask,
        steps_per_epoch: int,
        epochs: int,
        start_steps: int,
        transitions_per_batch: int,
        seed: int,
    ) -> None:
        self.task = task
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.start_steps = start_steps
        self.transitions_per_batch = transitions_per_batch
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.env_steps = 0
        self.epoch = 0
        self.evaluating = False
        self.finished = False
        self.nonfinite_actions = 0
        self.episode_return = 0.0
        self._previous: tuple[NDArray[np.float32], NDArray[np.float32], int] | None = None
        self._foot: list[NDArray[np.float64]] = []
        self._foot_desired: list[NDArray[np.float64]] = []
        self._pending: list[tuple[NDArray[np.float32], NDArray[np.float32], float, NDArray[np.float32]]] = []
        self._pending_version = 0
        self._ready: list[Batch] = []

    def start_episode(self) -> None:
        """Begin the next episode (training, or the evaluation that ``evaluating`` announces)."""
        self.task.reset()
        self._previous = None
        self.episode_return = 0.0
        self._foot, self._foot_desired = [], []

    def step(
        self, q: NDArray[np.float64], qdot: NDArray[np.float64], elapsed_s: float,
        actor: SquashedGaussianActor | None, policy_version: int,
    ) -> Step:
        """Reward the previous action with this state, then choose the next action (or end the episode).

        Actions are uniform random during the first ``start_steps`` env steps and while no policy
        has arrived (``actor`` None); then policy samples, or its mean in an evaluation.
        """
        sample = self.task.sample(q, qdot, elapsed_s)
        if self._previous is not None:
            obs, act, act_version = self._previous
            self.episode_return += sample.reward
            truncated = self.task.advance()
            if self.evaluating:
                self._foot.append(sample.foot_position)
                self._foot_desired.append(sample.desired_foot_position)
            else:
                self._record(obs, act, sample.reward, sample.obs, act_version)
                self.env_steps += 1
                truncated = truncated or self.env_steps % self.steps_per_epoch == 0
            if truncated:
                return Step(None, self._end_episode())
        action = self._act(sample.obs, actor)
        self._previous = (sample.obs, action, policy_version)
        return Step(action)

    def take_batches(self, flush: bool = False) -> list[Batch]:
        """Full batches (and with ``flush`` the partial one) to publish, oldest first."""
        if flush:
            self._seal()
        ready, self._ready = self._ready, []
        return ready

    def _act(self, obs: NDArray[np.float32], actor: SquashedGaussianActor | None) -> NDArray[np.float32]:
        if actor is None or (not self.evaluating and self.env_steps < self.start_steps):
            return self.rng.uniform(-1.0, 1.0, ACT_DIM).astype(np.float32)
        with torch.no_grad():
            action, _ = actor(torch.from_numpy(obs), deterministic=self.evaluating, with_logprob=False,
                              generator=self.generator)
        action = action.numpy()
        if not np.isfinite(action).all():
            self.nonfinite_actions += 1
            return np.zeros(ACT_DIM, np.float32)
        return action

    def _record(self, obs, act, reward: float, next_obs, version: int) -> None:
        if self._pending and version != self._pending_version:
            self._seal()
        self._pending_version = version
        self._pending.append((obs, act, reward, next_obs))
        if len(self._pending) >= self.transitions_per_batch:
            self._seal()

    def _seal(self) -> None:
        if not self._pending:
            return
        obs, act, reward, next_obs = (np.asarray(column, dtype=np.float32) for column in zip(*self._pending))
        data = {"obs": obs, "act": act, "reward": reward, "next_obs": next_obs,
                "terminated": np.zeros(len(reward), np.float32)}  # the leg task never terminates
        self._ready.append(Batch(data, self._pending_version))
        self._pending = []

    def _end_episode(self) -> EpisodeEnd:
        if self.evaluating:
            self.epoch += 1
            self.finished = self.epoch >= self.epochs
            self.evaluating = False
            return EpisodeEnd(True, self.episode_return, self.epoch,
                              np.asarray(self._foot), np.asarray(self._foot_desired))
        self.evaluating = self.env_steps % self.steps_per_epoch == 0
        return EpisodeEnd(False, self.episode_return, self.epoch)
