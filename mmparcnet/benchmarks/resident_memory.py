"""Peak memory of CPU code, read from the kernel's count of resident pages.

PyTorch keeps no statistics for CPU tensors, but Linux keeps the peak
resident set of a process (``VmHWM`` in ``/proc/self/status``) and resets it
to the present one when ``5`` is written to ``/proc/self/clear_refs``. That
peak follows the tensors only if freed memory goes back to the kernel at
once. glibc's ``malloc`` serves blocks below a threshold from heaps that keep
freed memory resident, and raises that threshold (up to 32 MiB) as large
blocks are freed, so in a long-lived process a second pass finds much of its
memory already resident and the peak reads far too low. A process started
with ``MALLOC_MMAP_THRESHOLD_`` set maps every block from that size up on
its own and unmaps it when it is freed (setting it also stops the raising),
so :func:`peak_mib` in such a process measures what a computation needs.
Start one with :func:`measuring_env`; it pays a page fault per fresh page,
so time nothing there.
"""
import os
import platform
from typing import Callable, Dict, Optional

MMAP_THRESHOLD = 64 * 1024
THRESHOLD_VARIABLE = 'MALLOC_MMAP_THRESHOLD_'


def unsupported_reason() -> Optional[str]:
    """Why peak CPU memory cannot be measured here, or None if it can."""
    if platform.system() != 'Linux':
        return f'needs Linux (/proc/self/status), not {platform.system()}'
    if platform.libc_ver()[0] != 'glibc':
        return 'needs glibc (its malloc reads MALLOC_MMAP_THRESHOLD_)'
    if not os.access('/proc/self/clear_refs', os.W_OK):
        return '/proc/self/clear_refs is not writable here'
    return None


def measuring_env() -> Dict[str, str]:
    """This process's environment, plus the fixed malloc threshold that
    :func:`peak_mib` needs in the process it is given to."""
    return {**os.environ, THRESHOLD_VARIABLE: str(MMAP_THRESHOLD)}


def _status_mib(key: str) -> float:
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith(key + ':'):
                return int(line.split()[1]) / 1024  # the kernel counts kB
    raise RuntimeError(f'{key} is missing from /proc/self/status')


def peak_mib(fn: Callable[[], None]) -> float:
    """How many MiB the resident set grows by, at most, while ``fn()``
    runs (what it allocates and frees included, what it keeps included).

    Raises:
        RuntimeError: if this process was not started with
            :func:`measuring_env`, where the result would read too low.
    """
    if os.environ.get(THRESHOLD_VARIABLE) != str(MMAP_THRESHOLD):
        raise RuntimeError(
            f'peak_mib needs a process started with {THRESHOLD_VARIABLE}='
            f'{MMAP_THRESHOLD} in its environment (see measuring_env): '
            'without it glibc keeps freed memory resident and the peak reads '
            'too low')
    base = _status_mib('VmRSS')
    with open('/proc/self/clear_refs', 'w') as clear_refs:
        clear_refs.write('5')  # VmHWM := VmRSS
    fn()
    return _status_mib('VmHWM') - base
