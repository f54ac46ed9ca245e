"""Freed Argon2 blocks go back to the system instead of staying resident per thread."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Hash in 4 threads, then report RSS: with the fix the 19 MiB blocks are unmapped.
_PROGRAM = textwrap.dedent(
    """
    import sys, threading, argon2
    from tillpay.kit.memory import return_large_blocks_to_the_system
    if sys.argv[1] == "fixed":
        assert return_large_blocks_to_the_system()
    hasher = argon2.PasswordHasher(time_cost=1, memory_cost=19456, parallelism=1)
    def work():
        for _ in range(3):
            hasher.hash("correct horse battery staple")
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            print(int(line.split()[1]) // 1024)
    """
)


def _rss_after_hashing(mode: str) -> int:
    out = subprocess.run(  # noqa: S603 - this interpreter, a fixed program
        [sys.executable, "-c", _PROGRAM, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc")
def test_hashing_threads_do_not_keep_their_argon2_blocks_resident() -> None:
    # Four threads would each keep ~19 MiB without it; allow for noise.
    assert _rss_after_hashing("fixed") < _rss_after_hashing("default") - 30


def test_the_setting_is_applied_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # Finding libc spawns ldconfig; every app start in a process (each test's app) would
    # pay for it again.
    import ctypes.util

    from tillpay.kit import memory

    memory.return_large_blocks_to_the_system.cache_clear()
    calls: list[str] = []
    real = ctypes.util.find_library

    def counting(name: str) -> str | None:
        calls.append(name)
        return real(name)

    monkeypatch.setattr(ctypes.util, "find_library", counting)
    memory.return_large_blocks_to_the_system()
    memory.return_large_blocks_to_the_system()
    assert calls == ["c"]
