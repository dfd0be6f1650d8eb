"""slt-deploy: spiking lottery tickets from training to robots and neuromorphic chips.

Python API (README "Python API"; slt_deploy/api.py): train, find_ticket, export, load_runner, verify, profile.
They load on first use, so `import slt_deploy` stays cheap (no torch) and the CLI starts fast.

Four API names are also submodule names (slt_deploy/train.py, export.py, verify.py, profile/). The attribute is
always the API function: importing the submodule does not replace it. Reach a module by its full name
(`from slt_deploy.train import evaluate`, `importlib.import_module("slt_deploy.train")`), not with
`import slt_deploy.train as m` (that binds the function)."""

__version__ = "0.1.0"

import sys as _sys
import types as _types

from .errors import SltError

API = ("train", "find_ticket", "export", "load_runner", "verify", "profile")
__all__ = ["__version__", "SltError", *API]


def __getattr__(name):
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'slt_deploy' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(API))


class _Package(_types.ModuleType):
    def __setattr__(self, name, value):
        if name in API and isinstance(value, _types.ModuleType):
            return  # the import system binding submodule slt_deploy.<name>: keep the API function visible
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package
