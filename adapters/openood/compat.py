"""Import OpenOOD's postprocessors without the dependencies that are hard to install.

``import openood.postprocessors`` imports every postprocessor module, so two optional
dependencies decide whether *any* of them can be used:

* ``imgaug`` (via ``openood.preprocessors``, which ODIN needs for its ``normalization_dict``;
  only DRAEM's preprocessor uses it): imgaug 0.4.0, the last release, fails to import on
  numpy >= 2 (``np.sctypes`` was removed).
* ``libmr`` (OpenMax's Weibull fits): an sdist whose build imports numpy and Cython without
  declaring them, so it only installs with ``pip install --no-build-isolation libmr`` and
  cannot be part of a pip extra.

When one of them is missing or broken, :func:`ensure_importable` registers a placeholder module
whose attributes raise a clear ImportError. Nothing this adapter runs touches imgaug; OpenMax
checks :func:`libmr_available` and raises a DetectorError with the install command. Working
modules are never replaced.
"""

from __future__ import annotations

import importlib
import sys
import types

NOTES = {
    "imgaug": "imgaug is missing or cannot import on this numpy (imgaug 0.4.0 needs numpy < 2); "
    "OpenOOD's DRAEM preprocessor is unavailable",
    "libmr": "libmr is not installed (pip install Cython && pip install --no-build-isolation "
    "libmr); OpenOOD's OpenMax is unavailable",
}
SUBMODULES = {"imgaug": ("augmenters",), "libmr": ()}


class _Unavailable(types.ModuleType):
    __ood_bench_stub__ = True

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError(f"placeholder installed by ood-bench's OpenOOD adapter: "
                          f"{NOTES[self.__name__.split('.')[0]]} (accessed {self.__name__}.{name})")


def _works(name: str) -> bool:
    try:
        importlib.import_module(name)
        for sub in SUBMODULES[name]:
            importlib.import_module(f"{name}.{sub}")
    except Exception:  # ImportError when missing; AttributeError (np.sctypes) on numpy 2
        for key in [k for k in sys.modules if k == name or k.startswith(f"{name}.")]:
            del sys.modules[key]
        return False
    return True


def stubbed(name: str) -> bool:
    return bool(getattr(sys.modules.get(name), "__ood_bench_stub__", False))


def libmr_available() -> bool:
    ensure_importable()
    return not stubbed("libmr")


def ensure_importable() -> None:
    """Make ``import openood.postprocessors`` possible (idempotent)."""
    for name, subs in SUBMODULES.items():
        if name in sys.modules or _works(name):
            continue
        package = _Unavailable(name, NOTES[name])
        package.__path__ = []  # a package, so that ``import name.sub`` resolves
        sys.modules[name] = package
        for sub in subs:
            module = _Unavailable(f"{name}.{sub}", NOTES[name])
            package.__dict__[sub] = module
            sys.modules[f"{name}.{sub}"] = module
