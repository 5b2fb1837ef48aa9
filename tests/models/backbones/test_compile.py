"""``torch.compile`` of the backbone: one graph for the input sizes of a
multi-scale schedule, the eager model's numbers, forward and backward."""
import torch

from mmparcnet.models import ParCNetV2

SMALL = dict(depths=[1, 1, 1, 1], dims=[8, 16, 24, 32])
# sizes whose stages all take the same oversized-convolution path on the CPU
# (matmul at stages 0 and 1, direct at 2 and 3: registry.FAST_PATHS), as the
# sizes of a detection schedule do at full scale
SIZES = [(96, 128), (128, 96), (112, 160), (104, 136)]


def test_one_graph_serves_every_input_size(fresh_dynamo, counting_backend):
    torch.manual_seed(0)
    model = ParCNetV2(SMALL).eval()
    backend = counting_backend
    compiled = torch.compile(model, backend=backend, dynamic=True)
    with torch.no_grad():
        for size in SIZES:
            x = torch.randn(2, 3, *size)
            for a, b in zip(compiled(x), model(x)):
                torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert backend.graphs == 1


def test_compiled_training_gives_the_eager_gradients(fresh_dynamo):
    torch.manual_seed(0)
    model = ParCNetV2(SMALL).train()
    compiled = torch.compile(model, backend='aot_eager', dynamic=True)
    grads = []
    for run in (compiled, model):
        x = torch.randn(
            1, 3, *SIZES[2],
            generator=torch.Generator().manual_seed(1)).requires_grad_()
        sum((o * o).sum() for o in run(x)).backward()
        grads.append([x.grad] + [p.grad.clone() for p in model.parameters()])
        model.zero_grad()
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
