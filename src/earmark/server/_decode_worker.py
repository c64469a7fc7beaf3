"""A decode worker process: reads requests on stdin, answers on stdout, until EOF.

Started by :class:`earmark.server.decoding.LocalDecoderPool`; never run by hand.
Each request is ``(bytes | path, sample_rate, name, AudioLimits)``; each answer
is ``("ok", samples, warnings)`` or ``("audio_error", source, reason)``.
"""

from __future__ import annotations

import os
import sys
import warnings


def _limit_memory() -> None:
    cap = int(os.environ.get("EARMARK_WORKER_MEMORY_BYTES", "0"))
    if cap > 0:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


def _answer(request: tuple[object, int, str, object]) -> tuple[object, ...]:
    from earmark.audio import decode
    from earmark.errors import AudioError

    source, rate, name, limits = request
    if isinstance(source, str) and "://" in source:
        return ("audio_error", name, "URLs are never fetched; send the file itself")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            samples = decode(source, sample_rate=rate, limits=limits, name=name)  # type: ignore[arg-type]
        return ("ok", samples, [str(w.message) for w in caught])
    except AudioError as ex:
        return ("audio_error", ex.source, ex.reason)
    except MemoryError:
        return ("audio_error", name, "needs more memory than one decode may use")
    except Exception as ex:  # noqa: BLE001 - whatever a hostile file triggers, the answer is "not decodable"
        return ("audio_error", name, f"not decodable ({type(ex).__name__})")


def main() -> None:
    from earmark.server.decoding import read_message, write_message

    inp, out = sys.stdin.fileno(), sys.stdout.fileno()
    sys.stdout = sys.stderr  # stray prints must not corrupt the answer pipe
    _limit_memory()
    while True:
        try:
            request = read_message(inp)
        except EOFError:
            return
        write_message(out, _answer(request))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
