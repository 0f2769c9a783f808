"""Running Ruby with Sidekiq: snippets against the installed gem, and real ``sidekiq`` processes.

Both load ``examples/frameworks/sidekiq/jobs.rb``; without Ruby or Sidekiq the test fails,
saying what to install.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests._support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
SIDEKIQ_DIR = ROOT / "examples" / "frameworks" / "sidekiq"
SIDEKIQ_HINT = "Ruby and Sidekiq are needed (Debian: `apt-get install ruby-sidekiq`; .ci/run installs it)"


def ruby(script: str, redis_url: str | None = None, timeout: float = 30) -> str:
    """Run a Ruby snippet with Sidekiq and examples/frameworks/sidekiq/jobs.rb loaded; return stdout."""
    env = {**os.environ, "REDIS_URL": redis_url} if redis_url else dict(os.environ)
    done = subprocess.run(
        [require_ruby(), "-W0", "-r", "./jobs.rb", "-e", script],
        cwd=SIDEKIQ_DIR, env=env, capture_output=True, text=True, timeout=timeout,
    )
    if done.returncode != 0:
        raise AssertionError(f"ruby failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def require_ruby() -> str:
    path = shutil.which("ruby")
    if path is None or shutil.which("sidekiq") is None:
        pytest.fail(f"ruby or sidekiq not found: {SIDEKIQ_HINT}", pytrace=False)
    return path


class SidekiqProcess:
    """A real ``sidekiq`` process on the test Redis, with the handbook's config and jobs."""

    def __init__(self, redis_url: str, log_path: Path, *extra: str) -> None:
        require_ruby()
        self.log_path = log_path
        self.log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [shutil.which("sidekiq"), "-C", "sidekiq.yml", "-r", "./jobs.rb", *extra],
            cwd=SIDEKIQ_DIR, env={**os.environ, "REDIS_URL": redis_url, "RUBYOPT": "-W0"},
            stdout=self.log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, client, timeout: float = 30) -> None:
        """Until the process has sent its first heartbeat (its identity in ``processes``)."""

        def heartbeat():
            if self.proc.poll() is not None:
                raise AssertionError(f"sidekiq exited at start:\n{self.output()}")
            return client.smembers("processes")

        eventually("sidekiq's first heartbeat", heartbeat, timeout, details=self.output)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send ``sig``; SIGKILL if the process outlives ``timeout``; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode
