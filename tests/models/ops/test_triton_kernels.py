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


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_gelu_gate_kernels_on_cuda():
    run_checked(
        CHECK_GELU_GATE.replace('assert INTERPRETING', ''),
        'cuda',
        interpret=False)


def test_gelu_gate_on_the_cpu_is_its_reference():
    from mmparcnet.models.ops.triton.gelu_gate import (gelu_gate,
                                                       gelu_gate_reference)
    hidden = torch.randn(5, 12, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(
        gelu_gate(hidden), gelu_gate_reference(hidden), rtol=0, atol=0)
    assert torch.autograd.gradcheck(gelu_gate, (hidden, ))
    # the registration: schema, fake tensors, autograd, torch.compile
    torch.library.opcheck(gelu_gate, (hidden.float(), ))
