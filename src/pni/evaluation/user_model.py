"""Bring your own model: ``PKG.MODULE:FACTORY`` (or ``path/to/file.py:FACTORY``) built by
the user's factory, its weights loaded weights-only, and its randomness detected.

``pni eval --model`` and ``pni eval --benchmark`` use these; ``pni.evaluate`` takes the
``nn.Module`` itself. Every mistake is one line naming what was wrong (the module, the
factory, what it returned, the weights file).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import PNIError


class ModelLoadError(PNIError):
    """A model that cannot be built or loaded; the message names the module, factory or file."""


def _import(module: str) -> Any:
    if module.endswith(".py") or os.sep in module or "/" in module:
        path = Path(module)
        if not path.is_file():
            raise ModelLoadError(f"--model: file {module!r} does not exist")
        spec = importlib.util.spec_from_file_location(f"pni_user_model_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ModelLoadError(f"--model: cannot import {module!r} as a Python file")
        loaded = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(loaded)
        except Exception as error:
            raise ModelLoadError(f"--model: importing {module!r} failed: {type(error).__name__}: "
                                 f"{_first_line(error)}") from None
        return loaded
    added = os.getcwd() not in sys.path
    if added:  # the `pni` script does not put the working folder on the path; python -m does
        sys.path.append(os.getcwd())
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise ModelLoadError(f"--model: no module {module!r} ({_first_line(error)}); is its package "
                             f"installed or its folder the working folder?") from None
    except Exception as error:
        raise ModelLoadError(f"--model: importing {module!r} failed: {type(error).__name__}: "
                             f"{_first_line(error)}") from None
    finally:
        if added and os.getcwd() in sys.path:
            sys.path.remove(os.getcwd())


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def build_user_model(spec: str, weights: str | os.PathLike | None = None,
                     device: str | torch.device = "cpu") -> nn.Module:
    """The ``nn.Module`` that ``FACTORY()`` of ``PKG.MODULE:FACTORY`` returns, with the
    state dict of ``weights`` loaded (``torch.load(weights_only=True)``: a file that would run
    code is refused; a ``pni train`` checkpoint's ``"model"`` entry or a ``"state_dict"``
    entry is used when present), in eval mode on ``device``.

    Raises:
        ModelLoadError: a spec not ``MODULE:FACTORY``, a module that does not import, a missing
            or non-callable factory, a factory that fails or returns no ``nn.Module``, a
            weights file that is missing, unreadable, not a state dict, or does not fit.
    """
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ModelLoadError(f"--model must be PKG.MODULE:FACTORY (or path/to/file.py:FACTORY), got {spec!r}")
    module_name, factory_name = spec.split(":")
    module = _import(module_name)
    factory = getattr(module, factory_name, None)
    if factory is None:
        raise ModelLoadError(f"--model: module {module_name!r} has no {factory_name!r}")
    if not callable(factory):
        raise ModelLoadError(f"--model: {module_name}:{factory_name} is not callable "
                             f"({type(factory).__name__})")
    try:
        model = factory()
    except Exception as error:
        raise ModelLoadError(f"--model: {spec}() failed: {type(error).__name__}: {_first_line(error)}") from None
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"--model: {spec}() returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        load_weights(model, weights)
    return model.to(device).eval()


def load_weights(model: nn.Module, weights: str | os.PathLike) -> None:
    """Loads a state dict file into ``model``, weights only; one-line ModelLoadError."""
    import pickle

    from ..checkpoint import CheckpointError, load_state

    path = Path(weights)
    if not path.is_file():
        raise ModelLoadError(f"--weights {str(path)!r} {'is a folder' if path.is_dir() else 'does not exist'}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ModelLoadError(f"--weights {str(path)!r} is refused: it holds more than tensors and plain "
                             f"values (weights_only load: {_first_line(error)})") from None
    except Exception as error:
        raise ModelLoadError(f"--weights {str(path)!r} cannot be read: {_first_line(error)}") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict) and "model_meta" in state:
        state = state["model"]  # a `pni train` checkpoint
    elif isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    try:
        load_state(model, state, source=f"--weights {str(path)!r}")
    except CheckpointError as error:
        raise ModelLoadError(str(error)) from None


@torch.no_grad()
def detect_randomness(model: nn.Module, x: Tensor) -> bool:
    """True when two forward passes of the model (eval mode, as it is) on a few of ``x``
    differ: it draws randomness at inference. The global random state is left as it was."""
    from ..attacks._common import attack_mode, is_randomized

    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), attack_mode(model):
        return bool(len(x)) and is_randomized(model, x[:4])


def deterministic_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """The attack options for a deterministic model: one draw everywhere (EOT-PGD's ``eot``,
    AutoAttack's ``eot_iter``, Square's and EOT-ZOO's ``eot``), the rest as given."""
    out = dict(options or {})
    out["eot"] = 1
    out["aa"] = {**(out.get("aa") or {}), "eot_iter": 1}
    out["square"] = {**(out.get("square") or {}), "eot": 1}
    out["zoo"] = {**(out.get("zoo") or {}), "eot": 1}
    return out


def judging(model: nn.Module, x: Tensor, attacks: Any, threat: Any, eps: float | None, votes: int,
            options: dict[str, Any] | None) -> tuple[float | None, bool, int, dict[str, Any] | None]:
    """How ``pni.evaluate`` judges: unknown attack names first (an AttackError), then the
    radius (``pni.attacks.threat.threat_eps``: required by named attacks), then the randomness: a
    model whose two passes agree gets one vote and one EOT draw. Returns ``(eps, randomized,
    votes, options)``."""
    from ..attacks.registry import get_attack
    from ..attacks.threat import threat_eps

    for name in ([] if isinstance(attacks, dict) else attacks):
        get_attack(name)
    eps = threat_eps(threat, eps, attacks)
    randomized = detect_randomness(model, x)
    if not randomized:
        votes, options = 1, deterministic_options(options)
    return eps, randomized, votes, options
