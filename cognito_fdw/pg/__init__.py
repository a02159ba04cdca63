"""Every call into PostgreSQL or CPython's C API through ctypes, made on the backend's
thread only (docs/multicorn.md H8: no PostgreSQL call off the backend thread):
:mod:`.backend` (the thread guard, interrupts, the encoding), :mod:`.catalog` (catalog reads)
and :mod:`.dateguard` (Multicorn's date conversions, docs/multicorn.md H11: an unholdable date
in an array crashed the backend).  Only this package imports ctypes
(tests/unit/test_layout.py).
"""
