"""``python -m memspace ARGS...``: runs the ``memspace`` command (list, inspect, remove
segments, ...) with the same arguments, and exits with its exit code.

The command is the one ``MEMSPACE_BIN`` names, else ``memspace`` on ``PATH``; it is built from
the repository's ``crates/memspace-cli`` (``cargo install --path crates/memspace-cli``)."""

import os
import shutil
import subprocess
import sys


def find_binary():
    """The path of the ``memspace`` command, or ``None``."""
    named = os.environ.get("MEMSPACE_BIN")
    if named:
        return named if os.path.isfile(named) and os.access(named, os.X_OK) else None
    return shutil.which("memspace")


def main(argv=None):
    """Runs the command with ``argv`` (default: this program's arguments); returns its exit
    code."""
    args = sys.argv[1:] if argv is None else list(argv)
    binary = find_binary()
    if binary is None:
        named = os.environ.get("MEMSPACE_BIN")
        where = (
            f"MEMSPACE_BIN={named!r} is not an executable file"
            if named
            else "no `memspace` command on PATH and MEMSPACE_BIN is not set"
        )
        sys.stderr.write(
            f"python -m memspace: {where}. Install the command with "
            "`cargo install --path crates/memspace-cli` from the memspace repository, or set "
            "MEMSPACE_BIN to its path.\n"
        )
        return 127
    try:
        return subprocess.call([binary, *args])
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
