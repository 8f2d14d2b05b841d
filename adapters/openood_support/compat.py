"""Import OpenOOD's postprocessors without the one dependency that cannot work on numpy 2.

``import openood.postprocessors`` pulls in ``openood.preprocessors`` (ODIN reads its
``normalization_dict``), whose DRAEM preprocessor does ``import imgaug.augmenters``. imgaug 0.4.0
(the last release) fails to import on numpy >= 2 (``np.sctypes`` was removed), and nothing else
of OpenOOD that this adapter uses needs it. When imgaug is missing or broken,
:func:`ensure_importable` registers a placeholder ``imgaug`` package whose attributes raise a
clear ImportError, so only DRAEM's preprocessor (an anomaly-detection training pipeline the
adapter does not support) becomes unusable. With a working imgaug (numpy < 2) nothing is touched.
"""

from __future__ import annotations

import sys
import types

STUB_NOTE = ("imgaug placeholder installed by ood-bench's OpenOOD adapter: imgaug is missing or "
             "cannot import on this numpy; OpenOOD's DRAEM preprocessor is unavailable")


class _Unavailable(types.ModuleType):
    __ood_bench_stub__ = True

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError(f"{STUB_NOTE} (accessed {self.__name__}.{name})")


def _imgaug_works() -> bool:
    try:
        import imgaug.augmenters  # noqa: F401
    except Exception:  # ImportError when missing; AttributeError (np.sctypes) on numpy 2
        for key in [k for k in sys.modules if k == "imgaug" or k.startswith("imgaug.")]:
            del sys.modules[key]
        return False
    return True


def imgaug_stubbed() -> bool:
    return bool(getattr(sys.modules.get("imgaug"), "__ood_bench_stub__", False))


def ensure_importable() -> None:
    """Make ``import openood.postprocessors`` possible (idempotent)."""
    if "imgaug" in sys.modules or _imgaug_works():
        return
    package = _Unavailable("imgaug", STUB_NOTE)
    package.__path__ = []  # a package, so that ``import imgaug.augmenters`` resolves
    augmenters = _Unavailable("imgaug.augmenters", STUB_NOTE)
    package.__dict__["augmenters"] = augmenters
    sys.modules["imgaug"] = package
    sys.modules["imgaug.augmenters"] = augmenters
