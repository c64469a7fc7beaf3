"""The image's HEALTHCHECK: healthy when ``earmark serve`` answers 200 on /readyz (model loaded and warm).

/readyz needs no API key. Prints what /readyz said, so ``docker inspect`` / ``podman healthcheck run``
show why a container is not healthy yet.
"""

import os
import sys
import urllib.error
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('EARMARK_PORT') or '7860'}/readyz"
try:
    with urllib.request.urlopen(url, timeout=8) as response:
        print(response.read().decode(errors="replace")[:500])
except urllib.error.HTTPError as ex:
    print(f"{url}: {ex.code} {ex.read().decode(errors='replace')[:500]}")
    sys.exit(1)
except OSError as ex:
    print(f"{url}: {ex}")
    sys.exit(1)
