"""Gevent's monkey patching, for ``reelyard worker --pool gevent``.

The gevent pool needs the standard library patched (``socket``, ``ssl``, ``select``,
``threading``, ``time``…) before anything else imports it: a module that took
``socket.socket`` or ``threading.Lock`` before the patch keeps the blocking ones, and
psycopg chooses its wait function once, when ``psycopg.waiting`` is first imported
(its C ``wait_c`` blocks the whole process; with ``select`` patched, psycopg 3.1.14
and later choose one gevent can switch in). Celery's own ``celery`` command patches
in its ``__main__`` (``celery.maybe_patch_concurrency``); ``reelyard`` is its own
entry point, so ``reelyard/cli.py`` calls :func:`patch_if_asked` before its other
imports, and ``reelyard worker`` refuses the gevent pool in a process that was not
patched (:func:`patched`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

GEVENT = "gevent"


def asks_for_gevent(argv: Sequence[str]) -> bool:
    """Whether ``argv`` is ``reelyard worker … --pool gevent``."""
    args = list(argv[1:])
    command = next((arg for arg in args if not arg.startswith("-")), None)
    if command != "worker":
        return False
    for i, arg in enumerate(args):
        if arg == f"--pool={GEVENT}" or (arg == "--pool" and args[i + 1 : i + 2] == [GEVENT]):
            return True
    return False


def patch_if_asked(argv: Sequence[str]) -> bool:
    """Patch the standard library for gevent when ``argv`` asks for its pool."""
    if not asks_for_gevent(argv):
        return False
    from gevent import monkey  # noqa: PLC0415 (only a gevent worker loads gevent)

    monkey.patch_all()
    return True


def patched() -> bool:
    """Whether gevent has patched this process (its ``socket`` and ``select``)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and all(
        monkey.is_module_patched(name) for name in ("socket", "select", "threading")
    )
