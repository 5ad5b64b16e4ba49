"""The process's OpenGL context: headless EGL, created on first use, never at import.

Worker processes may be forked: the cache is keyed by the process id, so a child makes
its own context on first use. That works only when the parent never made one: EGL
drivers (Mesa's llvmpipe threads, NVIDIA's) do not survive a fork and the child would
hang, so such a child gets a ContextError instead. Start render workers with "spawn" or
"forkserver" (joblib's loky does) from a process that has rendered.
"""
from __future__ import annotations

import os

import moderngl

from renderer.errors import UserError

REQUIRED_GL = 430  # shader storage buffers hold the bone matrices


class ContextError(UserError, RuntimeError):
    """No usable headless OpenGL: the message says what to install."""


_contexts: dict[tuple[int, int | None], moderngl.Context] = {}


def get_context(gpu: int | None = None) -> moderngl.Context:
    """This process's context on EGL device ``gpu`` (None = the default device)."""
    key = (os.getpid(), gpu)
    context = _contexts.get(key)
    if context is None:
        if any(pid != key[0] for pid, _ in _contexts):
            raise ContextError("this process was forked from one that had an OpenGL context, which EGL "
                               "cannot share; start render workers with 'spawn' or 'forkserver'")
        context = _create(gpu)
        _contexts[key] = context
    return context


def _create(gpu: int | None) -> moderngl.Context:
    options = {} if gpu is None else {"device_index": gpu}
    where = "the default EGL device" if gpu is None else f"EGL device {gpu}"
    try:
        return moderngl.create_standalone_context(backend="egl", require=REQUIRED_GL, **options)
    except Exception as error:  # moderngl/glcontext raise bare Exception subclasses
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ContextError(
            f"cannot create an OpenGL {REQUIRED_GL // 100}.{REQUIRED_GL % 100 // 10} context on {where} "
            f"({reason}); install libegl1 and libgl1-mesa-dri (or the NVIDIA driver)") from None
