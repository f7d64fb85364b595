"""Ask this machine about its GPU: whether the CUDA MPS control daemon is running.

Nothing here starts, stops or sends anything to a GPU process; the answers are read from the
file system.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

__all__ = ["mps_running"]

_MPS_PIPE_DIRECTORY = "/tmp/nvidia-mps"  # noqa: S108 -- CUDA's own default, not a temp file of ours


def mps_running(pipe_directory: str | Path | None = None) -> bool:
    """Whether a CUDA MPS control daemon is listening on ``pipe_directory``'s ``control`` file.

    ``pipe_directory`` defaults to ``$CUDA_MPS_PIPE_DIRECTORY``, else ``/tmp/nvidia-mps``, the
    directory CUDA clients use. The daemon is asked without being sent anything:

    - ``control`` a named pipe: it is opened for writing without blocking, which succeeds only
      while a process holds it open for reading, and closed at once; nothing is written.
    - ``control`` a UNIX socket: a connection is opened and closed at once; nothing is sent.

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
    # As with the pipe, the socket file stays after the daemon quits; a refused connection is the
    # sign that nobody listens on it any more.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        try:
            sock.connect(str(path))
        except TimeoutError:
            return True  # a listener whose backlog is full is still a listener
        except OSError:
            return False
    return True
