"""The written-out SAC gradients against autograd on the same three losses, the same parameters and noise."""
import pytest
import torch

from mdemorl_learner.sac_gradients import (SACBatch, actor_parameters, cast_for_update, critic_parameters,
                                           sac_gradients)
from mdemorl_planner.networks import SquashedGaussianActor, TwinQ

torch.set_num_threads(1)
OBS, ACT, GAMMA, TARGET_ENTROPY = 5, 3, 0.99, -3.0


def parts(num_layers: int):
    torch.manual_seed(0)
    actor, critic, target = (SquashedGaussianActor(OBS, ACT, 32, num_layers), TwinQ(OBS, ACT, 32, num_layers),
                             TwinQ(OBS, ACT, 32, num_layers))
    with torch.no_grad():  # log std beyond both clamp bounds for some outputs: those get no gradient
        actor.net[-1].bias[ACT:] = torch.tensor([4.0, -30.0, 0.0])
    log_alpha = torch.nn.Parameter(torch.tensor(-0.7))
    batch = SACBatch(torch.randn(64, OBS), torch.rand(64, ACT) * 2 - 1, torch.randn(64), torch.randn(64, OBS),
                     (torch.rand(64) < 0.2).float())
    return actor, critic, target, log_alpha, batch


def written_out(actor, critic, target, log_alpha, batch, dtype, generator):
    """sac_gradients on the modules' parameters cast as SAC casts them."""
    return sac_gradients(cast_for_update(actor_parameters(actor), dtype, dtype),
                         cast_for_update(critic_parameters(critic), dtype, torch.float32),
                         cast_for_update(critic_parameters(target), dtype, torch.float32), log_alpha, batch, GAMMA,
                         TARGET_ENTROPY, generator)


def autograd_reference(actor, critic, target, log_alpha, b: SACBatch, generator, autocast: bool):
    """The three losses as SAC.update took them before the gradients were written out."""
    alpha = log_alpha.detach().exp()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        with torch.no_grad():
            next_act, next_logp = actor(b.next_obs, generator=generator)
            next_q = target.q_values(b.next_obs, next_act).amin(0)
            y = b.reward + GAMMA * (1.0 - b.terminated) * (next_q - alpha * next_logp)
        q = critic.q_values(b.obs, b.act)
        q_loss = 0.5 * (q - y).square().mean(1).sum()
        pi_act, logp = actor(b.obs, generator=generator)
        q_pi = critic.q_values(b.obs, pi_act).amin(0)
        pi_loss = (alpha * logp - q_pi).mean()
    alpha_loss = -log_alpha * (logp.detach().mean() + TARGET_ENTROPY)
    grads = [*torch.autograd.grad(q_loss, critic_parameters(critic), retain_graph=True),
             *torch.autograd.grad(pi_loss, actor_parameters(actor)), *torch.autograd.grad(alpha_loss, log_alpha)]
    return grads, (q_loss.item(), pi_loss.item(), logp.mean().item(), q.mean().item())


@pytest.mark.parametrize("num_layers", [2, 3])
def test_float32_gradients_equal_autograd(num_layers):
    actor, critic, target, log_alpha, batch = parts(num_layers)
    got = written_out(actor, critic, target, log_alpha, batch, torch.float32, torch.Generator().manual_seed(3))
    expected, stats = autograd_reference(actor, critic, target, log_alpha, batch, torch.Generator().manual_seed(3),
                                         autocast=False)
    grads = [*got.critic, *got.actor, got.log_alpha]
    assert len(grads) == len(expected) == 4 * (num_layers + 1) + 1
    for i, (g, e) in enumerate(zip(grads, expected)):
        assert g.shape == e.shape and g.dtype == torch.float32, i
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6, msg=f"gradient {i}")
    assert [t.item() for t in (got.q_loss, got.pi_loss, got.logp_mean, got.q_mean)] == pytest.approx(stats, rel=1e-5)
    raw_log_std_grad = got.actor[-1][ACT:]  # the output bias of the log stds
    assert raw_log_std_grad[0] == 0 and raw_log_std_grad[1] == 0 and raw_log_std_grad[2] != 0  # clamped, not


def test_bfloat16_gradients_point_where_autocast_ones_do():
    actor, critic, target, log_alpha, batch = parts(2)
    got = written_out(actor, critic, target, log_alpha, batch, torch.bfloat16, torch.Generator().manual_seed(3))
    expected, _ = autograd_reference(actor, critic, target, log_alpha, batch, torch.Generator().manual_seed(3),
                                     autocast=True)
    for i, (g, e) in enumerate(zip([*got.critic, *got.actor, got.log_alpha], expected)):
        assert g.dtype == torch.float32
        cosine = torch.nn.functional.cosine_similarity(g.flatten(), e.flatten(), dim=0, eps=1e-12)
        assert cosine > 0.99 and 0.95 < g.norm() / e.norm() < 1.05, (i, cosine.item(), (g.norm() / e.norm()).item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_tensor_is_made_on_the_batchs_device(dtype):
    """On the meta device, any op that mixes in a tensor made on the CPU raises; the generator stays on the CPU
    (meta has none, and drawing meta noise from it is allowed)."""
    actor, critic, target, log_alpha, batch = parts(2)
    actor, critic, target = actor.to("meta"), critic.to("meta"), target.to("meta")
    batch = SACBatch(*(getattr(batch, k).to("meta") for k in ("obs", "act", "reward", "next_obs", "terminated")))
    got = written_out(actor, critic, target, log_alpha.to("meta"), batch, dtype, torch.Generator().manual_seed(3))
    outputs = [*got.critic, *got.actor, got.log_alpha, got.alpha, got.q_loss, got.pi_loss, got.logp_mean, got.q_mean]
    assert {t.device.type for t in outputs} == {"meta"}
    assert [g.shape for g in got.critic] == [p.shape for p in critic_parameters(critic)]
