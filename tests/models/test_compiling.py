"""Regional compilation (:func:`mmparcnet.models.compile_blocks`): every
block compiled in place, the blocks of a stage sharing a graph, the eager
model's numbers and parameter names."""
import copy

import pytest
import torch
import torch.nn as nn

from mmparcnet.models import ParCNetV2, compile_blocks
from mmparcnet.models.compiling import torch_supports_compile_blocks
from mmparcnet.models.layers import ParCNetV2Block, Stage
from mmparcnet.models.ops import triton as triton_kernels

# more than one block a stage: a stage's blocks share graphs
SMALL = dict(depths=[3, 3, 2, 2], dims=[8, 16, 24, 32])
BLOCKS = 10
# sizes whose stages all take the same oversized-convolution path on the CPU
# (as in test_compile.py); 224 // 4 = 56 meets stage 0's stored length
SIZES = [(96, 128), (224, 96), (112, 160)]

needs_module_compile = pytest.mark.skipif(
    not torch_supports_compile_blocks(),
    reason='compiling the blocks needs PyTorch >= 2.5')


@needs_module_compile
def test_a_stage_shares_one_graph_across_its_blocks_and_sizes(
        fresh_dynamo, counting_backend):
    torch.manual_seed(0)
    model = ParCNetV2(SMALL).eval()
    eager = copy.deepcopy(model)
    backend = counting_backend
    assert compile_blocks(model, backend=backend) == BLOCKS
    graphs = []
    with torch.no_grad():
        for size in SIZES:
            x = torch.randn(2, 3, *size)
            for a, b in zip(model(x), eager(x)):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
            graphs.append(backend.graphs)
    # a graph per stage (their channels differ; a stage's first block,
    # which receives the downsampling's output, may get its own), and none
    # for another size, whether or not a map meets its stage's stored
    # kernel length
    assert 4 <= graphs[0] < BLOCKS
    assert graphs == graphs[:1] * len(SIZES)
    assert list(model.state_dict()) == list(eager.state_dict())


@needs_module_compile
def test_compiled_blocks_train_to_the_eager_gradients(fresh_dynamo):
    torch.manual_seed(0)
    model = ParCNetV2(SMALL, drop_path_rate=0.).train()
    eager = copy.deepcopy(model)
    compile_blocks(model, backend='aot_eager')
    grads = []
    for run in (model, eager):
        x = torch.randn(
            1, 3, *SIZES[2],
            generator=torch.Generator().manual_seed(1)).requires_grad_()
        sum((o * o).sum() for o in run(x)).backward()
        grads.append([x.grad] + [p.grad for p in run.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@needs_module_compile
def test_only_the_outermost_blocks_are_compiled(fresh_dynamo):
    model = ParCNetV2(SMALL)
    compiled = []
    original = nn.Module.compile

    def spy(module, **kwargs):
        compiled.append(type(module))
        return original(module, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nn.Module, 'compile', spy)
        compile_blocks(model, backend='eager')
        assert compiled == [ParCNetV2Block] * BLOCKS
        # a block inside a module taken as a block is not compiled again
        compiled.clear()
        compile_blocks(
            ParCNetV2(SMALL),
            is_block=lambda m: isinstance(m, (Stage, ParCNetV2Block)),
            backend='eager')
        assert compiled == [Stage] * 4


@needs_module_compile
def test_an_empty_dict_compiles_with_the_defaults():
    model = ParCNetV2(SMALL, compile_blocks={})
    assert all(block._compiled_call_impl is not None for stage in model.stages
               for block in stage)


def test_a_model_without_blocks_is_refused():
    with pytest.raises(ValueError, match='Linear holds no block'):
        compile_blocks(nn.Linear(2, 2))


def test_old_pytorch_is_told_what_it_lacks(monkeypatch):
    monkeypatch.setattr(torch, '__version__', '2.4.1+cpu')
    with pytest.raises(RuntimeError, match=r'PyTorch >= 2\.5.*2\.4\.1'):
        compile_blocks(ParCNetV2(SMALL))


@needs_module_compile
def test_the_backbone_compiles_its_blocks_when_asked(fresh_dynamo,
                                                     counting_backend):
    torch.manual_seed(0)
    eager = ParCNetV2(SMALL).eval()
    backend = counting_backend
    model = ParCNetV2(SMALL, compile_blocks=dict(backend=backend)).eval()
    model.load_state_dict(eager.state_dict())
    x = torch.randn(1, 3, *SIZES[0])
    with torch.no_grad():
        for a, b in zip(model(x), eager(x)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert backend.graphs >= 4


@needs_module_compile
def test_a_compiled_stage_asks_for_its_plain_forward(monkeypatch):
    from mmparcnet.models.layers import block as block_module
    model = ParCNetV2(SMALL, compile_blocks=dict(backend='eager'))
    asked = []
    real_choose = block_module.choose

    def spy(operation, plain, enabled):
        asked.append((operation, enabled))
        return real_choose(operation, plain, enabled)

    monkeypatch.setattr(block_module, 'choose', spy)
    model.set_fast_paths(True)
    assert asked == [('stage', False)] * 4


@needs_module_compile
@pytest.mark.skipif(
    not triton_kernels.AVAILABLE, reason='no Triton kernels to offer')
def test_stages_keep_going_through_the_compiled_blocks():
    # the fused residual stream calls the blocks' parts, not their forward
    compiled = ParCNetV2(SMALL, compile_blocks=dict(backend='eager'))
    eager = ParCNetV2(SMALL)
    with triton_kernels.kernels(True):
        compiled.set_fast_paths(True)
        eager.set_fast_paths(True)
    plain = Stage.plain_forward
    assert all(stage.compute != plain for stage in eager.stages)
    assert all(stage.compute == plain for stage in compiled.stages)


@pytest.mark.parametrize('value', ['yes', 1, None])
def test_compile_blocks_must_be_a_bool_or_a_dict(value):
    with pytest.raises(TypeError, match='compile_blocks must be a bool or'):
        ParCNetV2(SMALL, compile_blocks=value)


@needs_module_compile
def test_inductor_trains_the_blocks_at_dynamic_sizes(fresh_dynamo):
    """What users run: inductor, training, two input sizes, the eager
    gradients. (Before the kernels were resized in their own layout under
    Dynamo, inductor of torch 2.14.1 stopped at the resized kernel's view:
    ``cannot determine truth value of Relational``. On the CPU inductor
    then specializes the sizes again: a graph per stage and size.)"""
    torch.manual_seed(0)
    arch = dict(depths=[1, 1, 1, 1], dims=[8, 16, 24, 32])
    model = ParCNetV2(arch, compile_blocks=dict(backend='inductor')).train()
    assert all(block._compiled_call_impl is not None for stage in model.stages
               for block in stage)
    eager = ParCNetV2(arch).train()
    eager.load_state_dict(model.state_dict())
    for size in [(112, 144), (144, 112)]:
        grads = []
        for run in (model, eager):
            x = torch.randn(
                2, 3, *size,
                generator=torch.Generator().manual_seed(1)).requires_grad_()
            sum((o * o).sum() for o in run(x)).backward()
            grads.append([x.grad] + [p.grad for p in run.parameters()])
            run.zero_grad()
        for a, b in zip(*grads):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # the blocks ran compiled: graphs were made (the counts start at zero)
    assert torch._dynamo.utils.counters['stats']['unique_graphs'] > 0
