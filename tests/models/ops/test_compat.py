"""PyTorch bugs worked around: the written-out forms equal the native ones."""
import torch

from mmparcnet.models.ops import compat


def test_the_written_out_gelu_backward_is_gelus():
    # the PyTorch 2.1 workaround runs only where the probe fails: call it
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(compat.stride_safe_gelu, (x, ))
    # with the gradient laid out unlike the input, as the gate unit sees it
    grad = torch.randn(5, 6, dtype=torch.float64).t()
    got, = torch.autograd.grad(compat.stride_safe_gelu(x), x, grad)
    want, = torch.autograd.grad(
        torch.nn.functional.gelu(x), x, grad.contiguous())
    torch.testing.assert_close(got, want)
    # float32 in, float32 gradients out; bfloat16 likewise
    for dtype in (torch.float32, torch.bfloat16):
        y = x.detach().to(dtype).requires_grad_()
        g, = torch.autograd.grad(compat.stride_safe_gelu(y).sum(), y)
        assert g.dtype == dtype


def test_gelu_is_the_native_one_where_its_backward_is_exact():
    if compat.GELU_BACKWARD_IS_EXACT:
        assert compat.gelu is torch.nn.functional.gelu
    x = torch.randn(4, 4, requires_grad=True)
    torch.testing.assert_close(compat.gelu(x), torch.nn.functional.gelu(x))


def test_in_place_gelu_equals_gelu():
    x = torch.randn(7, 3)
    expected = torch.nn.functional.gelu(x)
    assert compat.gelu_(x) is x
    torch.testing.assert_close(x, expected)
