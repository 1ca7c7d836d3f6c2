"""Payloads of the policy and dynamics snapshots (ROS-free): state dicts in, ready-to-use modules out.

policy:   {"actor", "critic", "obs_dim", "act_dim", "hidden_size", "num_layers"}
dynamics: {"model", "obs_dim", "act_dim", "num_members", "num_elites", "hidden_size", "num_layers", "val_loss"}

Payloads, like messages and checkpoints, travel with their tensors on the CPU (:func:`to_cpu`); the loaders put
the modules on the device they are asked for.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .ensemble import ProbabilisticEnsemble
from .networks import SquashedGaussianActor, TwinQ

UNBOUNDED_BUFFERS = ("output_low", "output_high")  # +-inf until the ensemble is fitted: no bound yet


def to_cpu(tree):
    """``tree`` (tensors in nested dicts, lists and tuples) with every tensor on the CPU. A tensor already there
    is itself, not a copy; the containers are shallow copies keeping their type and attributes (a state
    dict's ``_metadata``)."""
    if isinstance(tree, torch.Tensor):
        return tree.cpu()
    if isinstance(tree, dict):
        moved = copy.copy(tree)
        moved.update((key, to_cpu(value)) for key, value in tree.items())
        return moved
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_cpu(value) for value in tree)
    return tree


class PolicyValue:
    """pi_theta's mean action and V(x) = min(Q1, Q2)(x, pi_mean(x)), as SAC.policy_mean and SAC.value."""

    def __init__(self, actor: SquashedGaussianActor, critic: TwinQ, obs_dim: int, act_dim: int) -> None:
        self.actor, self.critic = actor, critic
        self.obs_dim, self.act_dim = obs_dim, act_dim

    @torch.no_grad()
    def policy_mean(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.mean_action(obs)

    @torch.no_grad()
    def value(self, obs: torch.Tensor) -> torch.Tensor:
        flat = obs.reshape(-1, self.obs_dim)
        return self.critic.q_values(flat, self.actor.mean_action(flat)).amin(0).reshape(obs.shape[:-1])


def policy_payload(actor: SquashedGaussianActor, critic: TwinQ, obs_dim: int, act_dim: int,
                   hidden_size: int, num_layers: int) -> dict:
    return {"actor": actor.state_dict(), "critic": critic.state_dict(), "obs_dim": obs_dim, "act_dim": act_dim,
            "hidden_size": hidden_size, "num_layers": num_layers}


def dynamics_payload(model: ProbabilisticEnsemble, hidden_size: int, num_layers: int, val_loss: float) -> dict:
    return {"model": model.state_dict(), "obs_dim": model.obs_dim, "act_dim": model.act_dim,
            "num_members": model.num_members, "num_elites": model.num_elites, "hidden_size": hidden_size,
            "num_layers": num_layers, "val_loss": float(val_loss)}


def _sizes(state: dict, keys: tuple[str, ...], kind: str) -> list[int]:
    sizes = []
    for key in keys:
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{kind} snapshot: '{key}' must be an integer >= 1, got {value!r}")
        sizes.append(value)
    return sizes


def _load(module: nn.Module, state: object, key: str, kind: str) -> None:
    """Load ``state`` strictly into ``module``; ValueError if it does not fit or holds non-finite weights."""
    if not isinstance(state, dict):
        raise ValueError(f"{kind} snapshot: '{key}' must be a state dict, got {type(state).__name__}")
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, KeyError) as exc:
        detail = " ".join(line.strip() for line in str(exc).strip().splitlines()[1:]) or str(exc)
        raise ValueError(f"{kind} snapshot: '{key}' does not match the declared sizes: {detail[:300]}") from None
    for name, tensor in module.state_dict().items():
        allowed = torch.isnan(tensor).logical_not() if name in UNBOUNDED_BUFFERS else torch.isfinite(tensor)
        if tensor.is_floating_point() and not allowed.all():
            raise ValueError(f"{kind} snapshot: '{key}.{name}' holds non-finite values")


def load_policy(state: dict, device: str = "cpu") -> PolicyValue:
    """Actor and twin critic of a policy payload, on ``device``; ValueError says what is wrong with it."""
    obs_dim, act_dim, hidden, layers = _sizes(state, ("obs_dim", "act_dim", "hidden_size", "num_layers"), "policy")
    actor = SquashedGaussianActor(obs_dim, act_dim, hidden, layers).to(device)
    critic = TwinQ(obs_dim, act_dim, hidden, layers).to(device)
    _load(actor, state.get("actor"), "actor", "policy")
    _load(critic, state.get("critic"), "critic", "policy")
    return PolicyValue(actor.eval(), critic.eval(), obs_dim, act_dim)


def load_dynamics(state: dict, device: str = "cpu") -> ProbabilisticEnsemble:
    """The ensemble of a dynamics payload, on ``device``; ValueError says what is wrong with it."""
    obs_dim, act_dim, members, elites, hidden, layers = _sizes(
        state, ("obs_dim", "act_dim", "num_members", "num_elites", "hidden_size", "num_layers"), "dynamics")
    if elites > members:
        raise ValueError(f"dynamics snapshot: num_elites {elites} exceeds num_members {members}")
    model = ProbabilisticEnsemble(obs_dim, act_dim, num_members=members, num_elites=elites,
                                  hidden_size=hidden, num_layers=layers, device=device)
    _load(model, state.get("model"), "model", "dynamics")
    elite_ids = model.elite_indices
    if elite_ids.min() < 0 or elite_ids.max() >= members:
        raise ValueError(f"dynamics snapshot: elite indices {elite_ids.tolist()} are not in [0, {members})")
    return model
