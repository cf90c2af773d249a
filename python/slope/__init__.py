"""Slope from Python: compile array programs with automatic derivatives and
call their entry points on NumPy arrays.

    import numpy as np
    import slope

    m = slope.compile("model.slope")            # or slope.compile_source(text)
    g = m.gradient(w=np.zeros(3), xs=xs, ys=ys)  # keyword arguments by name
    m.entries                                    # {'loss': <entry loss ...>, ...}

Values: NumPy arrays of float64, float32, int64 or bool (the dtype must be
the parameter's: nothing is cast silently), Python numbers and bools,
tuples, dicts for records and nested lists. Results come back the same way,
arrays as NumPy arrays that own their data. Every failure is a
``slope.Error`` (``CompileError``, ``InputError``, ``RunError`` or
``InternalError``) with ``code`` (e.g. ``"E0201"``), ``message`` and
``diagnostic`` — the text the ``slope`` command prints. The GIL is released
while an entry runs; a module may be called from several threads at once.
See docs/python.md.
"""

import os as _os

from . import _slope
from ._slope import CompileError, Error, InputError, InternalError, RunError

__all__ = [
    "compile",
    "compile_source",
    "Module",
    "Entry",
    "Error",
    "CompileError",
    "InputError",
    "RunError",
    "InternalError",
]


def compile(path, threads=None, checkpoint=False, save=None, engine=None, reassociate=False):
    """Compiles the Slope program in the file ``path`` (imports are read
    relative to it). ``engine``: the back end that runs calls, as the CLI's
    ``--engine``: ``"multicore"`` (the default: native code, parallel loops
    on the thread pool), ``"sequential"`` (native code on the calling thread)
    or ``"interp"`` (the reference interpreter). ``threads``: how many
    threads parallel loops use on ``"multicore"`` (default:
    ``SLOPE_THREADS``, else every core). ``checkpoint``: reverse
    mode through loops keeps √n checkpoints instead of a full tape.
    ``save``: what reverse mode saves from map bodies instead of recomputing
    them, ``"nothing"``, ``"host-calls"`` (the default), ``"slow-ops"`` or
    ``"everything"`` (as the CLI's ``--checkpoint`` and ``--save``).
    ``reassociate``: native code may reassociate floating-point sums and
    products in loops (the CLI's ``--reassociate``): faster, the same for
    every thread count, but their last bits may differ from ``"interp"``."""
    path = _os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise _file_error(path, e) from None
    return Module(_slope.compile(text, path, threads, checkpoint, save, engine, reassociate))


def compile_source(source, name="<string>", threads=None, checkpoint=False, save=None, engine=None,
                   reassociate=False):
    """Compiles Slope source text; ``name`` labels it in diagnostics and
    imports are read relative to it (the current directory by default).
    The other arguments are those of :func:`compile`."""
    return Module(_slope.compile(source, name, threads, checkpoint, save, engine, reassociate))


class Entry:
    """One entry point of a compiled module; call it like a function."""

    def __init__(self, module, name):
        self._module = module
        self.name = name
        params, result = module._program.signature(name)
        #: The parameters as ``(name, type)`` pairs, types as Slope writes them.
        self.params = params
        #: The result type as Slope writes it.
        self.result = result
        self.__doc__ = f"Slope entry point: {self}"

    def __call__(self, *args, **kwargs):
        return self._module._program.call(self.name, *args, **kwargs)

    def __str__(self):
        params = " ".join(f"({n}: {t})" for n, t in self.params)
        return f"{self.name} {params} : {self.result}"

    def __repr__(self):
        return f"<entry {self}>"


class Module:
    """A compiled Slope program. Its entry points are attributes
    (``m.gradient(x=...)``) and the values of ``m.entries``."""

    def __init__(self, program):
        self._program = program
        self.entries = {name: Entry(self, name) for name in program.entries}

    def __getattr__(self, name):
        entries = self.__dict__.get("entries", {})
        if name in entries:
            return entries[name]
        raise AttributeError(f"the program has no entry point `{name}` (its entries: {', '.join(entries)})")

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self.entries))

    def call(self, entry, *args, **kwargs):
        """Calls the entry point named ``entry``."""
        return self._program.call(entry, *args, **kwargs)

    def set_threads(self, threads):
        """Runs parallel loops on ``threads`` threads from the next call on;
        results are bit-identical for every count."""
        self._program.set_threads(threads)

    def emit(self, stage, entry=None):
        """The program after a compiler stage (``"ir"``, ``"opt"``,
        ``"loops"``, ...), as ``slope emit --stage`` prints it."""
        return self._program.emit(stage, entry)

    def __repr__(self):
        return f"<slope.Module with entries {', '.join(self.entries)}>"


def _file_error(path, err):
    e = InputError(f"error[E0303]: cannot read {path}: {err.strerror or err}")
    e.code = "E0303"
    e.codes = ["E0303"]
    e.message = f"cannot read {path}"
    e.diagnostic = str(e)
    return e
