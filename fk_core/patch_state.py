"""Model patches that keep state between model calls, found in the model options.

Some of ComfyUI's model patches remember something from one model call to the next: APG keeps a running
average of the guidance, one row per particle, across steps; SAG records attention in the UNet call and uses
it in its post-CFG function. Two things of this pack's break such state:

* chunking (fk_core/chunking.py) calls the model on a few particles at a time, so a patch's state would hold
  one chunk's rows while the next chunk runs (wrong rows, or a shape error on a ragged last chunk);
* resampling copies particles, so a per-particle state must be reordered with them, or a copied particle
  continues with another lineage's state.

The state is found where Python keeps it: a plain function's closure variables that the function assigns
(``nonlocal``), or a callable object's attributes. A per-particle state is a tensor with one row per particle.
Nothing here imports ComfyUI: it reads the ``model_options`` dict ComfyUI's sampler passes to the model (its
keys below), so any host that keeps its guidance functions the same way can use it.
"""

from __future__ import annotations

import dis
import functools
import types
from typing import Iterator

import torch

# model_options keys holding the guidance functions ComfyUI's sampling_function/cfg_function call
SAMPLER_HOOK_KEYS = ("sampler_pre_cfg_function", "sampler_cfg_function", "sampler_post_cfg_function")
# transformer_options groups where model patches put their per-block functions
PATCH_GROUPS = ("patches", "patches_replace")
_SCALARS = (int, float, complex, bool, str, bytes, type(None), torch.dtype, torch.device)
_CODE_LIKE = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType, type,
              functools.partial)


def _callables(entry) -> Iterator:
    if isinstance(entry, dict):
        for value in entry.values():
            yield from _callables(value)
    elif isinstance(entry, (list, tuple)):
        for value in entry:
            yield from _callables(value)
    elif callable(entry):
        yield entry


def patch_functions(model_options: dict) -> list[tuple[str, object, bool]]:
    """(label, callable, is_guidance_hook) for every guidance hook and transformer patch in ``model_options``."""
    found = []
    for key in SAMPLER_HOOK_KEYS:
        for fn in _callables(model_options.get(key)):
            found.append((f"{key} {_name(fn)}", fn, True))
    transformer_options = model_options.get("transformer_options") or {}
    for group in PATCH_GROUPS:
        for fn in _callables(transformer_options.get(group) or {}):
            found.append((f"transformer_options {group} {_name(fn)}", fn, False))
    return found


def _name(fn) -> str:
    fn = _unwrap(fn)
    module = getattr(fn, "__module__", None) or type(fn).__module__
    return f"{module}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def _unwrap(fn):
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def assigned_closure_variables(fn: types.FunctionType) -> set[str]:
    """Closure variables the function assigns (``nonlocal x; x = ...``): state kept between its calls."""
    free = set(fn.__code__.co_freevars)
    return {ins.argval for ins in dis.get_instructions(fn) if ins.opname in ("STORE_DEREF", "DELETE_DEREF")
            and ins.argval in free}


def keeps_state(fn, guidance_hook: bool) -> bool:
    """Whether a patch function may remember something between model calls.

    A plain function does when it assigns a closure variable. A callable object's attributes cannot be told
    apart from settings, so a guidance hook that is an object counts as stateful (chunking then runs it on
    the whole batch, which is always right); a transformer patch object does not (many patch nodes install
    such objects, and refusing them all would refuse chunking to most workflows).
    """
    fn = _unwrap(fn)
    if isinstance(fn, types.MethodType):
        fn = fn.__func__
    if isinstance(fn, types.FunctionType):
        return bool(assigned_closure_variables(fn))
    if isinstance(fn, types.BuiltinFunctionType):
        return False
    return guidance_hook


def stateful_patches(model_options: dict) -> list[str]:
    """Labels of the patches in ``model_options`` that keep state between model calls."""
    return [label for label, fn, hook in patch_functions(model_options or {}) if keeps_state(fn, hook)]


def _state_slots(fn) -> Iterator[tuple[str, object, callable]]:
    """(name, value, setter) of the places a patch keeps its state: assigned closure cells of a function,
    attributes of a callable object or of a bound method's object."""
    fn = _unwrap(fn)
    if isinstance(fn, types.MethodType):
        owner, fn = fn.__self__, fn.__func__
        yield from _attribute_slots(owner)
    if isinstance(fn, types.FunctionType):
        if fn.__closure__:
            assigned = assigned_closure_variables(fn)
            for name, cell in zip(fn.__code__.co_freevars, fn.__closure__):
                if name not in assigned:
                    continue
                try:
                    value = cell.cell_contents
                except ValueError:  # an empty cell: nothing stored yet
                    continue
                yield name, value, functools.partial(setattr, cell, "cell_contents")
    elif not isinstance(fn, types.BuiltinFunctionType):
        yield from _attribute_slots(fn)


def _attribute_slots(owner) -> Iterator[tuple[str, object, callable]]:
    for name, value in list(getattr(owner, "__dict__", {}).items()):
        yield name, value, functools.partial(setattr, owner, name)


class ParticleStateKeeper:
    """Reorders the per-particle state of the run's model patches when the particles are resampled.

    After each resampling, every tensor with one row per particle found in a patch's state is indexed by the
    ancestors, as the particles themselves are. State that is not a tensor or scalar (a list, a dict, an
    object) cannot be reordered safely: the keeper says so in :meth:`notes`.
    """

    def __init__(self, model_options: dict, num_particles: int):
        self.n = num_particles
        self.patches = [(label, fn) for label, fn, hook in patch_functions(model_options or {})
                        if keeps_state(fn, hook)]
        self.reordered: set[str] = set()
        self.unreachable: set[str] = set()

    def resampled(self, ancestors: torch.Tensor) -> None:
        for label, fn in self.patches:
            for name, value, store in _state_slots(fn):
                if torch.is_tensor(value):
                    if value.ndim > 0 and value.shape[0] == self.n:
                        store(value[ancestors.to(value.device)])
                        self.reordered.add(f"{label} ({name})")
                elif not isinstance(value, _SCALARS + _CODE_LIKE):
                    self.unreachable.add(f"{label} ({name})")

    def on_potential_step(self, event, _images) -> None:
        """As a run's observer (fk_core.run_segments): reorder after each resampling."""
        if event.resampled:
            self.resampled(event.ancestors)

    def on_finish(self, result) -> None:
        """As a run's observer: what was (not) reordered goes into the trace's notes, before the live view's turn."""
        result.trace.notes.extend(self.notes())

    def notes(self) -> list[str]:
        out = []
        if self.reordered:
            out.append("resampling reordered the per-particle state of the model patch(es) "
                       f"{', '.join(sorted(self.reordered))} together with the particles")
        if self.unreachable:
            out.append(f"resampling could not reorder the state of the model patch(es) "
                       f"{', '.join(sorted(self.unreachable))} (not a tensor with one row per particle): a copied "
                       "particle may continue with another particle's state there")
        return out
