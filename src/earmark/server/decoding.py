"""Upload decoding for the server: :class:`earmark.audio.isolate.DecoderPool`.

Uploads are untrusted: a file that makes FFmpeg hang, crash or eat memory costs
one worker process, which is killed and replaced; the server answers 504 or 422.
"""

from __future__ import annotations

import os
from typing import Union

from ..audio.isolate import DecoderPool

__all__ = ["Data", "DecoderPool"]

Data = Union[bytes, str, "os.PathLike[str]"]
