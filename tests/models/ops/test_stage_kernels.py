"""A stage's fused residual sums and channel norms (:mod:`mmparcnet.models.
ops.stage`) against the stage's plain forward. On CPU tensors the fused
operator runs its PyTorch reference; its Triton kernels are checked under
the interpreter in tests/models/ops/test_triton_kernels.py."""
import pytest
import torch

from mmparcnet.models.layers.block import ParCNetV2Block, Stage
from mmparcnet.models.ops import registry
from mmparcnet.models.ops import triton as triton_kernels
from mmparcnet.models.ops.context import Context, call_context
from mmparcnet.models.ops.stage import stage_triton

needs_triton = pytest.mark.skipif(
    not triton_kernels.AVAILABLE, reason='needs Triton and PyTorch >= 2.6')


def make_stage(res_scale: bool, drop_path_rate: float = 0., depth: int = 3):
    torch.manual_seed(0)
    stage = Stage(*[
        ParCNetV2Block(
            8,
            9,
            drop_path_rate=drop_path_rate,
            res_scale=res_scale,
            fast_paths=False) for _ in range(depth)
    ]).double()
    # norms and scales away from their initial ones, so that a parameter
    # taken from the wrong block shows
    with torch.no_grad():
        for name, param in stage.named_parameters():
            if name.endswith(('norm1.weight', 'norm2.weight', '.scale')):
                param.uniform_(0.5, 1.5)
    return stage


@needs_triton
@pytest.mark.parametrize('res_scale', [False, True])
@pytest.mark.parametrize('drop_path_rate', [0., 0.5])
@pytest.mark.parametrize('depth', [1, 3])
def test_the_fused_stage_equals_the_plain_one(res_scale, drop_path_rate,
                                              depth):
    stage = make_stage(res_scale, drop_path_rate, depth).train()
    x = torch.randn(2, 5, 6, 8, dtype=torch.float64, requires_grad=True)
    params = [x, *stage.parameters()]
    torch.manual_seed(1)  # the same stochastic depth draws, in one order
    fused = stage_triton(stage, call_context(x, module=stage), x)
    grads = torch.autograd.grad(fused.square().sum(), params)
    torch.manual_seed(1)
    plain = stage.plain_forward(x)
    expected = torch.autograd.grad(plain.square().sum(), params)
    torch.testing.assert_close(fused, plain)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)


def test_the_fused_stage_is_offered_only_when_asked_for():
    with triton_kernels.kernels(False):
        assert Stage(ParCNetV2Block(8, 9)).compute is Stage.plain_forward
    with triton_kernels.kernels(True):
        stage = Stage(ParCNetV2Block(8, 9))
        off = Stage(ParCNetV2Block(8, 9), fast_paths=False)
    assert off.compute is Stage.plain_forward
    names = getattr(stage.compute, 'candidates', ())
    assert bool(names) == triton_kernels.AVAILABLE
    # taken eagerly on CUDA, unless each block is checkpointed
    cuda = Context('', False, 'cuda', torch.bfloat16, True)
    x = torch.randn(1, 2, 2, 8, requires_grad=True)
    assert registry.eager_cuda_unchecked(cuda, stage, x)
    assert not registry.eager_cuda_unchecked(
        cuda._replace(device='cpu'), stage, x)
    assert not registry.eager_cuda_unchecked(
        cuda._replace(tracer='dynamo'), stage, x)
    stage.with_cp = True
    assert not registry.eager_cuda_unchecked(cuda, stage, x)
    assert registry.eager_cuda_unchecked(cuda, stage, x.detach())
