"""benchmarks/__main__.py: the benchmarks re-run themselves with malloc's thresholds fixed."""

from __future__ import annotations

from benchmarks.__main__ import TUNABLES, environment_to_rerun_in


def test_glibc_without_tunables_reruns_with_them():
    env = environment_to_rerun_in({"PATH": "/bin"}, "glibc")
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": TUNABLES}
    assert "glibc.malloc.mmap_threshold=" in TUNABLES and "glibc.malloc.trim_threshold=" in TUNABLES


def test_tunables_already_set_or_another_libc_run_as_they_are():
    assert environment_to_rerun_in({"GLIBC_TUNABLES": TUNABLES}, "glibc") is None
    assert environment_to_rerun_in({"GLIBC_TUNABLES": ""}, "glibc") is None  # the user's choice
    assert environment_to_rerun_in({}, "") is None  # macOS, musl: nothing to set
