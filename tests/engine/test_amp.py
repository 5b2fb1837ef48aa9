"""Mixed-precision training through the oversized convolution: bf16 on the
CPU (CPUAwareAmpOptimWrapper), fp16 on CUDA (mmengine's AmpOptimWrapper)."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.optim import build_optim_wrapper

import mmparcnet  # noqa: F401  (registers the wrapper)
from mmparcnet.engine.distributed import accelerator_available
from mmparcnet.engine.optimizers.amp import cpu_loss_scaling_available
from mmparcnet.models import ParCNetV2

STEPS = 100


class TinyClassifier(BaseModel):

    def __init__(self, impl):
        super().__init__()
        self.backbone = ParCNetV2(
            dict(depths=[1, 1, 1], dims=[8, 16, 24]),
            out_indices=(2, ),
            gap_before_final_norm=True,
            drop_path_rate=0.1,
            oversized_conv_impl=impl)
        self.head = torch.nn.Linear(24, 2)
        self.stem_dtypes = []
        # the stem's convolution: autocast runs it in the low precision on
        # every device (its norm is float32 under CUDA's autocast)
        self.backbone.downsample_layers[0].conv.register_forward_hook(
            lambda module, args, output: self.stem_dtypes.append(output.dtype))

    def forward(self, inputs, labels, mode='loss'):
        logits = self.head(self.backbone(inputs)[0])
        return dict(loss=F.cross_entropy(logits.float(), labels))


def generated_batches(device, steps, size=(48, 64)):
    """Images whose class is the brighter half (left or right)."""
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        images = torch.randn(4, 3, *size, generator=generator)
        labels = torch.randint(0, 2, (4, ), generator=generator)
        half = size[1] // 2
        for image, label in zip(images, labels):
            image[:, :, half * int(label):half * (int(label) + 1)] += 1.5
        yield dict(inputs=images.to(device), labels=labels.to(device))


def wrapper_for(device, model, **scaler):
    if device == 'cpu':
        cfg = dict(type='CPUAwareAmpOptimWrapper', dtype='bfloat16')
    else:
        cfg = dict(type='AmpOptimWrapper', dtype='float16')
    cfg.update(optimizer=dict(type='AdamW', lr=2e-3), **scaler)
    return build_optim_wrapper(model, cfg)


DEVICES = [
    # on a host with a GPU the wrapper is mmengine's AmpOptimWrapper, which
    # autocasts the GPU only (a model left on the CPU trains in float32)
    pytest.param(
        'cpu',
        marks=pytest.mark.skipif(
            accelerator_available(),
            reason='the CPU wrapper is for hosts without a GPU')),
    pytest.param(
        'cuda',
        marks=pytest.mark.skipif(
            not torch.cuda.is_available(), reason='fp16 AMP needs CUDA'))
]
# before PyTorch 2.3 the CPU wrapper runs without a scaler (scale 1)
SCALED = [
    'cpu' if cpu_loss_scaling_available() else pytest.param(
        'cpu',
        marks=pytest.mark.skip(
            reason=f'PyTorch {torch.__version__} has no CPU loss scaling')),
    DEVICES[1]
]


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('impl', ['direct', 'fft', 'matmul'])
def test_amp_training_stays_finite_and_learns(device, impl):
    torch.manual_seed(0)
    model = TinyClassifier(impl).to(device)
    wrapper = wrapper_for(device, model)
    losses, skipped = [], 0
    for data in generated_batches(device, STEPS):
        scale = wrapper.loss_scaler.get_scale()
        log = model.train_step(data, wrapper)
        losses.append(log['loss'].item())
        skipped += wrapper.loss_scaler.get_scale() < scale
    low_precision = torch.bfloat16 if device == 'cpu' else torch.float16
    assert set(model.stem_dtypes) == {low_precision}  # autocast was on
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert all(torch.isfinite(p).all() for p in model.parameters())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.8 * first, (first, last)
    # bfloat16 has float32's range: no step overflows. In float16 the
    # convolution biases' gradients, sums over every position, overflow at
    # the initial scale of 2**16 in the first steps, and the scaler halves
    # it: twice in these 100 steps on an H200 (final scale 2**14; by hand,
    # the CPU's float16 autocast skips steps 1 and 11); more would mean
    # overflows that do not settle
    assert skipped <= (0 if device == 'cpu' else 3), skipped


@pytest.mark.parametrize('device', SCALED)
def test_loss_scale_skips_non_finite_steps_and_grows_back(device):
    torch.manual_seed(0)
    model = TinyClassifier('auto').to(device)
    wrapper = wrapper_for(
        device, model, loss_scale=dict(init_scale=1024.0, growth_interval=2))
    batches = list(generated_batches(device, 4))
    model.train_step(batches[0], wrapper)
    assert wrapper.loss_scaler.get_scale() == 1024.0

    before = {k: v.clone() for k, v in model.state_dict().items()}
    poisoned = dict(batches[1], inputs=batches[1]['inputs'].clone())
    poisoned['inputs'][0, 0, 0, 0] = float('inf')
    model.train_step(poisoned, wrapper)
    # the overflowing step was skipped and the scale backed off
    for name, value in model.state_dict().items():
        if 'running' not in name and 'num_batches' not in name:
            assert torch.equal(value, before[name]), name
    assert wrapper.loss_scaler.get_scale() == 512.0

    model.train_step(batches[2], wrapper)
    assert wrapper.loss_scaler.get_scale() == 512.0
    model.train_step(batches[3], wrapper)  # two finite steps in a row
    assert wrapper.loss_scaler.get_scale() == 1024.0

    # the scale travels in the wrapper's state dict (checkpoints, resume)
    state = wrapper.state_dict()
    fresh = wrapper_for(device, TinyClassifier('auto').to(device))
    fresh.load_state_dict(state)
    assert fresh.loss_scaler.get_scale() == 1024.0


def test_cpu_wrapper_rejects_float16_clearly():
    if torch.cuda.is_available():
        pytest.skip('fp16 is valid with a GPU')
    with pytest.raises(ValueError, match='bfloat16 only'):
        build_optim_wrapper(
            TinyClassifier('auto'),
            dict(
                type='CPUAwareAmpOptimWrapper',
                dtype='float16',
                optimizer=dict(type='SGD', lr=0.1)))
