"""torch.hub entry points: ``torch.hub.load("<owner>/pni", "lenet5_pni_w", scale="cpu")``
(or ``torch.hub.load("/path/to/pni", ..., source="local")``). Every name of
``pni.models.hub.REGISTRY`` is an entry point, ``-`` and ``+`` written ``_``; each loads the
committed checkpoint after checking its sha256 (``pni.pretrained``)."""
import os
import sys

dependencies = ["torch"]

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

from pni.models.hub import pretrained, pretrained_names  # noqa: E402


def _entry(name):
    def load(scale="cpu", device="cpu", **_):
        return pretrained(name, scale=scale, device=device,
                          root=os.path.dirname(os.path.abspath(__file__)))
    load.__name__ = name.replace("-", "_").replace("+", "_")
    load.__doc__ = f"pni.pretrained({name!r}, scale=...): the committed checkpoint, sha256-checked."
    return load


for _name in pretrained_names():
    globals()[_name.replace("-", "_").replace("+", "_")] = _entry(_name)
del _name
