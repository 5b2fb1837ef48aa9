"""The backbones' peak CPU memory, against what training must hold."""
import pytest
import torch

from mmparcnet.benchmarks import resident_memory
from mmparcnet.benchmarks.memory import cpu_peak_memory
from mmparcnet.models import ParCNetV2


@pytest.mark.skipif(
    resident_memory.unsupported_reason() is not None,
    reason=str(resident_memory.unsupported_reason()))
def test_cpu_peak_memory_holds_what_training_must_hold():
    height, width = 128, 192
    peaks = cpu_peak_memory(['ParCNetV2-T'], 1, height, width, ['fp32'])
    peak = peaks['ParCNetV2-T', 'fp32']['fwdbwd_peak_mib']
    # counted independently: what autograd keeps for the backward pass (all
    # of it lives when the forward pass ends) and the weights' gradients
    # (all of them live when the backward pass ends)
    model = ParCNetV2('tiny', oversized_conv_impl='auto').train()
    x = torch.randn(1, 3, height, width)
    present = {
        t.untyped_storage().data_ptr()
        for t in (x, *model.parameters())
    }
    kept = {}

    def count(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in present:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(count, lambda t: t):
        model(x)
    kept_mib = sum(kept.values()) / 2**20
    grads_mib = sum(p.numel() * 4 for p in model.parameters()) / 2**20
    assert max(kept_mib, grads_mib) <= peak <= kept_mib + grads_mib + 32
