"""How fast ParCNetV2 runs, measured on this device: the library behind
``mmparcnet-benchmark`` (:mod:`mmparcnet.tools.benchmark`), one module per
part:

- :mod:`.conv`: the oversized convolution alone, every implementation, at
  ParCNetV2-T's stage shapes;
- :mod:`.backbones`: ParCNetV2-T and its variants against ConvNeXt-T and
  Swin-T as detection backbones;
- :mod:`.onnx`: the exported models in ONNX Runtime beside eager PyTorch,
  and where ONNX Runtime's time goes;
- :mod:`.memory`: the backbones' peak CPU memory, each measured in a fresh
  process (how: :mod:`.resident_memory`);
- :mod:`.report`: the printed tables;

and what they share: :mod:`.timing` (median times, in turns) and
:mod:`.ratios` (every ratio to ConvNeXt-T).

Nothing is imported here: ``python -m mmparcnet.benchmarks.memory`` (the
fresh process) must find its module not yet imported.
"""
