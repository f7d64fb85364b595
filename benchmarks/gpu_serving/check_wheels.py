"""Check that the downloaded wheels are exactly requirements-gpu.txt and need nothing else.

    python3 check_wheels.py WHEEL_DIR [PYPROJECT...]

Fails (exit 1, one line per problem) when a line of requirements-gpu.txt is not ``NAME==VERSION``,
when WHEEL_DIR holds a wheel the list does not pin or misses one it does, or when a requirement
that applies on the GPU machine (CPython 3.12, Linux x86_64, no extras) is not met by a pinned
version or by the image (``#   image: NAME`` lines): each wheel's Requires-Dist, and the
dependencies (and the ``server`` extra) of each PYPROJECT given (vibesdk's, llama-cpp-python's).
Runs on the preparing machine with whatever python3 has pip.
"""

from __future__ import annotations

import re
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version
except ImportError:  # pip carries its own copy
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef]
    from pip._vendor.packaging.version import Version  # type: ignore[no-redef]
try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
# The GPU machine's Python, for environment markers.
TARGET = {
    "implementation_name": "cpython",
    "implementation_version": "3.12.3",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_release": "",
    "platform_system": "Linux",
    "platform_version": "",
    "python_full_version": "3.12.3",
    "python_version": "3.12",
    "sys_platform": "linux",
}


def read_pins(path: Path) -> tuple[dict[str, Version], set[str], list[str]]:
    pins: dict[str, Version] = {}
    image: set[str] = set()
    problems = []
    for raw in path.read_text().splitlines():
        if m := re.match(r"#\s+image:\s*(.+)$", raw):
            image.update(canonicalize_name(n) for n in m.group(1).split(","))
            continue
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)", line)
        if not m:
            problems.append(f"{path.name}: {line!r} is not NAME==VERSION")
            continue
        pins[canonicalize_name(m.group(1))] = Version(m.group(2))
    return pins, image, problems


def applies(req: Requirement, extra: str = "") -> bool:
    return req.marker is None or req.marker.evaluate({**TARGET, "extra": extra})


def unmet(req: Requirement, pins: dict[str, Version], image: set[str]) -> str | None:
    name = canonicalize_name(req.name)
    if name in image:
        return None
    if name not in pins:
        return "not in the list"
    if not req.specifier.contains(pins[name], prereleases=True):
        return f"pinned {pins[name]}"
    return None


def wheel_requirements(wheel: Path) -> tuple[str, Version, list[Requirement]]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = Parser().parsestr(z.read(meta).decode())
    reqs = [Requirement(r) for r in msg.get_all("Requires-Dist") or []]
    return canonicalize_name(msg["Name"]), Version(msg["Version"]), reqs


def pyproject_requirements(path: Path) -> list[tuple[Requirement, str]]:
    project = tomllib.loads(path.read_text())["project"]
    out = [(Requirement(r), "") for r in project.get("dependencies", [])]
    server = project.get("optional-dependencies", {}).get("server", [])
    return out + [(Requirement(r), "server") for r in server]


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    pins, image, problems = read_pins(HERE / "requirements-gpu.txt")
    found: dict[str, Version] = {}
    for wheel in sorted(Path(argv[0]).glob("*.whl")):
        name, version, reqs = wheel_requirements(wheel)
        if name in found:
            problems.append(f"{wheel.name}: a second wheel of {name}")
        found[name] = version
        if pins.get(name) != version:
            problems.append(f"{wheel.name}: not pinned in requirements-gpu.txt")
        for req in reqs:
            if applies(req) and (why := unmet(req, pins, image)):
                problems.append(f"{wheel.name} requires {req}: {why}")
    problems += [f"{n}=={v}: no wheel downloaded" for n, v in pins.items() if n not in found]
    for pyproject in argv[1:]:
        for req, extra in pyproject_requirements(Path(pyproject)):
            if applies(req, extra) and (why := unmet(req, pins, image)):
                problems.append(f"{pyproject} requires {req}: {why}")
    for p in problems:
        print(f"check_wheels: {p}", file=sys.stderr)
    if not problems:
        print(f"check_wheels: {len(found)} wheels, each pinned, every requirement met")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
