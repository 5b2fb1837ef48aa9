from .complexity import ClassifierForCounting, count_parameters, count_macs

__all__ = ['ClassifierForCounting', 'count_parameters', 'count_macs']
