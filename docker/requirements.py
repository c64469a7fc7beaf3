"""Print earmark's dependencies with the given extras (``server,ui,monitor``), one a line.

The image installs these before copying the source, so a source change does not reinstall them.
"""

import re
import sys

import tomllib

project = tomllib.load(open(sys.argv[1], "rb"))["project"]
extras = project.get("optional-dependencies", {})
seen: set[str] = set()
reqs: list[str] = list(project["dependencies"])


def add(extra: str) -> None:
    if extra in seen:
        return
    seen.add(extra)
    for req in extras[extra]:
        own = re.fullmatch(r"earmark\[([^\]]+)\]", req.replace(" ", ""))
        if own:
            for inner in own.group(1).split(","):
                add(inner)
        else:
            reqs.append(req)


for name in sys.argv[2].split(","):
    if name.strip():
        add(name.strip())
print("\n".join(dict.fromkeys(reqs)))
