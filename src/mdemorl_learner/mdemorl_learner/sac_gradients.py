"""SAC's three losses and their gradients, written out instead of taken by autograd.

With autograd and autocast, a bfloat16 update at batch 8, where the matmuls cost next to nothing, took 2.6 ms
(2 threads): recording the graph, the backward engine, and casting every weight at each use. Here the
weights come cast once per update (:func:`cast_for_update`; ``SAC`` casts its flat buffer in one pass), each
network runs once on the rows of its two passes, and the critic's rows for the actor loss take no weight
gradients: 1.7 ms at batch 8, and 4.4-4.7 against 5.3-7.0 ms at batch 256 (2026-12-04, alternating runs on a
noisy machine). The critics' float32 output layer takes the bfloat16 activation into its own multiply, and
its gradient d_q w^T is stored in bfloat16 by that multiply, so neither costs a separate conversion pass.
``test_sac_gradients`` checks every gradient against autograd on the same losses.

Layouts: the actor is ``nn.Linear`` layers (weights ``[out, in]``); the twin critic stacks its heads
(weights ``[2, in, out]``, biases ``[2, 1, out]``, a float32 width-1 output layer).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mdemorl_planner.networks import (LOG_STD_MAX, LOG_STD_MIN, SquashedGaussianActor, TwinQ, squashed_gaussian,
                                      twin_q_output)


@dataclass
class SACBatch:
    """One replay batch as float32 tensors: ``obs`` [B, O], ``act`` [B, A], ``reward`` and ``terminated`` [B]."""

    obs: torch.Tensor
    act: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor


@dataclass
class SACGradients:
    """Gradients in the order of the parameters they belong to, and the update's statistics (``alpha`` is the
    temperature the losses used)."""

    critic: list[torch.Tensor]
    actor: list[torch.Tensor]
    log_alpha: torch.Tensor
    alpha: torch.Tensor
    q_loss: torch.Tensor
    pi_loss: torch.Tensor
    logp_mean: torch.Tensor
    q_mean: torch.Tensor


def cast_for_update(params: list[torch.Tensor], dtype: torch.dtype, out_dtype: torch.dtype) -> list[torch.Tensor]:
    """A network's parameters [w0, b0, w1, b1, ...] as :func:`sac_gradients` takes them: the hidden layers in the
    compute dtype ``dtype``, the output layer in ``out_dtype`` (float32 for the critics: see ``TwinQ``)."""
    return [p.to(dtype) for p in params[:-2]] + [p.to(out_dtype) for p in params[-2:]]


class _Net:
    """A network's parameters as :func:`cast_for_update` gives them; the compute dtype is the first weight's."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        self.weights, self.biases = params[0:-2:2], params[1:-2:2]
        self.out_weight, self.out_bias = params[-2], params[-1]
        self.dtype = self.weights[0].dtype

    def hidden(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The input of every hidden layer, then the last hidden activation (ReLU applied)."""
        h = x.to(self.dtype)
        stacked = self.weights[0].dim() == 3
        if stacked:
            h = h.expand(self.weights[0].shape[0], -1, -1)
        acts = [h]
        for w, b in zip(self.weights, self.biases):
            acts.append((torch.baddbmm(b, acts[-1], w) if stacked else torch.addmm(b, acts[-1], w.t())).relu_())
        return acts

    def hidden_backward(self, g: torch.Tensor, acts: list[torch.Tensor], weight_rows: slice | None,
                        input_grad: tuple[slice, slice] | None = None
                        ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Back through the hidden layers from ``g``, the gradient at the last activation ``acts[-1]``.

        Returns the float32 weight gradients [w0, b0, w1, b1, ...] from the batch rows ``weight_rows`` (none for
        ``None``) and, for ``input_grad = (rows, features)``, the gradient at those inputs of those rows (summed
        over stacked heads). Rows are the second-to-last dimension."""
        stacked = self.weights[0].dim() == 3
        grads: list[torch.Tensor] = []
        g = g.to(self.dtype)
        for i in reversed(range(len(self.weights))):
            g = torch.ops.aten.threshold_backward(g, acts[i + 1], 0)  # ReLU'
            if weight_rows is not None:
                rows_g, rows_in = g[..., weight_rows, :], acts[i][..., weight_rows, :]
                w_grad = torch.bmm(rows_in.transpose(1, 2), rows_g) if stacked else rows_g.t().mm(rows_in)
                grads[:0] = [w_grad.float(), rows_g.sum(-2, keepdim=stacked).float()]
            if i > 0:
                g = torch.bmm(g, self.weights[i].transpose(1, 2)) if stacked else g.mm(self.weights[i])
        if input_grad is None:
            return grads, None
        rows, features = input_grad
        w0 = self.weights[0][:, features]
        if stacked:
            return grads, torch.bmm(g[:, rows], w0.transpose(1, 2)).sum(0).float()
        return grads, g[rows].mm(w0).float()


def critic_parameters(critic: TwinQ) -> list[nn.Parameter]:
    """The critic's parameters layer by layer, [w0, b0, w1, b1, ...]: the order of
    :attr:`SACGradients.critic`."""
    return [p for pair in zip(critic.weights, critic.biases) for p in pair]


def actor_parameters(actor: SquashedGaussianActor) -> list[nn.Parameter]:
    """The actor's parameters layer by layer, [w0, b0, w1, b1, ...]: the order of :attr:`SACGradients.actor`."""
    return [p for m in actor.net if isinstance(m, nn.Linear) for p in (m.weight, m.bias)]


def _twin_q(net: _Net, h: torch.Tensor) -> torch.Tensor:
    """Both heads' Q ``[2, B]`` in float32 from the last hidden activation: the float32 output weight promotes
    the product, so a bfloat16 ``h`` is widened inside the multiply rather than by a pass of its own."""
    return twin_q_output(h, net.out_weight, net.out_bias)


def _policy(net: _Net, obs: torch.Tensor, eps: torch.Tensor
            ) -> tuple[list[torch.Tensor], torch.Tensor, tuple[torch.Tensor, ...]]:
    """The hidden activations, the float32 raw log std and the squashed sample for noise ``eps``."""
    acts = net.hidden(obs)
    out = torch.addmm(net.out_bias, acts[-1], net.out_weight.t()).float()
    mu, raw_log_std = out.chunk(2, dim=-1)
    return acts, raw_log_std, squashed_gaussian(mu, raw_log_std, eps)


@torch.no_grad()
def sac_gradients(actor: list[torch.Tensor], critic: list[torch.Tensor], critic_target: list[torch.Tensor],
                  log_alpha: torch.Tensor, batch: SACBatch, gamma: float, target_entropy: float,
                  generator: torch.Generator) -> SACGradients:
    """The gradients of the critic loss (clipped double-Q soft Bellman error, summed over the heads), the actor
    loss E[alpha log pi - min Q] (through the critic, whose weights it leaves alone) and the temperature loss
    -log alpha (E[log pi] + target entropy), all from the same parameters. Noise: next_obs's sample first.

    The networks are given by their parameters in :func:`actor_parameters` and :func:`critic_parameters` order,
    cast as :func:`cast_for_update` does: the actor's output layer in the compute dtype, the critics' in
    float32. Every tensor, the noise from ``generator`` included, is made on the batch's device."""
    n, obs_dim = batch.obs.shape
    alpha = log_alpha.detach().exp()
    actor_net, critic_net, target_net = _Net(actor), _Net(critic), _Net(critic_target)
    dtype = actor_net.dtype
    # Each network runs once on the rows of two passes: first half next_obs (actor) or the replay actions
    # (critic), second half obs or the policy's actions.
    second = slice(n, None)

    # The policy at next_obs and at obs.
    act_dim = batch.act.shape[1]
    eps = torch.cat([torch.randn(n, act_dim, generator=generator, device=batch.obs.device) for _ in range(2)])
    actor_acts, raw_log_std, (actions, logps, std) = _policy(actor_net, torch.cat([batch.next_obs, batch.obs]), eps)
    action, logp = actions[n:], logps[n:]

    # Critic target: clipped double-Q soft Bellman backup.
    next_q = _twin_q(target_net, target_net.hidden(torch.cat([batch.next_obs, actions[:n]], -1))[-1]).amin(0)
    target = batch.reward + gamma * (1.0 - batch.terminated) * (next_q - alpha * logps[:n])

    # The critic at the replay actions (its loss 0.5 * sum_heads mean_batch (q - target)^2) and at the policy's.
    acts = critic_net.hidden(torch.cat([torch.cat([batch.obs, batch.act], -1), torch.cat([batch.obs, action], -1)]))
    q_both = _twin_q(critic_net, acts[-1])
    q, q_pi = q_both[:, :n], q_both[:, n:]
    error = q - target
    q_loss = 0.5 * error.square().mean(1).sum()
    pi_loss = (alpha * logp - q_pi.amin(0)).mean()
    # d loss / d Q: the critic loss's at the replay actions; the actor loss's at the policy's, through the
    # smaller head only (a tie, which autograd would split, goes to the first).
    first = (q_pi[0] <= q_pi[1]).float()
    d_q = torch.cat([error / n, torch.stack([first, 1.0 - first]).mul_(-1.0 / n)], 1).unsqueeze(-1)
    # The gradient at the last activation, d_q w^T, multiplied in float32 and stored in the compute dtype.
    d_last = torch.empty(acts[-1].shape, dtype=dtype, device=acts[-1].device)
    torch.mul(d_q, critic_net.out_weight.transpose(1, 2), out=d_last)
    critic_grads, d_action = critic_net.hidden_backward(d_last, acts, slice(None, n), (second, slice(obs_dim, None)))
    critic_grads += [(d_q[:, :n] * acts[-1][:, :n]).sum(1).unsqueeze(-1), d_q[:, :n].sum(1, keepdim=True)]

    # The actor loss mean(alpha * logp - min Q) back to the actor's output, then through the actor at obs.
    # d loss / du: log(1 - tanh^2 u)' = -2 tanh u, tanh' = 1 - tanh^2.
    d_u = (2.0 * alpha / n) * action + d_action * (1.0 - action.square())
    raw_log_std = raw_log_std[n:]
    in_range = (raw_log_std >= LOG_STD_MIN) & (raw_log_std <= LOG_STD_MAX)  # the clamp in squashed_gaussian
    d_raw_log_std = (d_u * std[n:] * eps[n:] - alpha / n) * in_range
    d_out = torch.cat([d_u, d_raw_log_std], -1)
    obs_acts = [a[second] for a in actor_acts]
    actor_grads, _ = actor_net.hidden_backward(d_out.to(dtype).mm(actor_net.out_weight), obs_acts, slice(None))
    actor_grads += [d_out.t().mm(obs_acts[-1].float()), d_out.sum(0)]

    logp_mean = logp.mean()
    return SACGradients(critic_grads, actor_grads, -(logp_mean + target_entropy), alpha, q_loss, pi_loss,
                        logp_mean, q.mean())
