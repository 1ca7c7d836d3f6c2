"""Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications")."""

import copy
import hashlib
from dataclasses import asdict, dataclass
from os import PathLike

import numpy as np
import torch

from mdemorl_planner.dmd_mpc import COMPUTE_DTYPES
from mdemorl_planner.networks import SquashedGaussianActor, TwinQ
from mdemorl_planner.snapshots import to_cpu

from mdemorl_learner.flat_parameters import FlatParameters
from mdemorl_learner.fused_adam import FlatAdam
from mdemorl_learner.sac_gradients import SACBatch, actor_parameters, critic_parameters, sac_gradients


@dataclass
class SACConfig:
    """SAC hyper-parameters.

    ``init_alpha`` is the starting temperature of the automatic entropy tuning:
    1.0 (log alpha = 0), the usual start for tuned SAC; a large alpha explores
    broadly at first and falls quickly once the entropy exceeds the target.
    ``target_entropy`` ``None`` means ``-act_dim``. ``compute_dtype`` ``"bfloat16"`` runs the
    hidden layers' matmuls of :meth:`SAC.update` in bfloat16 (about 2x faster with AVX512-BF16);
    weights, optimiser state, Q values, log-probabilities and losses stay float32. ``device`` holds the networks,
    optimiser state and noise generator, and runs the updates ("cpu", "cuda", "cuda:1", ...).
    """

    hidden_size: int = 256
    num_layers: int = 2
    gamma: float = 0.99
    tau: float = 0.005
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    batch_size: int = 256
    init_alpha: float = 1.0
    target_entropy: float | None = None
    compute_dtype: str = "float32"
    device: str = "cpu"


def _one_adam_state(critic_opt: dict, actor_opt: dict) -> dict:
    """The single Adam's state from a checkpoint written before 2026-12-04, which had a critic Adam and an
    actor-and-temperature Adam: the actor's parameter indices follow the critic's."""
    offset = sum(len(group["params"]) for group in critic_opt["param_groups"])
    groups = critic_opt["param_groups"] + [{**group, "params": [i + offset for i in group["params"]]}
                                           for group in actor_opt["param_groups"]]
    return {"state": {**critic_opt["state"], **{i + offset: s for i, s in actor_opt["state"].items()}},
            "param_groups": groups}


class SAC:
    """SAC agent with twin Q critics, Polyak targets and automatic entropy tuning.

    Actions are in [-1, 1]. One :meth:`update` is one gradient step of the critic and, from the same
    parameters, of the actor and temperature (one Adam, a parameter group each), then the
    Polyak target update. The actor's loss sees the critic before this step's critic update, as in the
    authors' original softlearning code, which runs the three updates in one ``session.run``. The gradients
    of the three losses are written out (:mod:`mdemorl_learner.sac_gradients`), not taken by autograd.
    Everything lives on ``config.device``; :meth:`act` and :meth:`update` take numpy, :meth:`policy_mean` and
    :meth:`value` tensors on that device, and :meth:`state_dict` gives CPU tensors.
    """

    def __init__(self, obs_dim: int, act_dim: int, config: SACConfig, seed: int = 0) -> None:
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self._set_config(config)
        self.device = torch.device(config.device)
        h, n = config.hidden_size, config.num_layers
        with torch.random.fork_rng(devices=[]):  # initialised on the CPU: the same weights on every device
            torch.manual_seed(seed)
            self.actor = SquashedGaussianActor(obs_dim, act_dim, h, n).to(self.device)
            self.critic = TwinQ(obs_dim, act_dim, h, n).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.nn.Parameter(torch.tensor(float(np.log(config.init_alpha)), device=self.device))
        self.generator = torch.Generator(self.device).manual_seed(seed)
        # One buffer for everything Adam steps, critic first, and one for the target in the same order: the
        # update casts each in one pass, Adam steps the buffer and the Polyak average is one lerp.
        critic_params = critic_parameters(self.critic)
        self._trained = FlatParameters([*critic_params, *actor_parameters(self.actor), self.log_alpha])
        self._target = FlatParameters(critic_parameters(self.critic_target), with_grad=False)
        self._n_critic = len(critic_params)
        self.optimizer = FlatAdam(self._trained, [  # one step for the three parameter groups
            {"params": list(self.critic.parameters()), "lr": config.critic_lr},
            {"params": list(self.actor.parameters()), "lr": config.actor_lr},
            {"params": [self.log_alpha], "lr": config.alpha_lr},
        ])
        self._updates = 0

    def _set_config(self, config: SACConfig) -> None:
        if config.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"SAC compute_dtype {config.compute_dtype!r} is not one of {', '.join(COMPUTE_DTYPES)}")
        self.config = config
        self._dtype = getattr(torch, config.compute_dtype)
        self.target_entropy = (
            float(-self.act_dim) if config.target_entropy is None else float(config.target_entropy)
        )

    @property
    def updates(self) -> int:
        """Number of gradient steps taken so far."""
        return self._updates

    @property
    def alpha(self) -> float:
        """Current entropy temperature."""
        return float(self.log_alpha.detach().exp())

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Action(s) in [-1, 1] for one observation ``[n]`` or a batch ``[B, n]``."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device)
        a, _ = self.actor(x, deterministic, with_logprob=False, generator=self.generator)
        return a.cpu().numpy()

    @torch.no_grad()
    def policy_mean(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic policy tanh(mu(x)), the planner's shift model pi_theta(x)."""
        return self.actor.mean_action(obs)

    @torch.no_grad()
    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(x) = min(Q1, Q2)(x, pi_mean(x)) for the planner's terminal cost.

        Evaluated at the deterministic action the shift model also uses, so the
        terminal cost is noise-free and consistent with the planner's nominal
        controls; no entropy bonus, and the min of the twins for pessimism against
        errors the MPC optimiser would otherwise exploit. Accepts any leading shape.
        """
        flat = obs.reshape(-1, self.obs_dim)
        q = self.critic.q_values(flat, self.actor.mean_action(flat)).amin(0)
        return q.reshape(obs.shape[:-1])

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """One SAC gradient step on ``batch`` (keys as :class:`ReplayBuffer` samples)."""
        obs, act, reward, next_obs, terminated = (
            torch.from_numpy(np.asarray(batch[k], dtype=np.float32)).to(self.device)
            for k in ("obs", "act", "reward", "next_obs", "terminated")
        )
        n = obs.shape[0]
        expected = ((n, self.obs_dim), (n, self.act_dim), (n,), (n, self.obs_dim), (n,))
        got = (obs.shape, act.shape, reward.shape, next_obs.shape, terminated.shape)
        if got != expected:
            raise ValueError(
                "batch shapes (obs, act, reward, next_obs, terminated): expected "
                f"{expected}, got {tuple(tuple(g) for g in got)}"
            )
        trained, target, k = self._trained.cast(self._dtype), self._target.cast(self._dtype), self._n_critic
        critic = trained[:k - 2] + self._trained.params[k - 2:k]  # the critics' output layers stay float32
        target = target[:-2] + self._target.params[-2:]
        grads = sac_gradients(trained[k:-1], critic, target, self.log_alpha,
                              SACBatch(obs, act, reward, next_obs, terminated), self.config.gamma,
                              self.target_entropy, self.generator)
        self._trained.set_grads([*grads.critic, *grads.actor, grads.log_alpha])
        self.optimizer.step()

        with torch.no_grad():  # Polyak averaging
            self._target.data.lerp_(self._trained.data[:self._target.data.numel()], self.config.tau)
        self._updates += 1
        stats = [grads.q_loss, grads.pi_loss, grads.alpha, -grads.logp_mean, grads.q_mean]
        names = ("q_loss", "pi_loss", "alpha", "entropy", "q_mean")
        return dict(zip(names, torch.stack(stats).tolist()))

    def state_dict(self) -> dict:
        """Snapshot (deep copy, tensors on the CPU) of everything needed to resume exactly.

        Networks, targets, log_alpha, optimiser moments, the noise RNG (and its device type) and counters.
        """
        return copy.deepcopy(to_cpu({
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "config": asdict(self.config),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "generator_device": self.device.type,
            "updates": self._updates,
        }))

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict` (dimensions must match) onto this agent's device.

        A CPU and a CUDA generator's states differ: from another device type the noise goes on from a
        generator seeded by the saved state, reproducibly but not as the saved run's would have."""
        if (state["obs_dim"], state["act_dim"]) != (self.obs_dim, self.act_dim):
            raise ValueError(
                f"state is for obs_dim/act_dim {state['obs_dim']}/{state['act_dim']}, "
                f"agent has {self.obs_dim}/{self.act_dim}"
            )
        self._set_config(SACConfig(**{**state["config"], "device": self.config.device}))
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        optimizer = state["optimizer"] if "optimizer" in state else _one_adam_state(state["critic_opt"], state["actor_opt"])
        # Optimizer.load_state_dict keeps references to the given moment tensors.
        self.optimizer.load_state_dict(copy.deepcopy(optimizer))
        if state.get("generator_device", "cpu") == self.device.type:
            self.generator.set_state(state["generator"])
        else:
            saved = hashlib.sha256(state["generator"].numpy().tobytes()).digest()
            self.generator.manual_seed(int.from_bytes(saved[:8], "little"))
        self._updates = int(state["updates"])

    def save(self, path: str | PathLike) -> None:
        """Write :meth:`state_dict` to ``path`` with ``torch.save``."""
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path: str | PathLike, device: str = "cpu") -> "SAC":
        """Rebuild an agent saved with :meth:`save`, on ``device``."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        agent = cls(state["obs_dim"], state["act_dim"], SACConfig(**{**state["config"], "device": device}))
        agent.load_state_dict(state)
        return agent
