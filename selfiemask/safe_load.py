"""Loading an exported learner without letting the file run code.

``fastai.learner.load_learner`` unpickles with ``torch.load(weights_only=False)``:
a crafted ``export.pkl`` can call any function while it loads. PyTorch's
weights-only unpickler (``torch.load(weights_only=True)`` with
``torch.serialization.safe_globals``) is the right idea but cannot read a
fastai export: fastai exports with cloudpickle, which stores a few library
functions by value (their bytecode) and ends each with a ``POP`` opcode that
the weights-only unpickler does not implement.

So this module applies the weights-only rules with Python's own unpickler,
handed to ``torch.load`` as its ``pickle_module`` (torch still reads the zip and
the tensors):

* a global is found only if it is on :data:`ALLOWED_GLOBALS` (or
  :data:`VALUE_ONLY`), on PyTorch's own weights-only allowlist, added with
  ``torch.serialization.add_safe_globals``, or a public class or function defined
  in the ``selfiemask`` package itself (those may be stored and package classes
  instantiated, but never called while loading); anything else stops the load
  with a :class:`UnsafeModelError` that names it, before it is imported;
* only allowlisted callables are called (``REDUCE``), only allowlisted classes
  are instantiated (``NEWOBJ``) and given state (``BUILD``); :data:`VALUE_ONLY`
  objects (``print``, ``functools.reduce``...) may be stored but never called;
* ``getattr`` is answered only for the pairs in :data:`ALLOWED_ATTRIBUTES`;
* a function cloudpickle stored by value is replaced by the installed function
  of the same name when that name is in :data:`BY_VALUE_FUNCTIONS`; its
  bytecode and globals from the file are never used.

Adding to the lists: run ``python -m selfiemask.safe_load export.pkl`` on a
genuine export; it prints the globals the file needs and which of them are not
allowed yet (a static read of the pickle: nothing in it is executed).
"""

from __future__ import annotations

import _compat_pickle
import importlib
import inspect
import io
import pickle
import pickletools
import sys
import types
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ALLOWED_ATTRIBUTES", "ALLOWED_GLOBALS", "BY_VALUE_FUNCTIONS", "TRUSTED_PACKAGE", "VALUE_ONLY",
           "RestrictedUnpickler", "UnsafeModelError", "globals_in", "load_learner_safely", "main", "not_allowed"]


class UnsafeModelError(RuntimeError):
    """The model file needs something the allowlist refuses; the message names it and is meant for users."""


#: Classes and functions a learner exported by this project contains; each may be called or
#: instantiated while loading. Built from the globals of genuine exports (the shipped export.pkl,
#: a tiny one made by selfiemask.training: tests/test_safe_load.py). Keep it one list, sorted.
ALLOWED_GLOBALS: list[str] = [
    "PIL.Image.Image",
    "PIL.Image.Resampling",
    "_codecs.encode",
    "builtins.bytearray",
    "builtins.bytes",
    "builtins.complex",
    "builtins.dict",
    "builtins.float",
    "builtins.frozenset",
    "builtins.int",
    "builtins.list",
    "builtins.set",
    "builtins.slice",
    "builtins.str",
    "builtins.tuple",
    "collections.OrderedDict",
    "collections.defaultdict",
    "fastai.callback.core.TrainEvalCallback",
    "fastai.callback.progress.ProgressCallback",
    "fastai.data.core.DataLoaders",
    "fastai.data.core.Datasets",
    "fastai.data.core.FilteredBase",
    "fastai.data.core.TfmdDL",
    "fastai.data.core.TfmdLists",
    "fastai.data.load._FakeLoader",
    "fastai.data.load._wif",
    "fastai.data.transforms.Categorize",
    "fastai.data.transforms.CategoryMap",
    "fastai.data.transforms.IntToFloatTensor",
    "fastai.data.transforms.Normalize",
    "fastai.data.transforms.ToTensor",
    "fastai.data.transforms.parent_label",
    "fastai.imports.noop",
    "fastai.layers.AdaptiveConcatPool2d",
    "fastai.layers.Flatten",
    "fastai.learner.AvgLoss",
    "fastai.learner.AvgMetric",
    "fastai.learner.AvgSmoothLoss",
    "fastai.learner.CastToTensor",
    "fastai.learner.Learner",
    "fastai.learner.Recorder",
    "fastai.losses.CrossEntropyLossFlat",
    "fastai.metrics.accuracy",
    "fastai.optimizer.Adam",
    "fastai.torch_core.TensorBase",
    "fastai.torch_core.TensorCategory",
    "fastai.torch_core.TensorImage",
    "fastai.torch_core.TensorMask",
    "fastai.vision.augment.Brightness",
    "fastai.vision.augment.Contrast",
    "fastai.vision.augment.Flip",
    "fastai.vision.augment.RandomResizedCrop",
    "fastai.vision.augment.Resize",
    "fastai.vision.augment.Rotate",
    "fastai.vision.augment.Saturation",
    "fastai.vision.augment.Warp",
    "fastai.vision.augment.Zoom",
    "fastai.vision.augment._BrightnessLogit",
    "fastai.vision.augment._ContrastLogit",
    "fastai.vision.augment._WarpCoord",
    "fastai.vision.augment.flip_mat",
    "fastai.vision.augment.rotate_mat",
    "fastai.vision.augment.zoom_mat",
    "fastai.vision.core.PILImage",
    "fastai.vision.core.load_image",
    "fastai.vision.learner._resnet_split",
    "fastcore.basics.fastuple",
    "fastcore.basics.merge",
    "fastcore.foundation.L",
    "fasttransform.transform.Pipeline",
    "fasttransform.transform.Transform",
    "functools.partial",
    "inspect.Parameter",
    "inspect.Signature",
    "inspect._ParameterKind",
    "numpy.core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar",
    "numpy.dtype",
    "numpy.ndarray",
    "pathlib.Path",
    "pathlib.PosixPath",
    "pathlib.WindowsPath",
    "plum._function.Function",
    "plum._method.Method",
    "plum._method.MethodList",
    "plum._resolver.Resolver",
    "plum._signature.Signature",
    "plum._util.Missing",
    "random.Random",
    "torch.device",
    "torch.nn.modules.activation.ReLU",
    "torch.nn.modules.activation.ReLU6",
    "torch.nn.modules.batchnorm.BatchNorm1d",
    "torch.nn.modules.batchnorm.BatchNorm2d",
    "torch.nn.modules.container.Sequential",
    "torch.nn.modules.conv.Conv2d",
    "torch.nn.modules.dropout.Dropout",
    "torch.nn.modules.linear.Linear",
    "torch.nn.modules.loss.CrossEntropyLoss",
    "torch.nn.modules.pooling.AdaptiveAvgPool2d",
    "torch.nn.modules.pooling.AdaptiveMaxPool2d",
    "torch.nn.modules.pooling.MaxPool2d",
    "torchvision.models.mobilenetv2.InvertedResidual",
    "torchvision.models.mobilenetv2.MobileNetV2",
    "torchvision.models.resnet.BasicBlock",
    "torchvision.models.resnet.Bottleneck",
    "torchvision.models.resnet.ResNet",
    "torchvision.models.resnet.resnet18",
    "torchvision.models.resnet.resnet34",
    "torchvision.models.resnet.resnet50",
    "torchvision.ops.misc.Conv2dNormActivation",
]

#: Objects an export holds as plain values (a learner's ``logger=print``, the globals of a
#: function stored by value): found, never called while loading.
VALUE_ONLY: list[str] = [
    "builtins.print",
    "_operator.or_",
    "inspect._empty",
    "operator.or_",
    "typing.Any",
]

#: ``getattr(owner, name)`` an export may contain (methods fastai patches onto its classes); also the
#: only methods that may be bound to an object (``types.MethodType``).
ALLOWED_ATTRIBUTES: list[str] = [
    "fastai.data.core.FilteredBase.dataloaders",
    "fastai.torch_core.TensorImage.lighting",
]

#: Library functions cloudpickle stores by value (fastai's ``PILImage.create`` is a classmethod,
#: which cloudpickle cannot find by reference): the installed function of that name is used instead.
BY_VALUE_FUNCTIONS: list[str] = [
    "fastai.vision.core.PILBase.create",
]

#: Modules whose top-level classes and functions are allowed without a list entry (new package
#: transforms such as an augmentation a learner pickles need no edit here).
TRUSTED_PACKAGE = "selfiemask"


# -- resolving names -----------------------------------------------------------------------------
def _resolve(path: str) -> Any:
    """The object called ``module.qual.name``: the longest importable module prefix, then attributes.

    The last step on a class reads its ``__dict__`` so a classmethod gives its function.
    """
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            if isinstance(obj, type) and name in obj.__dict__:
                obj = obj.__dict__[name]
                obj = getattr(obj, "__func__", obj)  # classmethod / staticmethod
            else:
                obj = getattr(obj, name)
        return obj
    raise ImportError(path)


def _package_object(module: str, name: str) -> Any | None:
    """A class or function defined at the top level of a module of this package, else None."""
    if not (module == TRUSTED_PACKAGE or module.startswith(TRUSTED_PACKAGE + ".")) or "." in name:
        return None
    if any(part.startswith("_") for part in (*module.split("."), name)):
        return None  # never import selfiemask.__main__ (it runs the CLI) or private helpers
    try:
        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None
    if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(obj, "__module__", None) == module:
        return obj
    return None


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """Protocol-2 pickles name builtins the Python 2 way (``__builtin__.set``): map them as pickle does."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def _torch_allowed() -> dict[str, Any]:
    """PyTorch's weights-only allowlist (tensor rebuilders, dtypes...) plus ``add_safe_globals`` additions."""
    from torch import _weights_only_unpickler as wo

    allowed = dict(wo._get_allowed_globals())
    allowed.update(wo._get_user_allowed_globals())
    return allowed


# -- the stand-ins for cloudpickle's helpers -----------------------------------------------------
class _CodeStub:
    """What the file's bytecode becomes: its arguments, kept only for the function's qualified name."""

    def __init__(self, *args: Any) -> None:
        self.qualname = args[12] if len(args) > 12 and isinstance(args[12], str) else ""


class _ModuleRef:
    """A module named in a stored function's globals: a name, never imported."""

    def __init__(self, name: str) -> None:
        self.name = name


def _qualified(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"


def _bound_method(func: Any, owner: Any) -> Any:
    """``types.MethodType(func, owner)``, as cloudpickle stores bound methods (``PILImage.create``).

    ``func`` must be a function from :data:`BY_VALUE_FUNCTIONS` or :data:`ALLOWED_ATTRIBUTES`, and
    ``owner`` an allowed class or an instance of one.
    """
    cls = owner if isinstance(owner, type) else type(owner)
    methods = {id(_resolve(f)) for f in (*BY_VALUE_FUNCTIONS, *ALLOWED_ATTRIBUTES)}
    if not any(_qualified(c) in ALLOWED_GLOBALS for c in cls.__mro__) or id(func) not in methods:
        raise UnsafeModelError(f"the model file binds {_describe(func)} to {_qualified(cls)}, which is not allowed")
    return types.MethodType(func, owner)


def _builtin_type(name: str) -> Any:
    if name == "CodeType":
        return _CodeStub
    if name == "MethodType":
        return _bound_method
    raise UnsafeModelError(f"the model file asks for the built-in type {name!r}, which is not allowed")


def _make_function(code: Any, globals_: Any, name: Any = None, argdefs: Any = None, closure: Any = None) -> Any:
    module = globals_.get("__name__", "") if isinstance(globals_, dict) else ""
    qualname = getattr(code, "qualname", "")
    full = f"{module}.{qualname}"
    if full not in BY_VALUE_FUNCTIONS:
        raise UnsafeModelError(f"the model file contains the code of a function ({full or 'unnamed'}) that is not "
                               "a known library function; loading it could run that code")
    return _resolve(full)


def _function_setstate(obj: Any, state: Any) -> None:
    """The stored function's attributes and globals are ignored: the installed function is used as it is."""


def _subimport(name: str) -> _ModuleRef:
    return _ModuleRef(name)


def _safe_getattr(owner: Any, name: str, *default: Any) -> Any:
    qual = f"{getattr(owner, '__module__', '')}.{getattr(owner, '__qualname__', '')}.{name}"
    if not isinstance(owner, type) or qual not in ALLOWED_ATTRIBUTES:
        raise UnsafeModelError(f"the model file asks for the attribute {qual}, which is not allowed")
    return getattr(owner, name)


def _type_union(func: Any, items: Any) -> Any:
    """``functools.reduce(operator.or_, types)``: how a ``X | Y`` annotation pickles; nothing else is reduced."""
    import functools
    import operator

    if func is not operator.or_ or not isinstance(items, tuple) or \
            not all(isinstance(t, (type, types.UnionType)) or t is None for t in items):
        raise UnsafeModelError("the model file calls functools.reduce other than to build a type union")
    return functools.reduce(operator.or_, items)


_STAND_INS: dict[str, Callable[..., Any]] = {
    "functools.reduce": _type_union,
    "cloudpickle.cloudpickle._builtin_type": _builtin_type,
    "cloudpickle.cloudpickle._make_function": _make_function,
    "cloudpickle.cloudpickle._function_setstate": _function_setstate,
    "cloudpickle.cloudpickle.subimport": _subimport,
    "builtins.getattr": _safe_getattr,
}


# -- the unpickler ---------------------------------------------------------------------------------
def _refused(full: str) -> UnsafeModelError:
    return UnsafeModelError(
        f"it needs {full}, which is not on the list of classes and functions a learner of this project may "
        "contain (selfiemask/safe_load.py); loading it could run code from the file. If you trained this model "
        "with new code you trust, add that name to ALLOWED_GLOBALS")


class RestrictedUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its opcodes can be overridden
    """Python's unpickler with PyTorch's weights-only rules: see the module docstring."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._torch_allowed = _torch_allowed()
        self._callables: set[int] = {id(f) for f in (*_STAND_INS.values(), _bound_method, _CodeStub)}
        self._callables.update(id(v) for v in self._torch_allowed.values())
        self._classes: set[type] = {v for v in self._torch_allowed.values() if isinstance(v, type)}
        self._keep: list[Any] = []  # keeps allowed objects alive so their ids stay theirs

    def _allow(self, obj: Any, callable_: bool) -> Any:
        self._keep.append(obj)
        if callable_:
            self._callables.add(id(obj))
            if isinstance(obj, type):
                self._classes.add(obj)
        return obj

    def find_class(self, module: str, name: str) -> Any:
        module, name = _python3_name(module, name)
        full = f"{module}.{name}"
        if full in _STAND_INS:
            return _STAND_INS[full]
        if full in self._torch_allowed:
            return self._allow(self._torch_allowed[full], True)
        if full in ALLOWED_GLOBALS or full in VALUE_ONLY:
            try:
                obj = _resolve(full)
            except (ImportError, AttributeError):
                raise UnsafeModelError(f"it needs {full}, which is allowed but not installed here") from None
            return self._allow(obj, full in ALLOWED_GLOBALS)
        if (obj := _package_object(module, name)) is not None:
            # A package class may be instantiated (NEWOBJ) and given state (BUILD), and a package function
            # stored (a splitter, a transform); neither is *called* while loading: selfiemask has
            # functions that write and move files (files.write_atomic, curate.rejects.set_aside).
            self._keep.append(obj)
            if isinstance(obj, type):
                self._classes.add(obj)
            return obj
        raise _refused(full)

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if id(func) not in self._callables:
            raise UnsafeModelError(f"the model file calls {_describe(func)}, which is not allowed")
        self.stack[-1] = func(*args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        if cls not in self._classes:
            raise UnsafeModelError(f"the model file creates a {_describe(cls)}, which is not allowed")
        self.append(cls.__new__(cls, *args))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        if cls not in self._classes:
            raise UnsafeModelError(f"the model file creates a {_describe(cls)}, which is not allowed")
        self.append(cls.__new__(cls, *args, **kwargs))

    def load_build(self) -> None:
        inst = self.stack[-2]  # BUILD: the state is on top, the object below it
        if isinstance(inst, (type, types.ModuleType, types.FunctionType)) or \
                not isinstance(inst, (OrderedDict, *self._classes)):
            raise UnsafeModelError(f"the model file sets the state of {_describe(inst)}, which is not allowed")
        super().load_build()

    def _refuse_old(self) -> None:
        raise UnsafeModelError("the model file uses old pickle instructions (INST/OBJ) a learner never contains")

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.INST[0]] = _refuse_old
    dispatch[pickle.OBJ[0]] = _refuse_old


def _describe(obj: Any) -> str:
    if isinstance(obj, type) or callable(obj):
        return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"
    return f"object of type {type(obj).__module__}.{type(obj).__qualname__}"


class _PickleModule(types.ModuleType):
    """What ``torch.load(pickle_module=...)`` needs: an ``Unpickler`` class (and ``load``, never used for zips)."""

    Unpickler = RestrictedUnpickler
    __version__ = "restricted"

    @staticmethod
    def load(file: Any, **kwargs: Any) -> Any:
        return RestrictedUnpickler(file, **kwargs).load()


restricted_pickle = _PickleModule("selfiemask_restricted_pickle")


# -- loading ---------------------------------------------------------------------------------------
def load_learner_safely(path: str | Path) -> Any:
    """A fastai learner from ``path`` through the restricted unpickler, on the CPU, in float32.

    Raises :class:`UnsafeModelError` (naming what was refused) for anything off the allowlist.
    """
    import torch

    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise UnsafeModelError("it is not a PyTorch export (a zip archive); old-style pickles are not loaded")
    try:
        learn = torch.load(path, map_location="cpu", pickle_module=restricted_pickle, weights_only=False)
    except UnsafeModelError:
        raise
    except pickle.UnpicklingError as e:
        raise UnsafeModelError(f"it could not be unpickled safely ({e})") from None
    if not hasattr(learn, "dls") or not hasattr(learn, "model"):
        raise UnsafeModelError(f"it holds a {type(learn).__name__}, not a fastai learner")
    # What fastai's load_learner(cpu=True) does after unpickling.
    learn.dls.cpu()
    if hasattr(learn, "channels_last"):
        learn = learn.to_contiguous(to_fp32=True)
    elif hasattr(learn, "mixed_precision"):
        learn = learn.to_fp32()
    elif hasattr(learn, "non_native_mixed_precision"):
        learn = learn.to_non_native_fp32()
    return learn


def globals_in(path: str | Path) -> list[str]:
    """Every global the pickle inside ``path`` names, read statically (nothing is executed)."""
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
        data = z.read(name)
    found: set[str] = set()
    strings: list[str] = []
    for op, arg, _pos in pickletools.genops(io.BytesIO(data)):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        if op.name == "GLOBAL":
            module, name = _python3_name(*arg.split(" ", 1))
            found.add(f"{module}.{name}")
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.add(f"{strings[-2]}.{strings[-1]}")
    return sorted(found)


def not_allowed(path: str | Path) -> list[str]:
    """The globals of ``path`` that the allowlist would refuse (storages and torch's own list are fine)."""
    torch_ok = _torch_allowed()
    out = []
    for full in globals_in(path):
        module, _, name = full.rpartition(".")
        if full in _STAND_INS or full in torch_ok or full in ALLOWED_GLOBALS or full in VALUE_ONLY \
                or "Storage" in name or _package_object(module, name) is not None:
            continue
        out.append(full)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m selfiemask.safe_load MODEL``: the globals a model needs and those not allowed yet."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m selfiemask.safe_load export.pkl", file=sys.stderr)
        return 2
    for p in args:
        refused = not_allowed(p)
        print(f"{p}: {len(globals_in(p))} globals, {len(refused)} not allowed" + "".join(f"\n  {r}" for r in refused))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
