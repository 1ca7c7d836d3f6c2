"""The policy runner: pi_theta on a robot, ROS-free and torch-free (Algorithm 1, line 4).

Each state the robot reports, as a :class:`TaskSample` (observation, reward of the previous action,
termination), gives the previous action's transition and the next action, from a
:class:`~mdemorl_learner.numpy_actor.NumpyActor`. The agent node runs it behind ROS (the lockstep
simulation's path); on hardware it is meant to run inside the driver's loop process, so the same code
trains in simulation and acts on the robot. It imports numpy only.

Mirrors ``Trainer.env_step`` / ``Trainer.evaluate``: ``start_steps`` uniform random actions, then
samples of the squashed-Gaussian policy; after every ``steps_per_epoch`` env steps one
deterministic evaluation episode that is not recorded in D_ENV; ``epochs`` epochs in all. A
training episode also ends at an epoch boundary, because the robot has to be reset for the
evaluation (the single-process trainer uses a second env instead). An episode also ends on a terminal
state (MuJoCo tasks); its last transition is recorded with ``terminated`` = 1. Transitions go out in
batches of ``transitions_per_batch``, each produced by one policy version.

Random streams: ``seed`` seeds ``rng`` (``np.random.default_rng(seed)``), which draws the uniform random
actions (the first ``start_steps`` env steps, and any step before a policy has arrived); its first spawned
child, ``noise_rng``, draws the policy's exploration noise (``act_dim`` float32 standard normals per
sampled action). An evaluation with a policy takes its mean and draws nothing. :meth:`PolicyRunner.resume_at`
reseeds both from ``[seed, env_steps]``. (The single-process trainer samples its policy in torch, with
SAC's generator; its uniform actions come from ``default_rng(seed)`` as here.)

Pacing keeps Algorithm 1's ratio of SAC updates to real steps. After ``start_steps`` the learner does about one
SAC update per env step and its snapshot versions count updates, so ``(env_steps - start_steps) -
policy_version`` (:func:`policy_lag`) is how far the newest policy the runner has been given lags the data it
was given. ``pacing`` says where the runner waits while that exceeds ``max_policy_lag``: ``step`` before every
command (:attr:`Step.held`: a lockstep simulator waits meanwhile, and :meth:`PolicyRunner.resume` releases the
command once a newer policy is in bounds); ``episode`` only before an episode's first command, while the robot
is homed and held (a real robot can pause between episodes, never between two commands); ``off`` never. The same
rule gates an evaluation episode, so it only starts with a policy within the bound.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .numpy_actor import NumpyActor


@dataclass(frozen=True)
class TaskSample:
    """One state as the runner sees it: ``time_s`` since the episode started; the foot (leg only) in m."""

    obs: NDArray[np.float32]
    reward: float
    time_s: float
    terminated: bool = False
    foot: NDArray[np.float64] | None = None
    foot_desired: NDArray[np.float64] | None = None


@dataclass(frozen=True)
class EpisodeEnd:
    """A finished episode; ``epoch`` counts completed epochs (an evaluation completes one).

    An evaluation of the leg carries its foot path: ``foot`` and ``foot_desired`` [T, 2] (x forward, z
    up, metres), one row per control step, ``dt`` seconds apart on average (0 if T < 2); other tasks
    have none (T = 0).
    """

    evaluation: bool
    episode_return: float
    epoch: int
    foot: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 2)))
    foot_desired: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 2)))
    dt: float = 0.0


@dataclass(frozen=True)
class Step:
    """What to do after a joint state: apply ``action`` (in [-1, 1]), or the episode ended, or
    ``held``: send nothing until :meth:`PolicyRunner.resume` gives the action (pacing)."""

    action: NDArray[np.float32] | None
    episode_end: EpisodeEnd | None = None
    held: bool = False


@dataclass(frozen=True)
class Batch:
    """Transitions ready to publish, all produced by the policy ``policy_version``."""

    data: dict[str, NDArray[np.float32]]
    policy_version: int


PACING_MODES = ("step", "episode", "off")


def policy_lag(env_steps: int, start_steps: int, policy_version: int) -> int:
    """Env steps since ``start_steps`` that policy ``policy_version`` (its SAC updates) has not been trained on."""
    return (env_steps - start_steps) - policy_version


def pacing_can_progress(max_policy_lag: int, policy_period_updates: int) -> bool:
    """Whether pacing with ``max_policy_lag`` can always be released by the learner's snapshots.

    On a hold the agent has published all ``E`` env transitions. The learner credits one update
    per transition from ``start_steps`` on (``updates_per_step`` >= 1, ``batch_size`` <=
    ``start_steps``), so it keeps updating to at least ``E - start_steps + 1`` updates, and its
    newest snapshot (one every ``policy_period_updates`` = P updates) is at most P - 1 behind that:
    the lag falls to at most P - 2. A bound >= P always releases; a smaller one could wait for a
    snapshot that never comes.
    """
    return max_policy_lag >= policy_period_updates


def _streams(entropy: int | list[int]) -> tuple[np.random.Generator, np.random.Generator]:
    """The random-action stream of ``entropy`` and its first spawned child, the policy-noise stream."""
    actions = np.random.default_rng(entropy)
    return actions, actions.spawn(1)[0]


def save_foot_path(path: Path, end: EpisodeEnd) -> None:
    """Write ``end``'s foot path as ``foot``, ``foot_desired`` [T, 2] (m) and ``dt`` (s) to ``path`` (.npz).

    Atomic: written to ``<path>.tmp`` then renamed, so a reader never sees a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as stream:  # a file object: np.savez would append ".npz" to a name
        np.savez(stream, foot=np.asarray(end.foot, np.float64).reshape(-1, 2),
                 foot_desired=np.asarray(end.foot_desired, np.float64).reshape(-1, 2), dt=np.float64(end.dt))
    os.replace(tmp, path)


class PolicyRunner:
    """Turns each state the robot reports (a :class:`TaskSample`) into an action and, for training
    episodes, a transition.

    Call :meth:`start_episode` after each reset, then :meth:`step` on every sample with the newest
    policy and its version (None before the first); :meth:`take_batches` returns the transitions to
    publish. ``finished`` is set by the evaluation of the last epoch. With ``pacing`` a step may be
    ``held`` (see the module docstring); call :meth:`resume` when a newer policy has arrived.
    """

    def __init__(
        self,
        act_dim: int,
        episode_steps: int,
        steps_per_epoch: int,
        epochs: int,
        start_steps: int,
        transitions_per_batch: int,
        seed: int,
        pacing: str = "off",
        max_policy_lag: int = 0,
    ) -> None:
        if pacing not in PACING_MODES:
            raise ValueError(f"pacing={pacing!r} must be one of {', '.join(PACING_MODES)}")
        if max_policy_lag < 0:
            raise ValueError(f"max_policy_lag={max_policy_lag} must be >= 0")
        if episode_steps < 1:
            raise ValueError(f"episode_steps={episode_steps} must be >= 1")
        self.act_dim = act_dim
        self.episode_steps = episode_steps
        self.episode_length = 0
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self.start_steps = start_steps
        self.transitions_per_batch = transitions_per_batch
        self.pacing = pacing
        self.max_policy_lag = max_policy_lag
        self.seed = seed
        self.rng, self.noise_rng = _streams(seed)
        self.env_steps = 0
        self.epoch = 0
        self.evaluating = False
        self.finished = False
        self.nonfinite_actions = 0
        self.episode_return = 0.0
        self._previous: tuple[NDArray[np.float32], NDArray[np.float32], int] | None = None
        self._foot: list[NDArray[np.float64]] = []
        self._foot_desired: list[NDArray[np.float64]] = []
        self._times: list[float] = []
        self._held: NDArray[np.float32] | None = None  # the observation whose action is held
        self._pending: list[tuple[NDArray[np.float32], NDArray[np.float32], float, NDArray[np.float32], bool]] = []
        self._pending_version = 0
        self._ready: list[Batch] = []

    def resume_at(self, env_steps: int, epoch: int) -> None:
        """Continue a run whose D_ENV holds ``env_steps`` transitions and whose learner closed ``epoch`` epochs.

        If that epoch's training steps are all in D_ENV but its evaluation was not recorded, the next
        episode is that evaluation.
        """
        if env_steps < epoch * self.steps_per_epoch:
            raise ValueError(f"cannot resume at {env_steps} env steps after {epoch} epochs of "
                             f"{self.steps_per_epoch}: D_ENV lacks transitions of closed epochs")
        self.env_steps, self.epoch = env_steps, epoch
        self.evaluating = env_steps >= (epoch + 1) * self.steps_per_epoch
        # new streams: the run's own seed would repeat the actions D_ENV already holds
        self.rng, self.noise_rng = _streams([self.seed, env_steps])
        self.finished = epoch >= self.epochs

    def start_episode(self) -> None:
        """Begin the next episode (training, or the evaluation that ``evaluating`` announces)."""
        self.episode_length = 0
        self._previous = None
        self._held = None
        self.episode_return = 0.0
        self._foot, self._foot_desired, self._times = [], [], []

    @property
    def holding(self) -> bool:
        """A command is held until a policy within ``max_policy_lag`` arrives (:meth:`resume`)."""
        return self._held is not None

    def policy_lag(self, policy_version: int) -> int:
        """Env steps since ``start_steps`` that policy ``policy_version`` has not been trained on."""
        return policy_lag(self.env_steps, self.start_steps, policy_version)

    @property
    def at_episode_start(self) -> bool:
        """No command of the current episode has gone out yet."""
        return self._previous is None

    def must_wait(self, policy_version: int) -> bool:
        """The pacing rule: before a command (``step``) or an episode's first command (``episode``), wait while
        ``policy_lag(policy_version) > max_policy_lag``."""
        paced = self.pacing == "step" or (self.pacing == "episode" and self.at_episode_start)
        return paced and self.policy_lag(policy_version) > self.max_policy_lag

    def resume(self, actor: NumpyActor | None, policy_version: int) -> NDArray[np.float32] | None:
        """The held step's action if ``policy_version`` is now within the bound; else None (still holding).

        None as well when nothing is held.
        """
        if self._held is None or self.must_wait(policy_version):
            return None
        obs, self._held = self._held, None
        return self._choose(obs, actor, policy_version)

    def step(self, sample: TaskSample, actor: NumpyActor | None, policy_version: int) -> Step:
        """Reward the previous action with this state, then choose the next action (or end the episode).

        Actions are uniform random during the first ``start_steps`` env steps and while no policy
        has arrived (``actor`` None); then policy samples, or its mean in an evaluation. The step
        is ``held`` if ``policy_version`` lags too far (pacing); while a step is held no command
        has gone out, so a further state is not a new step and is ignored.
        """
        if self._held is not None:
            return Step(None, held=True)
        if self._previous is not None:
            obs, act, act_version = self._previous
            self.episode_return += sample.reward
            self.episode_length += 1
            ended = sample.terminated or self.episode_length >= self.episode_steps
            if self.evaluating:
                if sample.foot is not None:
                    self._foot.append(sample.foot)
                    self._foot_desired.append(sample.foot_desired)
                    self._times.append(sample.time_s)
            else:
                self._record(obs, act, sample.reward, sample.obs, sample.terminated, act_version)
                self.env_steps += 1
                ended = ended or self.env_steps % self.steps_per_epoch == 0
            if ended:
                return Step(None, self._end_episode())
        if self.must_wait(policy_version):
            self._held = sample.obs
            return Step(None, held=True)
        return Step(self._choose(sample.obs, actor, policy_version))

    def take_batches(self, flush: bool = False) -> list[Batch]:
        """Full batches (and with ``flush`` the partial one) to publish, oldest first."""
        if flush:
            self._seal()
        ready, self._ready = self._ready, []
        return ready

    def _choose(self, obs: NDArray[np.float32], actor: NumpyActor | None,
                policy_version: int) -> NDArray[np.float32]:
        action = self._act(obs, actor)
        self._previous = (obs, action, policy_version)
        return action

    def _act(self, obs: NDArray[np.float32], actor: NumpyActor | None) -> NDArray[np.float32]:
        if actor is None or (not self.evaluating and self.env_steps < self.start_steps):
            return self.rng.uniform(-1.0, 1.0, self.act_dim).astype(np.float32)
        action = actor.mean_action(obs) if self.evaluating else actor.sample(obs, self.noise_rng)
        if not np.isfinite(action).all():
            self.nonfinite_actions += 1
            return np.zeros(self.act_dim, np.float32)
        return action

    def _record(self, obs: NDArray[np.float32], act: NDArray[np.float32], reward: float,
                next_obs: NDArray[np.float32], terminated: bool, version: int) -> None:
        if self._pending and version != self._pending_version:
            self._seal()
        self._pending_version = version
        self._pending.append((obs, act, reward, next_obs, terminated))
        if len(self._pending) >= self.transitions_per_batch:
            self._seal()

    def _seal(self) -> None:
        if not self._pending:
            return
        obs, act, reward, next_obs, terminated = (np.asarray(column, dtype=np.float32)
                                                   for column in zip(*self._pending))
        data = {"obs": obs, "act": act, "reward": reward, "next_obs": next_obs, "terminated": terminated}
        self._ready.append(Batch(data, self._pending_version))
        self._pending = []

    def _end_episode(self) -> EpisodeEnd:
        if self.evaluating:
            self.epoch += 1
            self.finished = self.epoch >= self.epochs
            self.evaluating = False
            times = self._times
            dt = (times[-1] - times[0]) / (len(times) - 1) if len(times) >= 2 else 0.0
            return EpisodeEnd(True, self.episode_return, self.epoch, np.asarray(self._foot).reshape(-1, 2),
                              np.asarray(self._foot_desired).reshape(-1, 2), dt)
        self.evaluating = self.env_steps % self.steps_per_epoch == 0
        return EpisodeEnd(False, self.episode_return, self.epoch)
