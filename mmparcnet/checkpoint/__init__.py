from .loading import (detect_layout, infer_arch, load_pretrained,
                      load_state_into, unwrap_state_dict)
from .safe_io import CheckpointError, load_checkpoint_file

__all__ = [
    'CheckpointError', 'detect_layout', 'infer_arch', 'load_checkpoint_file',
    'load_pretrained', 'load_state_into', 'unwrap_state_dict'
]
