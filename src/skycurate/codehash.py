"""The code a dataset task runs, for its cache key: derived from the task function, not listed by hand.

``task_code_modules(fn)`` is the set of modules whose source decides what ``fn`` computes:

1. the module that defines the task;
2. what the function's own code uses: its body, nested functions and annotations, and (read the
   same way, recursively) the helper functions of its own module or of another flow module that
   it calls. That is every module it imports, and for every global name it uses the module the
   name comes from: a module object itself, the module defining a function or class, else the
   module the task's module imported the name from (constants such as Arrow schemas);
3. the transitive closure of the skycurate imports of those modules (at module level and inside
   functions), plus the modules they run in a subprocess, found as string constants: a dotted
   ``"skycurate.x.y"`` name (``python -m``) or a sibling file name ``"x.py"``.

Plumbing is neither hashed nor followed, so editing it does not invalidate every cache:
the ``skycurate`` package root (its version is in the cache key already), ``skycurate.catalog``
(how versions are stored, pinned and published), ``skycurate.localfs`` (how a file is written
atomically), ``skycurate.flows`` (Prefect glue such as ``_runtime``; a flow module counts only
as a task's own module or as the home of a helper the task calls), ``skycurate.spark`` (how a
session is reached and batches are handed to a stage: ``SparkConfig`` is left out of the key
for the same reason), ``skycurate.cli``, ``skycurate.errors`` and this module. Everything else computes
(``stages``, ``connectors``, ``schemas``, ``sandbox``, ``samples``, ``reporting``, and any new
module not named above) and counts.

A package counts by its ``__init__.py`` only: the submodules a task needs are in the closure.
Modules found by none of these rules (loaded by a computed name, say) can be named with
``dataset_task(code=[...])``; a package named there counts with every module below it.

The code is read from compiled code objects (the ``__pycache__`` bytecode when it is fresh),
never by importing a module, so deriving a key is fast and imports nothing new.
"""

from __future__ import annotations

import dis
import hashlib
import importlib.machinery
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from pathlib import Path
from types import CodeType

import skycurate

PACKAGE = "skycurate"
PLUMBING = ("skycurate.catalog", "skycurate.localfs", "skycurate.flows", "skycurate.spark", "skycurate.cli",
            "skycurate.errors", "skycurate.codehash")
FLOWS = "skycurate.flows"
_ROOT = Path(skycurate.__file__).parent
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
_NAME = re.compile(r"[A-Za-z_]\w*")
_MISSING = object()


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def is_plumbing(name: str) -> bool:
    return name == PACKAGE or any(_within(name, p) for p in PLUMBING)


def _counts(name: str) -> bool:
    """A skycurate module that computes (a module outside skycurate counts only as a task's own)."""
    return _within(name, PACKAGE) and not is_plumbing(name)


@cache
def module_file(name: str) -> Path | None:
    """The source file of a module (a package: its ``__init__.py``), or None; skycurate modules are
    found without importing anything."""
    if _within(name, PACKAGE):
        parts = name.split(".")[1:]
        if not all(part.isidentifier() for part in parts):
            return None
        base = _ROOT.joinpath(*parts)
        for candidate in (base.parent / f"{base.name}.py", base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None
    module = sys.modules.get(name)
    origin = getattr(module, "__file__", None) if module else None
    if origin is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        origin = spec.origin if spec else None
    return Path(origin) if origin and origin.endswith(".py") else None


def _package_of(name: str) -> str:
    path = module_file(name)
    return name if path is not None and path.name == "__init__.py" else name.rpartition(".")[0]


def _code_objects(code: CodeType) -> Iterator[CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _code_objects(const)


def _imported(name: str, level: object, fromlist: object, package: str) -> Iterator[str]:
    """The modules one import statement loads: ``from a import b`` is ``a.b`` when that is a
    skycurate module, else ``a``."""
    if isinstance(level, int) and level > 0:
        parts = package.split(".")
        name = ".".join(parts[:len(parts) - level + 1] + ([name] if name else []))
    if not isinstance(fromlist, tuple) or not fromlist:
        yield name
        return
    for item in fromlist:
        sub = f"{name}.{item}"
        yield sub if _within(sub, PACKAGE) and module_file(sub) else name


def _run_by_name(value: str, module: str) -> Iterator[str]:
    """Modules a string constant names: ``"skycurate.x.y"`` or a sibling file ``"x.py"``."""
    if _DOTTED.fullmatch(value) and _within(value, PACKAGE) and module_file(value):
        yield value
    elif value.endswith(".py") and value[:-3].isidentifier() and value != "__init__.py":
        sibling = f"{_package_of(module)}.{value[:-3]}"
        if _within(sibling, PACKAGE) and module_file(sibling):
            yield sibling


def _scan(code: CodeType, module: str) -> tuple[set[str], set[str]]:
    """(modules imported or run by name, global names loaded) in ``code`` and the code nested in it."""
    package = _package_of(module)
    modules: set[str] = set()
    names: set[str] = set()
    for co in _code_objects(code):
        before: list[object] = [None, None]  # argvals of the two previous instructions: level, fromlist
        for ins in dis.get_instructions(co):
            if ins.opname == "IMPORT_NAME":
                modules.update(_imported(ins.argval, before[0], before[1], package))
            elif ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
                names.add(ins.argval)
            before = [before[1], ins.argval]
        for const in co.co_consts:
            if isinstance(const, str):
                modules.update(_run_by_name(const, module))
    return modules, names


@cache
def _module_deps(name: str) -> frozenset[str]:
    """The skycurate modules a module imports or runs, anywhere in its code."""
    path = module_file(name)
    if path is None:
        return frozenset()
    code = importlib.machinery.SourceFileLoader(name, str(path)).get_code(name)
    return frozenset(m for m in _scan(code, name)[0] if _within(m, PACKAGE))


@cache
def _import_map(name: str) -> dict[str, str]:
    """Bound name -> module, for a module's top-level imports (bound names are the instruction
    after an ``IMPORT_NAME`` / ``IMPORT_FROM``)."""
    path = module_file(name)
    if path is None:
        return {}
    code = importlib.machinery.SourceFileLoader(name, str(path)).get_code(name)
    package = _package_of(name)
    found: dict[str, str] = {}
    imported, pending, before = "", "", [None, None]
    for ins in dis.get_instructions(code):
        if ins.opname == "IMPORT_NAME":
            imported = pending = ".".join(_imported(ins.argval, before[0], None, package))
        elif ins.opname == "IMPORT_FROM":
            sub = f"{imported}.{ins.argval}"
            pending = sub if _within(sub, PACKAGE) and module_file(sub) else imported
        elif ins.opname in ("STORE_NAME", "STORE_GLOBAL") and pending:
            found[ins.argval] = pending
            pending = ""
        elif ins.opname not in ("IMPORT_FROM", "LOAD_ATTR"):
            pending = ""
        before = [before[1], ins.argval]
    return found


def closure(roots: Iterable[str]) -> set[str]:
    """The skycurate modules among ``roots`` and every one they import or run, plumbing left out."""
    found: set[str] = set()
    todo = [r for r in roots if _counts(r)]
    while todo:
        name = todo.pop()
        if name in found or module_file(name) is None:
            continue
        found.add(name)
        todo.extend(m for m in _module_deps(name) if _counts(m) and m not in found)
    return found


def _reads_helpers_of(module: str, task_module: str) -> bool:
    """Functions of the task's own module and of flow modules are read like the task itself."""
    return module == task_module or (_within(module, FLOWS) and not module.rpartition(".")[2].startswith("_"))


def _function_uses(fn: Callable, task_module: str, seen: set[Callable], helper_modules: set[str]) -> set[str]:
    """Modules one function's code uses; the helpers it calls are read too (their modules are
    added to ``helper_modules``)."""
    if fn in seen:
        return set()
    seen.add(fn)
    found, names = _scan(fn.__code__, fn.__module__)
    for annotation in getattr(fn, "__annotations__", {}).values():
        if isinstance(annotation, str):  # ``from __future__ import annotations``
            names.update(_NAME.findall(annotation))
        elif getattr(annotation, "__module__", None):
            found.add(annotation.__module__)
    for name in names:
        obj = fn.__globals__.get(name, _MISSING)
        if obj is _MISSING:
            continue  # a builtin
        if inspect.ismodule(obj):
            found.add(obj.__name__)
            continue
        defined = getattr(obj, "__module__", None) if (inspect.isfunction(obj) or inspect.isclass(obj)) else None
        if inspect.isfunction(obj) and defined and _reads_helpers_of(defined, task_module):
            helper_modules.add(defined)
            found |= _function_uses(obj, task_module, seen, helper_modules)
        elif isinstance(defined, str):
            found.add(defined)
        elif name in _import_map(fn.__module__):
            found.add(_import_map(fn.__module__)[name])
    return found


def _expand(name: str) -> list[str]:
    """A module, or a package with every module below it."""
    path = module_file(name)
    if path is None or path.name != "__init__.py":
        return [name]
    return [".".join([name, *f.relative_to(path.parent).with_suffix("").parts]).removesuffix(".__init__")
            for f in sorted(path.parent.rglob("*.py"))]


def task_code_modules(fn: Callable, code: Iterable[str] = ()) -> frozenset[str]:
    """The modules whose source defines what the task function ``fn`` computes (see the module
    docstring), plus ``code``: extra modules (a package: every module below it) and what they use."""
    task_module = fn.__module__
    helper_modules: set[str] = set()
    used = _function_uses(fn, task_module, set(), helper_modules)
    extra = [m for name in code for m in _expand(name)]
    return frozenset({task_module, *helper_modules, *closure([*used, *extra])})


def code_version(modules: Iterable[str]) -> str:
    """Package version plus a hash of the source files of ``modules`` (a package: its ``__init__.py``)."""
    h = hashlib.sha256()
    for name in sorted(set(modules)):
        path = module_file(name)
        if path is None:
            raise ValueError(f"no source file for module {name!r}")
        h.update(name.encode())
        h.update(b"\0")
        h.update(path.read_bytes())
    return f"{skycurate.__version__}+{h.hexdigest()[:12]}"


@cache
def module_code_version(module: str) -> str:
    """``code_version`` of ``module`` and every module in its ``closure``: part of the key of a
    resume journal (SWE validation outcomes, CoT shards), so that what older code journalled is
    not reused after an upgrade, as a dataset task's cache is not."""
    return code_version(closure([module]))
