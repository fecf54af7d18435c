"""Start a command with resource limits and, when we are root, as a throwaway user.

Runs inside the grading sandbox as ``python -I -S _launch.py [--rlimit NAME=N]... [--uid U --gid G] -- CMD...``
(standard library only: ``-S`` skips the site packages, so this starts in milliseconds). The
limits hold for the command and everything it starts; a process limit (RLIMIT_NPROC) only
binds a user other than root, hence the throwaway user id (one per sandbox: the limit then
counts this sandbox's processes alone). No new privileges can be gained afterwards.
"""
import ctypes
import os
import resource
import sys

_PR_SET_NO_NEW_PRIVS = 38


def main(argv):
    if "--" not in argv:
        sys.stderr.write("usage: _launch.py [--rlimit NAME=N]... [--uid U --gid G] -- CMD...\n")
        return 2
    split = argv.index("--")
    opts, cmd = argv[:split], argv[split + 1:]
    uid = gid = None
    i = 0
    while i < len(opts):
        if opts[i] == "--rlimit":
            name, value = opts[i + 1].split("=", 1)
            limit = int(value)
            resource.setrlimit(getattr(resource, "RLIMIT_" + name), (limit, limit))
            i += 2
        elif opts[i] == "--uid":
            uid = int(opts[i + 1])
            i += 2
        elif opts[i] == "--gid":
            gid = int(opts[i + 1])
            i += 2
        else:
            sys.stderr.write(f"_launch.py: unknown option {opts[i]}\n")
            return 2
    if gid is not None:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
    if uid is not None:
        os.setresuid(uid, uid, uid)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
