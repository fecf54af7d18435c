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

Only modules loaded before the guard starts are swapped (importing the whole package first
would cost seconds per process); a guarded module that the student's code imports while the
guard is active comes as a stand-in (:class:`BlockedModule`) whose every attribute records the
attempt and raises :class:`ReferenceUsedError` when called. The trusted grader's sandboxed child
uses the same stand-ins for the parts of the package that are not on its file system.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

__all__ = ["ReferenceUsedError", "ReferenceGuard", "DEFAULT_GUARDED", "DEFAULT_ALLOWED", "Blocked", "BlockedModule",
           "BlockingFinder"]

#: Packages whose functions are blocked while a student's code runs.
DEFAULT_GUARDED = ("lecture_ae",)
#: Modules that stay usable: the checking framework and harmless utilities.  Assignment
#: check modules (``lecture_ae.grading.ps1``...) are guarded: their wrong-implementation
#: variants include the right one.
DEFAULT_ALLOWED = ("lecture_ae.grading.checks", "lecture_ae.grading.guard", "lecture_ae.grading.inputs",
                   "lecture_ae.grading._child", "lecture_ae.grading._wire", "lecture_ae.grading._launch",
                   "lecture_ae.grading.sandbox", "lecture_ae.grading.trusted", "lecture_ae.grading.autograde",
                   "lecture_ae.grading.pipeline", "lecture_ae.grading.__main__", "lecture_ae.runtime",
                   "lecture_ae._checks")


class ReferenceUsedError(RuntimeError):
    """Raised when guarded reference code is called during a student's function."""


def _suppress():
    import contextlib

    return contextlib.suppress(ValueError)


def _stub(*args, **kwargs):  # its code object is put into every guarded function
    import sys

    sys.modules["lecture_ae.grading.guard"]._blocked_call(sys._getframe(0).f_code)


_STUB_CODE = _stub.__code__

# code object of a stub -> "module.qualname" of the function it replaced, for the active guards
_REGISTRY: dict[types.CodeType, str] = {}
_CALLS: list[list[str]] = []  # one list per active guard (guards nest)


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


def _record(name: str) -> None:
    for calls in _CALLS:
        calls.append(name)


class Blocked:
    """Stands in for a function or class of the reference that is not available (a stand-in module's attribute)."""

    def __init__(self, name: str):
        object.__setattr__(self, "_name", name)

    def __call__(self, *args, **kwargs):
        _record(self._name)
        raise ReferenceUsedError(f"{self._name} is part of the reference implementation (lecture_ae) and cannot be "
                                 "used inside the function you are asked to write")

    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return Blocked(f"{self._name}.{attr}")

    def __repr__(self):
        return f"<reference {self._name} (blocked)>"


class BlockedModule(types.ModuleType):
    """A module of the reference imported while it is blocked: every attribute is a :class:`Blocked`."""

    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        return Blocked(f"{self.__name__}.{attr}")


class _BlockedLoader(importlib.abc.Loader):
    def __init__(self, permanent: bool = False):
        self.permanent = permanent  # False: removed again when the guard that made it ends

    def create_module(self, spec):
        module = BlockedModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        return None


class BlockingFinder(importlib.abc.MetaPathFinder):
    """An import hook: modules of ``packages`` (not ``allow``) import as :class:`BlockedModule`.

    ``missing_only``: only those that are not on the file system (the child's permanent hook);
    otherwise every one that is not loaded yet (the hook of an active guard).
    """

    def __init__(self, packages, allow=(), missing_only=False):
        self.packages, self.allow, self.missing_only = tuple(packages), tuple(allow), missing_only

    def find_spec(self, name, path=None, target=None):
        if not _matches(name, self.packages) or _matches(name, self.allow) or name in self.packages:
            return None
        if self.missing_only:
            if importlib.machinery.PathFinder.find_spec(name, path) is not None:
                return None
        return importlib.util.spec_from_loader(name, _BlockedLoader(self.missing_only), is_package=True)


class ReferenceGuard:
    """Context manager: block the reference while the body runs; ``calls`` lists what was called.

    Parameters
    ----------
    packages : package names whose modules are guarded (the loaded ones are swapped; one imported
        inside the guarded body is a :class:`BlockedModule`).
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
        """The loaded modules of the guarded packages (not the allowed ones, not the stand-ins)."""
        return [m for name, m in list(sys.modules.items())
                if isinstance(m, types.ModuleType) and not isinstance(m, BlockedModule)
                and _matches(name, self.packages) and not _matches(name, self.allow)]

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
        self._finder = BlockingFinder(self.packages, self.allow)
        sys.meta_path.insert(0, self._finder)
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
        finder = getattr(self, "_finder", None)
        if finder is not None:
            with _suppress():
                sys.meta_path.remove(finder)
            for name, module in list(sys.modules.items()):  # stand-ins imported during the body go again
                spec = getattr(module, "__spec__", None)
                if isinstance(module, BlockedModule) and spec is not None \
                        and isinstance(spec.loader, _BlockedLoader) and not spec.loader.permanent:
                    del sys.modules[name]
                    parent, _, child = name.rpartition(".")
                    if parent in sys.modules and vars(sys.modules[parent]).get(child) is module:
                        delattr(sys.modules[parent], child)
            self._finder = None

    def __exit__(self, *exc):
        self._restore()
        return False

