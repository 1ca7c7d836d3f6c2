"""Probabilistic ensemble dynamics model f_phi (paper sec. IV.A "Model learning", Algorithm 1 line 6).

K Gaussian MLPs predict (x' - x, r) from (x, u). All members run as one batched tensor
program: every layer holds weights shaped [K, in, out] and is applied with ``torch.baddbmm``.
Members are trained with the Gaussian NLL of probabilistic ensembles (Chua et al. 2018, ref. [7]);
the paper's L2 loss J_phi of Algorithm 1 line 6 is the held-out MSE used for early stopping and elites.
"""
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .dmd_mpc import COMPUTE_DTYPES

LOGVAR_BOUND_PENALTY = 0.01  # weight of the penalty that keeps the learned log-variance bounds tight
MIN_RELATIVE_IMPROVEMENT = 0.01  # a member "improves" when its validation MSE drops by more than 1 %
EVAL_CHUNK_ROWS = 20_000  # rows per forward pass when evaluating the held-out split
RANGE_MARGIN = 0.1  # predicted states and rewards may leave the fitted data's range by 10 % of its span


class ProbabilisticEnsemble(nn.Module):
    """K probabilistic MLPs (x, u) -> N(mean, var) over (x' - x, r), with elite selection.

    Parameters, buffers, optimiser state and training data live on ``device``; the weights are drawn on the
    CPU from ``seed``, so every device starts from the same ones.
    """

    def __init__(self, obs_dim: int, act_dim: int, num_members: int = 7, num_elites: int = 5,
                 hidden_size: int = 200, num_layers: int = 4, learning_rate: float = 1e-3,
                 weight_decay: float = 5e-5, seed: int = 0, device: str = "cpu") -> None:
        super().__init__()
        if not 1 <= num_elites <= num_members:
            raise ValueError(f"need 1 <= num_elites ({num_elites}) <= num_members ({num_members})")
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.num_members, self.num_elites = num_members, num_elites
        in_dim, self.out_dim = obs_dim + act_dim, obs_dim + 1
        init_generator = torch.Generator().manual_seed(seed)
        sizes = [in_dim] + [hidden_size] * num_layers + [2 * self.out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(
                (torch.rand(num_members, fan_in, fan_out, generator=init_generator) * 2 - 1) * bound))
            self.biases.append(nn.Parameter(torch.zeros(num_members, 1, fan_out)))
        self.max_logvar = nn.Parameter(torch.full((self.out_dim,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((self.out_dim,), -10.0))
        self.register_buffer("input_mean", torch.zeros(in_dim))
        self.register_buffer("input_std", torch.ones(in_dim))
        self.register_buffer("elite_indices", torch.arange(num_elites))
        self.register_buffer("output_low", torch.full((self.out_dim,), -math.inf))  # bounds of (x', r): see step
        self.register_buffer("output_high", torch.full((self.out_dim,), math.inf))
        self._elite_cache: tuple[torch.dtype, list[torch.Tensor], list[torch.Tensor]] | None = None
        self.device = torch.device(device)
        self.to(self.device)
        self.optimizer = torch.optim.Adam([
            {"params": list(self.weights), "weight_decay": weight_decay},
            {"params": [*self.biases, self.max_logvar, self.min_logvar], "weight_decay": 0.0},
        ], lr=learning_rate)
        self._split_rng = np.random.default_rng(seed)

    @property
    def elites(self) -> list[int]:
        """Indices of the members with the lowest validation MSE at the last ``fit``."""
        return self.elite_indices.tolist()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._elite_cache = None
        return super().load_state_dict(state_dict, strict, assign)

    def _normalize(self, inputs: torch.Tensor) -> torch.Tensor:
        return (inputs - self.input_mean) / self.input_std

    def _elite_layers(self, dtype: torch.dtype) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The elites' weights and biases in ``dtype`` for prediction, cached until the next fit or load."""
        if self._elite_cache is None or self._elite_cache[0] != dtype:
            elites = self.elite_indices
            self._elite_cache = (dtype, [w.detach()[elites].to(dtype) for w in self.weights],
                                 [b.detach()[elites].to(dtype) for b in self.biases])
        return self._elite_cache[1], self._elite_cache[2]

    def _forward(self, x: torch.Tensor, members: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised inputs [G, N, in] -> (mean, bounded logvar) [G, N, out] for members[g] (all K if None)."""
        weights = [w if members is None else w[members] for w in self.weights]
        biases = [b if members is None else b[members] for b in self.biases]
        return self._layers(x, weights, biases)

    def _layers(self, x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """[G, N, in] through per-group layers -> float32 (mean, bounded logvar) [G, N, out]."""
        h = x
        for layer, (w, b) in enumerate(zip(weights, biases)):
            h = torch.baddbmm(b, h, w)
            if layer < len(weights) - 1:
                h = F.silu(h, inplace=not torch.is_grad_enabled())
        mean, raw_logvar = h.float().split(self.out_dim, dim=-1)
        logvar = self.max_logvar - F.softplus(self.max_logvar - raw_logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar

    def _nll_loss(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Gaussian NLL summed over members (mean over rows and outputs) plus the log-variance bound penalty."""
        mean, logvar = self._forward(x)
        nll = ((mean - target) ** 2 * torch.exp(-logvar) + logvar).mean(dim=(1, 2)).sum()
        return nll + LOGVAR_BOUND_PENALTY * (self.max_logvar.sum() - self.min_logvar.sum())

    @torch.no_grad()
    def _member_mse(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-member MSE [K] of the predicted mean on un-normalised inputs x [N, in], target [N, out]."""
        squared_error = torch.zeros(self.num_members, device=self.device)
        for start in range(0, x.shape[0], EVAL_CHUNK_ROWS):
            chunk = self._normalize(x[start:start + EVAL_CHUNK_ROWS])
            mean, _ = self._forward(chunk.repeat(self.num_members, 1, 1))
            squared_error += ((mean - target[start:start + EVAL_CHUNK_ROWS]) ** 2).sum(dim=(1, 2))
        return squared_error / (x.shape[0] * self.out_dim)

    def fit(self, obs: np.ndarray, act: np.ndarray, reward: np.ndarray, next_obs: np.ndarray,
            holdout_fraction: float = 0.2, batch_size: int = 256, max_epochs: int | None = None,
            max_epochs_since_improvement: int = 5, max_holdout: int = 5000, compute_dtype: str = "float32") -> dict:
        """Train on D_ENV with a held-out split and per-member early stopping; pick the elites.

        Each member sees its own bootstrap resample of the training split, reshuffled every epoch.
        A member's weights are snapshotted whenever its held-out MSE improves by more than 1 %;
        training stops after ``max_epochs_since_improvement`` epochs without any member improving
        (or at ``max_epochs``) and every member is restored to its best snapshot. With no held-out
        rows (tiny data sets) the training split is used for validation. ``compute_dtype`` ``"bfloat16"``
        runs the training forward passes under the device's autocast (on the CPU 1.3-1.6x faster here, the same
        held-out loss on HalfCheetah and the leg); weights, optimiser, losses and validation stay float32.
        Returns {'val_loss': mean elite held-out MSE, 'train_loss': last epoch's mean NLL objective
        per member, 'epochs': epochs run}.
        """
        if compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"ensemble compute_dtype {compute_dtype!r} is not one of {', '.join(COMPUTE_DTYPES)}")
        inputs = torch.as_tensor(np.concatenate([obs, act], axis=-1), dtype=torch.float32, device=self.device)
        targets = torch.as_tensor(np.concatenate(
            [next_obs - obs, np.reshape(reward, (-1, 1))], axis=-1), dtype=torch.float32, device=self.device)
        permutation = torch.as_tensor(self._split_rng.permutation(inputs.shape[0]), device=self.device)
        num_holdout = min(int(inputs.shape[0] * holdout_fraction), max_holdout)
        train_x, train_y = inputs[permutation[num_holdout:]], targets[permutation[num_holdout:]]
        val_x, val_y = ((inputs[permutation[:num_holdout]], targets[permutation[:num_holdout]])
                        if num_holdout > 0 else (train_x, train_y))

        self.input_mean.copy_(train_x.mean(dim=0))
        outputs = torch.as_tensor(np.concatenate([np.concatenate([obs, next_obs]), np.reshape(
            np.concatenate([reward, reward]), (-1, 1))], axis=-1), dtype=torch.float32, device=self.device)
        low, high = outputs.min(dim=0).values, outputs.max(dim=0).values
        self.output_low.copy_(low - RANGE_MARGIN * (high - low))
        self.output_high.copy_(high + RANGE_MARGIN * (high - low))
        self.input_std.copy_(train_x.std(dim=0, correction=0).clamp_min(1e-6))
        num_train = train_x.shape[0]
        bootstrap = self._split_rng.integers(num_train, size=(self.num_members, num_train))

        best_mse = self._member_mse(val_x, val_y)
        best_params = [p.detach().clone() for p in (*self.weights, *self.biases)]
        epochs_since_improvement, epoch, train_loss = 0, 0, float("nan")
        while epochs_since_improvement < max_epochs_since_improvement and (
                max_epochs is None or epoch < max_epochs):
            order = torch.as_tensor(self._split_rng.permuted(bootstrap, axis=1), device=self.device)
            batch_losses = []
            for start in range(0, num_train, batch_size):
                rows = order[:, start:start + batch_size]
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=compute_dtype == "bfloat16"):
                    loss = self._nll_loss(self._normalize(train_x[rows]), train_y[rows])
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                batch_losses.append(loss.item() / self.num_members)
            train_loss = float(np.mean(batch_losses))
            epoch += 1

            mse = self._member_mse(val_x, val_y)
            improved = (best_mse - mse) / best_mse.clamp_min(1e-12) > MIN_RELATIVE_IMPROVEMENT
            if improved.any():
                best_mse = torch.where(improved, mse, best_mse)
                for best, param in zip(best_params, (*self.weights, *self.biases)):
                    best[improved] = param.detach()[improved]
                epochs_since_improvement = 0
            else:
                epochs_since_improvement += 1

        with torch.no_grad():
            for best, param in zip(best_params, (*self.weights, *self.biases)):
                param.copy_(best)
        self.elite_indices.copy_(torch.argsort(best_mse)[:self.num_elites])
        self._elite_cache = None
        return {"val_loss": best_mse[self.elite_indices].mean().item(), "train_loss": train_loss,
                "epochs": epoch}

    @torch.no_grad()
    def step(self, obs: torch.Tensor, act: torch.Tensor, deterministic: bool = False,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [..., n], act [..., m] -> (next_obs [..., n], reward [...]).

        Stochastic (TS-1): the rows, padded to a multiple of the E elites, are cut into E contiguous
        blocks and block e goes to elite perm[e] for a random permutation drawn at every call, so each
        row is predicted by a uniformly drawn elite at each step and the elites share the rows equally
        (callers lay out exchangeable rows so that blocks mix them: ``dmd_mpc.rollout`` puts samples
        first). A sample is drawn from that member's Gaussian. deterministic=True returns the mean of
        the elites' predicted means (no randomness). Under the device's autocast the matmuls run in its dtype
        (the state update stays in float32). Next states and rewards are clamped to the range of the
        last ``fit``'s data widened by ``RANGE_MARGIN`` of its span, so that a rollout that leaves the
        data cannot compound into huge states and rewards (StochLite's reached 1e5 in 15 steps).
        ``obs``, ``act`` and ``generator`` are on the ensemble's device.
        """
        device_type = self.device.type
        dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else torch.float32
        weights, biases = self._elite_layers(dtype)
        batch_shape = obs.shape[:-1]
        x = self._normalize(torch.cat([obs, act], dim=-1).reshape(-1, self.input_mean.shape[0])).to(dtype)
        num_rows, num_elites = x.shape[0], self.num_elites
        with torch.autocast(device_type, enabled=False):
            if deterministic:
                mean, _ = self._layers(x.expand(num_elites, -1, -1), weights, biases)
                prediction = mean.mean(dim=0)
            else:
                rows_per_member = -(-num_rows // num_elites)
                grouped = F.pad(x, (0, 0, 0, rows_per_member * num_elites - num_rows))
                perm = torch.randperm(num_elites, generator=generator, device=self.device)
                mean, logvar = self._layers(grouped.view(num_elites, rows_per_member, -1),
                                            [w[perm] for w in weights], [b[perm] for b in biases])
                noise = torch.randn(mean.shape, generator=generator, device=self.device)
                prediction = (mean + torch.exp(0.5 * logvar) * noise).reshape(-1, self.out_dim)[:num_rows]
        prediction = prediction.reshape(*batch_shape, self.out_dim)
        next_obs = torch.clamp(obs + prediction[..., :-1], self.output_low[:-1], self.output_high[:-1])
        return next_obs, torch.clamp(prediction[..., -1], self.output_low[-1], self.output_high[-1])
