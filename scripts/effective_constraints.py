"""Print requirements/constraints.txt without the pins that would fight the installed torch.

torch is installed before the rest (scripts/setup.sh): the tested CPU build by default, or a GPU build the
user chose. The lock leaves torch out; this drops, in addition, every package the installed torch requires
with an exact or upper-bounded version (a CUDA build pins its own nvidia/triton/sympy versions), so pip never
has to choose between the lock and torch. Every other line is kept as it is.
"""

import re
import sys
from importlib import metadata


def torch_pinned_names() -> set[str]:
    try:
        reqs = metadata.requires("torch") or []
    except metadata.PackageNotFoundError:
        return set()
    names = set()
    for r in reqs:
        if "extra ==" in r:
            continue
        m = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(.*)", r)
        if m and re.search(r"(==|<|~=)", m.group(2).split(";")[0]):
            names.add(norm(m.group(1)))
    return names


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(path: str) -> None:
    skip = torch_pinned_names() | {"torch"}
    for line in open(path, encoding="utf-8"):
        name = re.split(r"[=<>!~ ;\[]", line.strip(), maxsplit=1)[0]
        if name and not line.lstrip().startswith("#") and norm(name) in skip:
            continue
        sys.stdout.write(line)


if __name__ == "__main__":
    main(sys.argv[1])
