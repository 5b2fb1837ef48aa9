"""What the compile tests share: a fresh Dynamo, and a backend that counts
the graphs it is given."""
import pytest
import torch


class CountingBackend:
    """A torch.compile backend that runs the captured graph as it is and
    counts the graphs it was given."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1
        return graph_module.forward


@pytest.fixture
def counting_backend():
    return CountingBackend()


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # reset() leaves the counts
    yield
    torch._dynamo.reset()
