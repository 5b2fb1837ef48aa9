from .complexity import (PAPER_UPERNET, REFERENCE_CLASSIFIERS,
                         ClassifierForCounting, count_macs, count_parameters)

__all__ = [
    'ClassifierForCounting', 'count_parameters', 'count_macs',
    'REFERENCE_CLASSIFIERS', 'PAPER_UPERNET'
]
