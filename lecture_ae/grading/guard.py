"""Make the reference implementation unusable while a student's function runs.

Students have :mod:`lecture_ae` installed (the visible tests need it), so a
student could "implement" ``ista`` as ``return lecture_ae.sparse.ista(...)``.
:class:`ReferenceGuard` swaps the code object of every function and method
defined in the guarded packages for a stub that records the call and raises
:class:`ReferenceUsedError`.  Swapping ``__code__`` (instead of rebinding module
attributes) also catches aliases the student made earlier, e.g.
``from lecture_ae.sparse import ista as ref``.  Everything is restored on exit.

Functions with closures (decorated wrappers) cannot take a code object without
the same free variables; for those the function they wrap (``__wrapped__``) is
blocked and the module attribute replaced.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
import types

__all__ = ["ReferenceUsedError", "ReferenceGuard", "DEFAULT_GUARDED", "DEFAULT_ALLOWED"]

#: Packages whose functions are blocked while a student's code runs.
DEFAULT_GUARDED = ("lecture_ae",)
#: Modules that stay usable: the checking framework and harmless utilities.  Assignment
#: check modules (``lecture_ae.grading.ps1``...) are guarded: their wrong-implementation
#: variants include the right one.
DEFAULT_ALLOWED = ("lecture_ae.grading.checks", "lecture_ae.grading.guard", "lecture_ae.runtime", "lecture_ae._checks")


class ReferenceUsedError(RuntimeError):
    """Raised when guarded reference code is called during a student's function."""


def _stub(*args, **kwargs):  # its code object is put into every guarded function
    import sys

    sys.modules["lecture_ae.grading.guard"]._blocked_call(sys._getframe(0).f_code)


_STUB_CODE = _stub.__code__

# code object of a stub -> "module.qualname" of the function it replaced, for the active guards
_REGISTRY: dict[types.CodeType, str] = {}
_CALLS: list[list[str]] = []  # one list per active guard (guards nest)
_SUBMODULES: dict[tuple, list[str]] = {}  # package -> names of its submodules (found once per process)


def _blocked_call(code) -> None:
    name = _REGISTRY.get(code, getattr(code, "co_qualname", "?"))
    for calls in _CALLS:
        calls.append(name)
    raise ReferenceUsedError(
        f"{name} is part of the reference implementation (lecture_ae) and cannot be used "
        "inside the function you are asked to write"
    )


def _matches(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


class ReferenceGuard:
    """Context manager: block the reference while the body runs; ``calls`` lists what was called.

    Parameters
    ----------
    packages : package names whose modules are guarded (all submodules are imported first,
        so that a lazy ``import`` inside the student's function gets the guarded module too).
    allow : module names, or fully qualified ``module.QualName`` of functions/classes,
        that stay usable (e.g. a reference model the check passes to the student's function).
    """

    def __init__(self, packages=DEFAULT_GUARDED, allow=DEFAULT_ALLOWED):
        self.packages = tuple(packages)
        self.allow = tuple(allow)
        self.calls: list[str] = []
        self._saved: list[tuple] = []

    # ------------------------------------------------------------------ discovery
    def _modules(self):
        mods = []
        for pkg_name in self.packages:
            try:
                pkg = importlib.import_module(pkg_name)
            except ImportError:
                continue
            mods.append(pkg)
            key = (pkg_name, tuple(getattr(pkg, "__path__", [])))
            if key not in _SUBMODULES:
                # onerror: a subpackage that fails to import is skipped, whatever the exception
                _SUBMODULES[key] = [info.name for info in pkgutil.walk_packages(
                    getattr(pkg, "__path__", []), pkg_name + ".", onerror=lambda name: None)]
            for name in _SUBMODULES[key]:
                if _matches(name, self.allow):
                    continue
                try:
                    mods.append(importlib.import_module(name))
                except Exception:  # an optional dependency missing: nothing to guard there
                    continue
        return [m for m in mods if not _matches(m.__name__, self.allow)]

    def _targets(self):
        """(function, owner, attribute name) for every function/method defined in the guarded modules."""
        seen = set()
        for mod in self._modules():
            for attr, obj in list(vars(mod).items()):
                if getattr(obj, "__module__", None) != mod.__name__:
                    continue
                qual = f"{mod.__name__}.{getattr(obj, '__qualname__', attr)}"
                if _matches(qual, self.allow):
                    continue
                if isinstance(obj, types.FunctionType):
                    if id(obj) not in seen:
                        seen.add(id(obj))
                        yield obj, mod, attr
                elif isinstance(obj, type):
                    for mname, member in list(vars(obj).items()):
                        fn = member
                        if isinstance(member, (staticmethod, classmethod)):
                            fn = member.__func__
                        elif isinstance(member, property):
                            fn = member.fget
                        if isinstance(fn, types.FunctionType) and id(fn) not in seen:
                            seen.add(id(fn))
                            yield fn, None, mname

    # -------------------------------------------------------------------- enter/exit
    def __enter__(self):
        self.calls = []
        _CALLS.append(self.calls)
        try:
            for fn, mod, attr in self._targets():
                name = f"{fn.__module__}.{fn.__qualname__}"
                if fn.__closure__ is None:
                    stub = _STUB_CODE.replace(co_name=fn.__code__.co_name, co_qualname=fn.__qualname__,
                                              co_filename=f"<reference {name} is blocked>")
                    _REGISTRY[stub] = name
                    self._saved.append(("code", fn, fn.__code__, stub))
                    fn.__code__ = stub
                else:
                    # a decorated function (functools.wraps): block the wrapped function's code, which
                    # every alias reaches through the wrapper, and the module attribute
                    inner = getattr(fn, "__wrapped__", None)
                    while inner is not None and getattr(inner, "__closure__", 0) is not None:
                        inner = getattr(inner, "__wrapped__", None)
                    if isinstance(inner, types.FunctionType):
                        stub = _STUB_CODE.replace(co_name=inner.__code__.co_name, co_qualname=inner.__qualname__,
                                                  co_filename=f"<reference {name} is blocked>")
                        _REGISTRY[stub] = name
                        self._saved.append(("code", inner, inner.__code__, stub))
                        inner.__code__ = stub
                if fn.__closure__ is not None and mod is not None:
                    def blocked(*args, _name=name, **kwargs):
                        for calls in _CALLS:
                            calls.append(_name)
                        raise ReferenceUsedError(f"{_name} is part of the reference implementation (lecture_ae)")

                    self._saved.append(("attr", mod, attr, fn))
                    setattr(mod, attr, blocked)
        except BaseException:
            self._restore()
            raise
        return self

    def _restore(self):
        while self._saved:
            kind, owner, key, value = self._saved.pop()
            if kind == "code":  # owner: the function, key: its own code, value: the stub
                _REGISTRY.pop(value, None)
                owner.__code__ = key
            else:  # owner: the module, key: the attribute, value: the original function
                setattr(owner, key, value)
        if _CALLS and _CALLS[-1] is self.calls:
            _CALLS.pop()

    def __exit__(self, *exc):
        self._restore()
        return False

