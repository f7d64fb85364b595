"""The program the sandbox runs: an answer's code, then the item's tests, in one namespace.

Not imported by anything: the launcher reads this file's text (while it may still read the
package) and hands it to the sandbox's interpreter as ``python -I -S -c SOURCE FD``, so that
the sandboxed user never needs to read the package's files. Standard library only.

The job (``{"nonce", "code", "tests"}``) arrives as JSON on standard input. The outcome goes
to file descriptor ``FD`` as one JSON line: ``{"passed": nonce}`` after the tests ran without an
exception, or the exception that stopped them (its phase, type names and errno). Only the
first process writes there: a forked child of the answer does not speak for it, and an answer
that exits early (``os._exit(0)``) never writes the nonce, so it cannot pass by leaving.
"""

import contextlib
import json
import os
import sys
import traceback


def _main() -> None:
    fd = int(sys.argv[1])
    job = json.loads(sys.stdin.read())
    sys.stdin.close()
    me = os.getpid()
    nonce = job.pop("nonce")

    def report(outcome: dict[str, object]) -> None:
        if os.getpid() == me:
            os.write(fd, (json.dumps(outcome) + "\n").encode())

    # Not "__main__": an answer's `if __name__ == "__main__":` block (reading stdin, printing a
    # demo) is not part of the solution.
    namespace: dict[str, object] = {"__name__": "solution", "__builtins__": __builtins__}
    phase = "answer"
    try:
        code = compile(job.pop("code"), "answer.py", "exec")
        exec(code, namespace)  # noqa: S102 -- running the answer is the point, in the sandbox
        phase = "tests"
        tests = compile(job.pop("tests"), "tests.py", "exec")
        exec(tests, namespace)  # noqa: S102
    except BaseException as exc:  # every way the answer can fail is reported
        try:
            message = str(exc)[:2000]
        except BaseException:  # an exception whose str() raises
            message = "<unprintable>"
        report(
            {
                "phase": phase,
                "types": [cls.__name__ for cls in type(exc).__mro__],
                "errno": getattr(exc, "errno", None),
                "message": message,
            }
        )
        traceback.print_exc()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError):  # past the file-size limit
                stream.flush()
        os._exit(1)
    with contextlib.suppress(OSError):  # output past the file-size limit: passed all the same
        sys.stdout.flush()
    report({"passed": nonce})
    os._exit(0)  # not the answer's atexit handlers or lingering threads


_main()
