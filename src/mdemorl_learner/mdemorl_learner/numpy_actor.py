"""pi_theta's forward pass in numpy: :class:`mdemorl_planner.networks.SquashedGaussianActor` without torch.

The actor's MLP maps an observation to ``mu`` and a raw log std (``2 * act_dim`` outputs); the action is
tanh(mu) (the mean) or tanh(mu + std * eps), eps ~ N(0, I), with log std clamped to [-20, 2]. Everything is
float32, as the torch actor computes. Imports numpy only, so it runs where torch is not loaded (the policy
runner next to the hardware).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

LOG_STD_MIN = -20.0  # as mdemorl_planner.networks
LOG_STD_MAX = 2.0
_LAYER_KEY = re.compile(r"net\.(\d+)\.(weight|bias)")


class NumpyActor:
    """A squashed-Gaussian actor: ReLU hidden layers, a linear output of ``mu`` and the raw log std.

    ``weights[i]`` is layer i's ``[out, in]`` matrix (``nn.Linear``'s layout), ``biases[i]`` its ``[out]``
    vector. Observations are ``[obs_dim]`` or a batch ``[B, obs_dim]``; actions come back the same way.
    """

    def __init__(self, weights: list[NDArray], biases: list[NDArray]) -> None:
        if not weights or len(weights) != len(biases):
            raise ValueError(f"actor needs one bias per weight matrix, got {len(weights)} and {len(biases)}")
        width = None
        for i, (weight, bias) in enumerate(zip(weights, biases)):
            if weight.ndim != 2 or bias.shape != weight.shape[:1] or width not in (None, weight.shape[1]):
                raise ValueError(f"actor layer {i}: weight {weight.shape} and bias {bias.shape} do not chain "
                                 f"onto {width} inputs")
            width = weight.shape[0]
        if width % 2:
            raise ValueError(f"actor output has {width} values, not 2 * act_dim")
        self._transposed = [np.ascontiguousarray(np.asarray(w, np.float32).T) for w in weights]  # [in, out]
        self._biases = [np.asarray(b, np.float32).copy() for b in biases]
        self.obs_dim = int(weights[0].shape[1])
        self.act_dim = width // 2

    @classmethod
    def from_state_dict(cls, state: Mapping[str, ArrayLike]) -> NumpyActor:
        """The actor of a ``SquashedGaussianActor.state_dict()`` (a policy snapshot's ``"actor"``): CPU tensors
        or arrays under ``net.<i>.weight`` / ``net.<i>.bias``; ValueError if it is no such actor."""
        layers: dict[int, dict[str, NDArray]] = {}
        for key, value in state.items():
            match = _LAYER_KEY.fullmatch(key)
            if match is None:
                raise ValueError(f"actor state has an unexpected entry {key!r}")
            layers.setdefault(int(match[1]), {})[match[2]] = np.asarray(value, np.float32)
        ordered = [layers[i] for i in sorted(layers)]
        if any(set(layer) != {"weight", "bias"} for layer in ordered):
            raise ValueError("actor state lacks a weight or bias of some layer")
        return cls([layer["weight"] for layer in ordered], [layer["bias"] for layer in ordered])

    def distribution(self, obs: ArrayLike) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """``mu`` and std (``exp`` of the clamped log std) of the pre-squash Gaussian at ``obs``."""
        h = np.asarray(obs, np.float32)
        last = len(self._transposed) - 1
        for i, (weight, bias) in enumerate(zip(self._transposed, self._biases)):
            h = h @ weight
            h += bias
            if i < last:
                np.maximum(h, 0.0, out=h)
        mu, raw_log_std = h[..., : self.act_dim], h[..., self.act_dim:]
        return mu, np.exp(np.clip(raw_log_std, LOG_STD_MIN, LOG_STD_MAX))

    def mean_action(self, obs: ArrayLike) -> NDArray[np.float32]:
        """The deterministic action tanh(mu(obs))."""
        return np.tanh(self.distribution(obs)[0])

    def noisy_action(self, obs: ArrayLike, eps: ArrayLike) -> NDArray[np.float32]:
        """tanh(mu + std * eps) for standard normal noise ``eps`` shaped like the action."""
        mu, std = self.distribution(obs)
        return np.tanh(mu + std * np.asarray(eps, np.float32))

    def sample(self, obs: ArrayLike, rng: np.random.Generator) -> NDArray[np.float32]:
        """An action drawn from the policy at ``obs``: :meth:`noisy_action` with float32 noise from ``rng``."""
        return self.noisy_action(obs, rng.standard_normal((*np.shape(obs)[:-1], self.act_dim), dtype=np.float32))
