"""FlatParameters and FlatAdam against the per-tensor parameters and torch.optim.Adam they replace."""
import copy

import pytest
import torch

from mdemorl_learner.flat_parameters import FlatParameters
from mdemorl_learner.fused_adam import FlatAdam

SHAPES = [(2, 7, 5), (2, 1, 5), (5, 3), (3,), ()]


def parameters(seed: int = 0) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in SHAPES]


def groups(params: list[torch.nn.Parameter]) -> list[dict]:
    """Three groups as SAC has them: the last with another learning rate and epsilon."""
    return [{"params": params[:2], "lr": 1e-2}, {"params": params[2:4], "lr": 1e-2},
            {"params": params[4:], "lr": 3e-2, "eps": 1e-6}]


def gradients(step: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + step)
    return [torch.randn(shape, generator=generator) for shape in SHAPES]


def test_flat_parameters_are_views_that_keep_identity_values_and_gradients():
    params = parameters()
    before = [p.detach().clone() for p in params]
    flat = FlatParameters(params)
    assert flat.data.numel() == sum(-(-p.numel() // 32) * 32 for p in before)  # a 32-element slot each
    for param, value in zip(params, before):
        assert isinstance(param, torch.nn.Parameter) and torch.equal(param, value)
        assert param.untyped_storage().data_ptr() == flat.data.untyped_storage().data_ptr()
        assert param.data_ptr() % 64 == 0
    assert flat.data.abs().sum() == sum(p.abs().sum() for p in before)  # the gaps are zero
    assert all(c.data_ptr() % 64 == 0 for c in flat.cast(torch.bfloat16))
    with torch.no_grad():
        params[2].mul_(2.0)  # writes through to the buffer, and a cast sees it
    assert torch.equal(flat.cast(torch.bfloat16)[2], (2.0 * before[2]).bfloat16())
    assert all(c.dtype == torch.bfloat16 and c.shape == p.shape for c, p in zip(flat.cast(torch.bfloat16), params))
    grads = gradients(0)
    params[0].grad = None  # replaced from outside: set_grads points it back at the buffer
    flat.set_grads(grads)
    assert all(torch.equal(p.grad, g) for p, g in zip(params, grads))
    assert params[0].grad.untyped_storage().data_ptr() == flat.grad.untyped_storage().data_ptr()
    with pytest.raises(RuntimeError, match="without gradients"):
        FlatParameters(parameters(), with_grad=False).set_grads(grads)


def test_flat_adam_steps_as_torch_fused_adam_and_shares_its_checkpoints():
    flat_params, torch_params = parameters(), parameters()
    flat = FlatParameters(flat_params)
    adam = FlatAdam(flat, groups(flat_params))
    reference = torch.optim.Adam(groups(torch_params), fused=True)
    for step in range(5):
        flat.set_grads(gradients(step))
        for param, grad in zip(torch_params, gradients(step)):
            param.grad = grad
        adam.step()
        reference.step()
        for a, b in zip(flat_params, torch_params):  # equal but for the last bit of the kernel's scalar tail
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9, msg=f"step {step}")

    # Its state dict resumes a torch Adam, and a torch Adam's resumes it, with the same next step.
    state = adam.state_dict()
    assert [float(s["step"]) for s in state["state"].values()] == [5.0] * len(SHAPES)
    resumed_torch_params, resumed_flat_params = parameters(1), parameters(1)
    with torch.no_grad():
        for a, b, source in zip(resumed_torch_params, resumed_flat_params, torch_params):
            a.copy_(source)
            b.copy_(source)
    resumed_torch = torch.optim.Adam(groups(resumed_torch_params), fused=True)
    resumed_torch.load_state_dict(copy.deepcopy(state))
    resumed_flat_buffer = FlatParameters(resumed_flat_params)
    resumed_flat = FlatAdam(resumed_flat_buffer, groups(resumed_flat_params))
    reference.param_groups[2]["lr"] = 5e-2  # a loaded state dict's hyper-parameters replace the optimiser's
    resumed_flat.load_state_dict(copy.deepcopy(reference.state_dict()))
    resumed_torch.param_groups[2]["lr"] = 5e-2
    resumed_flat_buffer.set_grads(gradients(5))
    for params in (torch_params, resumed_torch_params):
        for param, grad in zip(params, gradients(5)):
            param.grad = grad
    for optimizer in (reference, resumed_torch, resumed_flat):
        optimizer.step()
    for params in (resumed_torch_params, resumed_flat_params):
        for a, b in zip(params, torch_params):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


def test_flat_adam_rejects_groups_that_are_not_runs_and_uneven_steps():
    params = parameters()
    flat = FlatParameters(params)
    with pytest.raises(ValueError, match="consecutive"):
        FlatAdam(flat, [{"params": [params[0], params[2]]}, {"params": [params[1], *params[3:]]}])
    adam = FlatAdam(flat, groups(params))
    state = adam.state_dict()
    state["state"][0]["step"] = torch.tensor(3.0)
    with pytest.raises(ValueError, match="different step counts"):
        adam.load_state_dict(state)


def test_buffers_and_adam_state_are_on_the_parameters_device():
    """On the meta device: a buffer or moment made on the CPU would show here (or raise when mixed in)."""
    params = [torch.nn.Parameter(p.detach().to("meta")) for p in parameters()]
    flat = FlatParameters(params)
    adam = FlatAdam(flat, groups(params))
    flat.set_grads([g.to("meta") for g in gradients(0)])
    adam.step()
    state = adam.optimizer.state
    on_device = [flat.data, flat.grad, *flat.cast(torch.bfloat16), *params,
                 *(t for p in params for t in (p.grad, state[p]["step"], state[p]["exp_avg"], state[p]["exp_avg_sq"]))]
    assert len(on_device) == 2 + 6 * len(SHAPES) and {t.device.type for t in on_device} == {"meta"}
