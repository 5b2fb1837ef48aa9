"""The Triton kernels against their PyTorch references: on the CPU through
Triton's interpreter (in a process of its own, since the interpreter is
chosen when the kernels are defined), on CUDA where there is one."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from mmparcnet.models.ops import triton as triton_ops

pytestmark = pytest.mark.skipif(
    not triton_ops.AVAILABLE,
    reason='needs Triton and torch.library.triton_op (PyTorch >= 2.6)')

# rows and widths that are no multiple of the kernels' block
CHECK_GELU_GATE = textwrap.dedent('''
    import torch
    from mmparcnet.models.ops.triton import INTERPRETING
    from mmparcnet.models.ops.triton.gelu_gate import (gelu_gate,
                                                       gelu_gate_reference)
    assert INTERPRETING
    device = DEVICE
    generator = torch.Generator().manual_seed(0)
    for dtype, tolerance in ((torch.float32, 1e-6), (torch.float16, 2e-3)):
        for shape in ((37, 26), (2, 5, 7, 320), (1, 2)):
            hidden = torch.randn(*shape, generator=generator).to(device, dtype)
            upstream = torch.randn(*shape[:-1], shape[-1] // 2,
                                   generator=generator).to(device, dtype)
            exact = hidden.double().requires_grad_()
            expected = gelu_gate_reference(exact)
            expected_grad, = torch.autograd.grad(expected, exact,
                                                 upstream.double())
            leaf = hidden.detach().requires_grad_()
            out = gelu_gate(leaf)
            grad, = torch.autograd.grad(out, leaf, upstream)
            assert out.dtype == dtype and grad.dtype == dtype
            for got, want in ((out, expected), (grad, expected_grad)):
                scale = max(1., want.abs().max().item())
                error = (got.double() - want).abs().max().item()
                assert error <= tolerance * scale, (dtype, shape, error)
    if device == 'cuda':  # the registration: schema, fake tensors, autograd
        hidden = torch.randn(3, 8, device=device, requires_grad=True)
        torch.library.opcheck(gelu_gate, (hidden, ))
    print('ok')
''')

# the residual sum and channel norm against float64; stream and branch of
# one type, and the autocast mix (a float32 stream, half-precision branch
# and norm); rows that are no multiple of the backward's block of rows
CHECK_RESIDUAL_NORM = textwrap.dedent('''
    import torch
    from mmparcnet.models.ops.triton import INTERPRETING
    from mmparcnet.models.ops.triton.residual_norm import (
        residual_norm, residual_norm_reference)
    assert INTERPRETING
    device = DEVICE
    generator = torch.Generator().manual_seed(0)
    half = torch.float16
    cases = ((torch.float32, torch.float32, torch.float32, 2e-6),
             (half, half, half, 3e-3), (torch.float32, half, half, 3e-3))

    def rand(*shape, low=None):
        t = torch.randn(*shape, generator=generator)
        return t if low is None else t.abs() + low

    for stream_type, branch_type, norm_type, tolerance in cases:
        for shape in ((37, 26), (2, 5, 7, 320), (130, 64), (1, 3)):
            for with_scale in (False, True):
                channels = shape[-1]
                inputs = [rand(*shape), rand(*shape),
                          rand(channels, low=0.5), rand(channels, low=0.5)]
                upstream = [rand(*shape), rand(*shape)]
                used = [0, 1, 2, 3] if with_scale else [0, 1, 3]
                exact = [t.double().requires_grad_() for t in inputs]
                want = residual_norm_reference(
                    exact[0], exact[1], exact[2] if with_scale else None,
                    exact[3], 1e-6, torch.float64)
                want += torch.autograd.grad(
                    want, [exact[i] for i in used],
                    [u.double() for u in upstream])
                types = [stream_type, branch_type, torch.float32,
                         torch.float32]
                leaves = [t.to(device, d).requires_grad_()
                          for t, d in zip(inputs, types)]
                got = residual_norm(leaves[0], leaves[1],
                                    leaves[2] if with_scale else None,
                                    leaves[3], 1e-6, norm_type)
                assert got[0].dtype == torch.promote_types(
                    stream_type, branch_type)
                assert got[1].dtype == norm_type
                grads = torch.autograd.grad(
                    got, [leaves[i] for i in used],
                    [upstream[0].to(device, got[0].dtype),
                     upstream[1].to(device, norm_type)])
                assert [g.dtype for g in grads] == [types[i] for i in used]
                rows = got[0].numel() // channels
                for index, (g, w) in enumerate(zip(got + grads, want)):
                    scale = max(1., w.abs().max().item())
                    if w.dim() == 1:  # a sum over the rows
                        scale *= rows**0.5
                    error = (g.double().cpu() - w).abs().max().item()
                    assert error <= tolerance * scale, (
                        stream_type, branch_type, shape, with_scale, index,
                        error)
    if device == 'cuda':  # the registration: schema, fake tensors, autograd
        from mmparcnet.models.ops.triton.residual_norm import (
            residual_norm_forward)
        x, b, s, w = (torch.randn(3, 8, device=device, requires_grad=True)
                      for _ in range(4))
        torch.library.opcheck(residual_norm_forward,
                              (x, b, s, w, 1e-6, torch.float32))
    print('ok')
''')

# a stage's fused residual stream through the kernels, against its plain
# forward, float32
CHECK_STAGE = textwrap.dedent('''
    import torch
    from mmparcnet.models.layers.block import ParCNetV2Block, Stage
    from mmparcnet.models.ops.context import call_context
    from mmparcnet.models.ops.stage import stage_triton
    from mmparcnet.models.ops.triton import INTERPRETING
    assert INTERPRETING
    device = DEVICE
    torch.manual_seed(0)
    stage = Stage(*[ParCNetV2Block(16, 11, res_scale=True, fast_paths=False)
                    for _ in range(2)]).to(device)
    with torch.no_grad():
        for name, param in stage.named_parameters():
            if name.endswith(('norm1.weight', 'norm2.weight', '.scale')):
                param.uniform_(0.5, 1.5)
    x = torch.randn(2, 6, 7, 16, device=device, requires_grad=True)
    params = [x, *stage.parameters()]
    fused = stage_triton(stage, call_context(x, module=stage), x)
    grads = torch.autograd.grad(fused.square().sum(), params)
    plain = stage.plain_forward(x)
    expected = torch.autograd.grad(plain.square().sum(), params)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    print('ok')
''')


def run_checked(code: str, device: str, interpret: bool):
    env = dict(os.environ, TRITON_INTERPRET='1' if interpret else '0')
    result = subprocess.run(
        [sys.executable, '-c',
         code.replace('DEVICE', repr(device))],
        capture_output=True,
        text=True,
        env=env,
        timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith('ok')


def test_gelu_gate_kernels_under_the_interpreter():
    run_checked(CHECK_GELU_GATE, 'cpu', interpret=True)


def run_on_cuda(*checks: str):
    """The interpreter's checks, compiled for CUDA."""
    for code in checks:
        run_checked(
            code.replace('assert INTERPRETING', ''), 'cuda', interpret=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_gelu_gate_kernels_on_cuda():
    run_on_cuda(CHECK_GELU_GATE)


def test_gelu_gate_on_the_cpu_is_its_reference():
    from mmparcnet.models.ops.triton.gelu_gate import (gelu_gate,
                                                       gelu_gate_reference)
    hidden = torch.randn(5, 12, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(
        gelu_gate(hidden), gelu_gate_reference(hidden), rtol=0, atol=0)
    assert torch.autograd.gradcheck(gelu_gate, (hidden, ))
    # the registration: schema, fake tensors, autograd, torch.compile
    torch.library.opcheck(gelu_gate, (hidden.float(), ))


def test_residual_norm_kernels_under_the_interpreter():
    run_checked(CHECK_RESIDUAL_NORM, 'cpu', interpret=True)


def test_a_stage_through_the_residual_norm_kernels_under_the_interpreter():
    run_checked(CHECK_STAGE, 'cpu', interpret=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_residual_norm_kernels_on_cuda():
    run_on_cuda(CHECK_RESIDUAL_NORM, CHECK_STAGE)


@pytest.mark.parametrize('with_scale', [False, True])
def test_residual_norm_on_the_cpu_is_its_reference(with_scale):
    from mmparcnet.models.layers.norm import ChannelNorm
    from mmparcnet.models.ops.triton.residual_norm import (
        residual_norm, residual_norm_forward)
    torch.manual_seed(0)
    x, branch = (
        torch.randn(2, 3, 5, 26, dtype=torch.float64, requires_grad=True)
        for _ in range(2))
    weight = (torch.rand(26, dtype=torch.float64) + 0.5).requires_grad_()
    scale = ((torch.rand(26, dtype=torch.float64) +
              0.5).requires_grad_() if with_scale else None)
    updated, normed = residual_norm(x, branch, scale, weight, 1e-6)
    expected = (x if scale is None else x * scale) + branch
    norm = ChannelNorm(26).double()
    norm.weight.data.copy_(weight.detach())
    torch.testing.assert_close(updated, expected)
    torch.testing.assert_close(normed, norm.plain_forward(expected))
    inputs = (x, branch, weight) + ((scale, ) if with_scale else ())
    assert torch.autograd.gradcheck(
        lambda x, b, w, *s: residual_norm(x, b, s[0]
                                          if s else None, w, 1e-6), inputs)
    # the registration: schema, fake tensors, autograd, torch.compile
    torch.library.opcheck(
        residual_norm_forward,
        tuple(t.detach().float() if t is not None else None
              for t in (x, branch, scale, weight)) + (1e-6, torch.float32))


# the spatial unit's gated sum and projection against float64: summands and
# gate in the layouts the unit hands over (channel-major planes, NCHW, a
# half of a channel-major map), planes that are no multiple of the block;
# the elementwise product bit for bit the unfused operators'
CHECK_GATED_SUM = textwrap.dedent('''
    import torch
    import torch.nn.functional as F
    from mmparcnet.models.ops.triton import INTERPRETING
    from mmparcnet.models.ops.triton.gated_sum import (gated_sum,
                                                       gated_sum_linear)
    assert INTERPRETING
    device = DEVICE
    generator = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=generator)

    def in_layouts(bases, dtype):
        planes, plain, wide, weight = (
            t.to(device, dtype).requires_grad_() for t in bases)
        channels = plain.shape[1]
        return (planes.transpose(0, 1), plain,
                wide.transpose(0, 1)[:, :channels], weight)

    for dtype, tolerance in ((torch.float32, 1e-5), (torch.float16, 4e-3)):
        for n, c, h, w in ((2, 5, 7, 9), (1, 3, 1, 33), (3, 4, 40, 30)):
            for with_second in (True, False):
                bases = [rand(c, n, h, w), rand(n, c, h, w),
                         rand(2 * c, n, h, w), rand(6, c)]
                upstream = rand(n * h * w, 6)
                used = [0, 1, 2, 3] if with_second else [0, 2, 3]
                exact = in_layouts(bases, torch.float64)
                mixed = exact[0] + exact[1] if with_second else exact[0]
                rows = (exact[2] * mixed).permute(0, 2, 3, 1).reshape(-1, c)
                want = [F.linear(rows, exact[3])]
                want += torch.autograd.grad(
                    want[0], [exact[i] for i in used], upstream.double())
                leaves = in_layouts(bases, dtype)
                second = leaves[1] if with_second else None
                out = gated_sum_linear(leaves[0], second, leaves[2],
                                       leaves[3], dtype)
                grads = torch.autograd.grad(
                    out, [leaves[i] for i in used],
                    upstream.to(device, dtype))
                for index, (got, expected) in enumerate(
                        zip([out, *grads], want)):
                    assert got.dtype == dtype, (index, got.dtype)
                    assert got.shape == expected.shape
                    scale = max(1., expected.abs().max().item())
                    if index == len(want) - 1:  # the weight: a sum of rows
                        scale *= (n * h * w)**0.5
                    error = (got.double().cpu() - expected).abs().max()
                    assert error <= tolerance * scale, (
                        dtype, (n, c, h, w), with_second, index, error)
                with torch.no_grad():
                    product, kept = gated_sum(leaves[0], second, leaves[2],
                                              True)
                    summed = leaves[0] + second if with_second else leaves[0]
                    assert torch.equal(product, leaves[2] * summed)
                    assert torch.equal(kept, summed)
                    assert product.transpose(0, 1).is_contiguous()
                    _, dropped = gated_sum(leaves[0], second, leaves[2],
                                           False)
                    assert dropped.numel() == 0
    # a summand the kernels must copy first (channels last), and a frozen
    # weight: the inputs' gradients alone
    first = rand(2, 4, 5, 6).to(device).contiguous(
        memory_format=torch.channels_last).requires_grad_()
    second, gate = (rand(2, 4, 5, 6).to(device).requires_grad_()
                    for _ in range(2))
    weight, upstream = rand(3, 4).to(device), rand(60, 3).to(device)
    out = gated_sum_linear(first, second, gate, weight, torch.float32)
    grads = torch.autograd.grad(out, [first, second, gate], upstream)
    exact = [t.detach().double().requires_grad_()
             for t in (first, second, gate)]
    want = F.linear((exact[2] * (exact[0] + exact[1])).permute(
        0, 2, 3, 1).reshape(-1, 4), weight.double())
    want_grads = torch.autograd.grad(want, exact, upstream.double())
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5)
    for got, expected in zip(grads, want_grads):
        torch.testing.assert_close(got.double(), expected, rtol=1e-5,
                                   atol=1e-5)
    # frozen maps, a trained weight: its gradient alone (no input GEMM)
    weight = weight.clone().requires_grad_()
    out = gated_sum_linear(*(t.detach() for t in (first, second, gate)),
                           weight, torch.float32)
    grad, = torch.autograd.grad(out, [weight], upstream)
    exact_weight = weight.detach().double().requires_grad_()
    want = F.linear((exact[2] * (exact[0] + exact[1])).detach().permute(
        0, 2, 3, 1).reshape(-1, 4), exact_weight)
    want_grad, = torch.autograd.grad(want, [exact_weight], upstream.double())
    torch.testing.assert_close(grad.double(), want_grad, rtol=1e-5,
                               atol=1e-5)
    if device == 'cuda':  # the registration: schema, fake tensors, autograd
        from mmparcnet.models.ops.triton.gated_sum import gated_sum_backward
        a, b, g = (torch.randn(2, 3, 4, 5, device=device) for _ in range(3))
        torch.library.opcheck(gated_sum, (a, b, g, True))
        torch.library.opcheck(gated_sum, (a, None, g, False))
        torch.library.opcheck(gated_sum_backward, (a, b, g))
    print('ok')
''')

# the spatial unit through the kernels against its plain forward, float32
CHECK_SPATIAL = textwrap.dedent('''
    import torch
    from mmparcnet.models.layers.gate_units import SpatialBGU
    from mmparcnet.models.ops.context import call_context
    from mmparcnet.models.ops.gate_units import spatial_planes_triton
    from mmparcnet.models.ops.triton import INTERPRETING
    assert INTERPRETING
    device = DEVICE
    torch.manual_seed(0)
    unit = SpatialBGU(16, 11, fast_paths=False).to(device)
    x = torch.randn(2, 6, 7, 16, device=device, requires_grad=True)
    params = [x, *unit.parameters()]
    fused = spatial_planes_triton(unit, call_context(x, module=unit), x)
    grads = torch.autograd.grad(fused.square().sum(), params)
    plain = unit.plain_forward(x)
    expected = torch.autograd.grad(plain.square().sum(), params)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    print('ok')
''')


def test_gated_sum_kernels_under_the_interpreter():
    run_checked(CHECK_GATED_SUM, 'cpu', interpret=True)


def test_a_spatial_unit_through_the_gated_sum_kernels_under_the_interpreter():
    run_checked(CHECK_SPATIAL, 'cpu', interpret=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_gated_sum_kernels_on_cuda():
    run_on_cuda(CHECK_GATED_SUM, CHECK_SPATIAL)


def test_gated_sum_on_the_cpu_is_its_reference():
    from mmparcnet.models.ops.triton.gated_sum import (gated_sum,
                                                       gated_sum_backward,
                                                       gated_sum_linear)
    torch.manual_seed(0)
    first, second, gate = (
        torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
        for _ in range(3))
    weight = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    out = gated_sum_linear(first, second, gate, weight)
    rows = (gate * (first + second)).permute(0, 2, 3, 1).reshape(-1, 3)
    torch.testing.assert_close(out, rows @ weight.t())
    assert torch.autograd.gradcheck(gated_sum_linear,
                                    (first, second, gate, weight))
    assert torch.autograd.gradcheck(
        lambda a, g, w: gated_sum_linear(a, None, g, w), (first, gate, weight))
    with pytest.raises(ValueError, match='one shape'):
        gated_sum_linear(first, second[:, :2], gate, weight)
    with pytest.raises(ValueError, match=r'must be \(C_out, 3\)'):
        gated_sum_linear(first, second, gate, weight[:, :2])
    # the registration: schema, fake tensors, autograd, torch.compile
    a, b, g = (t.detach().float() for t in (first, second, gate))
    torch.library.opcheck(gated_sum, (a, b, g, True))
    torch.library.opcheck(gated_sum, (a, None, g, False))
    torch.library.opcheck(gated_sum_backward, (a, b, g))
