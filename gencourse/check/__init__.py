"""``check.<exercise>(fn)``: the instant checks of every lesson's exercises, in one namespace.

Each lesson's checks live in a module of this package (``lesson01.py``, ...) that lists them in
``__all__``; they are gathered here, so a notebook writes ``from gencourse import check`` and then
``check.bits_per_dim(my_bits_per_dim)``. See :mod:`gencourse.exercises` for how a check behaves.
"""
import importlib
import pkgutil

from gencourse.exercises import grading_mode, results, solution, summary

__all__ = ["grading_mode", "results", "solution", "summary"]

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    for _name in getattr(_module, "__all__", ()):
        if _name in globals():
            raise ImportError(f"check name {_name!r} of {_info.name} is already defined by another lesson")
        globals()[_name] = getattr(_module, _name)
        __all__.append(_name)
