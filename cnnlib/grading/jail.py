"""A bubblewrap jail for the kernel that runs a student's notebook under autograding.

The kernel gets an unprivileged uid, no network, its own pid namespace (every process the
student starts ends with the kernel), a read-only view of the Python environment and of
the ``cnnlib`` package, the course's weight cache read-only (the pre-trained networks the
PyTorch assignments start from), the student's own notebook read-only, and one writable
scratch folder, which is also its home. Nothing else of the machine is visible: not
``solutions/``, the gradebook, ``nbgrader_config.py``, other submissions or feedback.
Limits: address space, processes, CPU seconds, file size, open files, no core dumps.

Linux only (bubblewrap, Debian package ``bubblewrap``). Knows no assignment.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

__all__ = ["Limits", "bwrap_path", "bwrap_works", "jail_command", "sandbox_uid",
           "weight_cache", "reference_package", "SANDBOX_UID_BASE"]


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed kernel (and everything it starts)."""

    memory_mb: int = 2048  # address space of each process
    processes: int = 64  # RLIMIT_NPROC of the sandbox uid
    cpu_seconds: int = 900  # CPU time of each process (the kernel's whole run)
    file_mb: int = 64  # largest file it may write in its scratch folder
    open_files: int = 256

    def prlimit_args(self):
        mem = self.memory_mb * 1024 * 1024
        return [f"--as={mem}", f"--nproc={self.processes}", f"--cpu={self.cpu_seconds}",
                f"--fsize={self.file_mb * 1024 * 1024}", f"--nofile={self.open_files}",
                "--core=0"]


def bwrap_path():
    """Path of the ``bwrap`` executable, or None."""
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=1)
def bwrap_works():
    """True when bubblewrap can create a sandbox here (present and permitted)."""
    path = bwrap_path()
    if not path:
        return False
    cmd = [path, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "--proc", "/proc",
           "--dev", "/dev"]
    if os.geteuid() != 0:
        cmd.append("--unshare-user")
    try:
        return subprocess.run(cmd + ["true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


SANDBOX_UID_BASE = 2_000_000_000


def sandbox_uid():
    """The unprivileged uid the kernel runs as: one per grading process, so that the
    process limit of one student's kernel is not shared with another grading worker, and
    killing this uid's processes never touches another worker's kernel.

    The pid itself keeps it unique among live grading processes (a modulus would let two
    parallel workers share a uid); the offset keeps it clear of login users, systemd's
    dynamic users and the usual container ranges (which end below 0x70000000)."""
    return SANDBOX_UID_BASE + os.getpid()


def reference_package():
    """The folder of the ``cnnlib`` package this grading process imported, resolved.

    The sandboxed kernel must import this very package, whichever way the course is laid
    out: the repository with its editable install, a copy of the course folder next to
    another checkout's virtualenv (the grading process, started in the course folder,
    imports the copy), or a wheel in site-packages. The jail shows this folder read-only
    at the same path, and the kernel finds it first on ``PYTHONPATH``
    (:func:`kernel_pythonpath`); the kernel checks on start that it did.
    """
    import cnnlib

    return os.path.dirname(os.path.realpath(cnnlib.__file__))


def kernel_pythonpath():
    """``PYTHONPATH`` of the kernel: the folder that holds :func:`reference_package`. In the
    jail only the package itself is shown there, never the rest of a course folder."""
    return os.path.dirname(reference_package())


def _python_dirs():
    """Read-only directories the kernel's Python needs: the interpreter's installation, the
    virtualenv, and the folder of the ``cnnlib`` package (an editable install points into
    the course repository; only the package itself is exposed, never the repository)."""
    dirs = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix),
            reference_package()}
    exe = os.path.realpath(sys.executable)
    dirs.add(os.path.dirname(os.path.dirname(exe)))
    return sorted(dirs)


def weight_cache():
    """The course's weight cache as :func:`cnnlib.torch.weights.cache_dir` finds it
    (``$CNNLIB_CACHE``, else ``~/.cache/cnnlib``), resolved, without importing torch.

    The jail shows it read-only, at the same path, and points ``CNNLIB_CACHE`` there, so
    a notebook loads the pre-trained weights (``small_resnet(weights="DEFAULT")``) although
    its home is an empty scratch folder. Nothing is trained or downloaded while grading:
    the instructor fills the cache once before (``python -m cnnlib.torch.pretrain``).
    """
    env = os.environ.get("CNNLIB_CACHE")
    path = os.path.expanduser(env) if env else os.path.join(os.path.expanduser("~"), ".cache",
                                                            "cnnlib")
    return os.path.realpath(path)


def jail_command(argv, *, scratch, runtime_dir, notebook=None, limits=None, env=None,
                 uid=None):
    """The command that runs ``argv`` in the jail.

    Parameters
    ----------
    argv : list of str
        The kernel's command (absolute interpreter path).
    scratch : str
        The one writable folder: home and working directory. Owned by ``uid``.
    runtime_dir : str
        The folder of the kernel's connection file and ipc sockets (bound read-write at
        the same path, so the grader can reach the sockets).
    notebook : str, optional
        The student's submitted notebook, shown read-only in ``scratch``'s parent as
        ``submitted.ipynb``.
    env : dict
        The kernel's whole environment (nothing else is inherited).
    """
    limits = limits or Limits()
    bwrap = bwrap_path()
    if bwrap is None:
        raise RuntimeError("bubblewrap (bwrap) is not installed")
    uid = sandbox_uid() if uid is None else uid
    # /proc, /dev and an empty /tmp first: later binds may lie under /tmp
    cmd = ["prlimit", *limits.prlimit_args(), "--", bwrap, "--proc", "/proc", "--dev", "/dev",
           "--tmpfs", "/tmp"]
    for d in ("/usr", "/bin", "/lib", "/lib64", "/sbin"):
        if os.path.exists(d):
            cmd += ["--ro-bind", d, d]
    # only what the dynamic linker, time zone, fonts and certificates need from /etc
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/nsswitch.conf",
              "/etc/passwd", "/etc/group", "/etc/ssl", "/etc/fonts"):
        if os.path.exists(f):
            cmd += ["--ro-bind", f, f]
    binds = [("--ro-bind", d) for d in _python_dirs()]
    env = dict(env or {})
    cache = weight_cache()
    if os.path.isdir(cache):
        binds.append(("--ro-bind", cache))
        env["CNNLIB_CACHE"] = cache
    binds += [("--bind", runtime_dir), ("--bind", scratch)]
    # bubblewrap run as root creates missing parent folders with mode 0700, which the
    # unprivileged uid could not traverse: create them 0755 first
    parents = set()
    for _, d in binds:
        p = os.path.dirname(d)
        while p not in ("/", "") and p not in parents:
            parents.add(p)
            p = os.path.dirname(p)
    for p in sorted(parents, key=lambda x: x.count("/")):
        if not any(p == d or p.startswith(d + "/") for _, d in binds) and p not in (
                "/usr", "/bin", "/lib", "/lib64", "/sbin", "/tmp", "/proc", "/dev"):
            cmd += ["--perms", "0755", "--dir", p]
    for kind, d in binds:
        cmd += [kind, d, d]
    if notebook:
        cmd += ["--ro-bind", notebook, os.path.join(scratch, "submitted.ipynb")]
    # every namespace but the user one (--unshare-all would map only uid 0 when run as
    # root, and the drop to an unprivileged uid below needs the real one)
    cmd += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--chdir", scratch,
            "--clearenv"]
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    if os.geteuid() == 0:
        # Real root outside: drop to an unprivileged uid inside (RLIMIT_NPROC is not
        # enforced for root), with no way back (no_new_privs, no capabilities).
        cmd += ["--", shutil.which("setpriv") or "/usr/bin/setpriv", f"--reuid={uid}",
                f"--regid={uid}", "--clear-groups", "--no-new-privs", "--inh-caps=-all"]
    else:
        cmd = cmd[:cmd.index(bwrap) + 1] + ["--unshare-user", "--uid", str(uid), "--gid",
                                             str(uid)] + cmd[cmd.index(bwrap) + 1:]
    return cmd + ["--", *argv]
