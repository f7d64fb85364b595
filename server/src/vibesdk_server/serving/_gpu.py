"""Ask this machine about its GPU: its name, which profile suits it, whether MPS is running.

Nothing here changes the GPU's state or sends anything to a GPU process: the name comes from an
``nvidia-smi`` query, the MPS answer from the daemon's control file.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

from vibesdk import ConfigError

from ._profiles import PROFILES, ServerProfile, get_profile, profile_for_gpu

logger = logging.getLogger("vibesdk_server.serving")

__all__ = ["AUTO_PROFILES", "gpu_name", "mps_running", "resolve_profile"]

# Profile names that stand for "the VibeThinker profile for this machine's GPU", each with whether
# it means the -topk twin.
AUTO_PROFILES: Final[Mapping[str, bool]] = MappingProxyType({"auto": False, "auto-topk": True})

_MPS_PIPE_DIRECTORY = "/tmp/nvidia-mps"  # noqa: S108 -- CUDA's own default, not a temp file of ours


def mps_running(pipe_directory: str | Path | None = None) -> bool:
    """Whether a CUDA MPS control daemon is listening on ``pipe_directory``'s ``control`` file.

    ``pipe_directory`` defaults to ``$CUDA_MPS_PIPE_DIRECTORY``, else ``/tmp/nvidia-mps``, the
    directory CUDA clients use. The daemon is asked without being sent anything:

    - ``control`` a named pipe: it is opened for writing without blocking, which succeeds only
      while a process holds it open for reading, and closed at once; nothing is written.
    - ``control`` a UNIX socket (what CUDA 13's daemon makes): a stream connection is tried and
      closed at once; nothing is sent. The daemon's socket is of another type, so the kernel
      refuses with EPROTOTYPE while it is bound and with ECONNREFUSED once the daemon has quit.

    A missing file, any other kind of file, no reader, a refused connection or a file this user
    may not open all answer ``False``: CUDA clients of this user would not reach a daemon either.
    """
    if pipe_directory is None:
        pipe_directory = os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or _MPS_PIPE_DIRECTORY
    control = Path(pipe_directory) / "control"
    try:
        mode = control.stat().st_mode
    except OSError:
        return False
    if stat.S_ISFIFO(mode):
        return _fifo_has_reader(control)
    if stat.S_ISSOCK(mode):
        return _socket_has_listener(control)
    return False


def _fifo_has_reader(path: Path) -> bool:
    # The control file outlives the daemon (`echo quit | nvidia-cuda-mps-control` leaves it), so
    # only an open that needs a reader on the other end tells a live daemon from a quit one.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: no reader; EACCES: not ours to reach
        return False
    os.close(fd)
    return True


def _socket_has_listener(path: Path) -> bool:
    # As with the pipe, the socket file stays after the daemon quits (seen with CUDA 13's daemon),
    # and connecting is then refused. A live daemon's socket is not a stream socket: the kernel
    # answers a stream connect with EPROTOTYPE before the daemon hears of it, and only a socket
    # some process still has bound can answer that, so it counts as running too.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        try:
            sock.connect(str(path))
        except TimeoutError:
            return True  # a listener whose backlog is full is still a listener
        except OSError as exc:
            return exc.errno == errno.EPROTOTYPE
    return True


def gpu_name(*, timeout_s: float = 10.0) -> str:
    """The first GPU's name as ``nvidia-smi --query-gpu=name --format=csv,noheader`` prints it.

    Raises :class:`vibesdk.ConfigError` saying why there is none: no ``nvidia-smi`` on ``PATH``,
    or one that fails, hangs past ``timeout_s`` or lists no GPU.
    """
    exe = shutil.which("nvidia-smi")
    if exe is None:
        raise ConfigError("no GPU name found: nvidia-smi is not on PATH")
    try:
        done = subprocess.run(  # noqa: S603 -- nvidia-smi from PATH, argv list, no shell
            [exe, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"no GPU name found: nvidia-smi did not answer ({exc})") from exc
    names = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not names:
        said = (done.stderr.strip() or done.stdout.strip() or "nothing").splitlines()[0]
        raise ConfigError(
            f"no GPU name found: nvidia-smi exited with code {done.returncode} and said: {said}"
        )
    return names[0]


def resolve_profile(profile: str | ServerProfile) -> ServerProfile:
    """A profile object, its name, or ``auto`` / ``auto-topk`` turned into a :class:`ServerProfile`.

    ``auto`` reads the GPU's name (:func:`gpu_name`) and picks by :func:`profile_for_gpu`
    (``auto-topk`` its ``-topk`` twin), logging the choice; without a name or with a GPU no profile
    is for, :class:`vibesdk.ConfigError` says which GPU was found and lists the known profiles. An
    unknown name raises ``KeyError`` naming the known ones, as :func:`get_profile` does.
    """
    if isinstance(profile, ServerProfile):
        return profile
    if profile not in AUTO_PROFILES:
        return get_profile(profile)
    try:
        name = gpu_name()
    except ConfigError as exc:
        known = ", ".join(sorted(PROFILES))
        raise ConfigError(
            f"profile {profile!r} picks by GPU, but {exc}; name one of: {known}"
        ) from exc
    chosen = profile_for_gpu(name, topk=AUTO_PROFILES[profile])
    logger.info("profile %s: GPU %r -> %s", profile, name, chosen.name)
    return chosen
