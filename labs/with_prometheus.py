"""Start Prometheus and Alertmanager on loopback for a lab or a test, and always stop them.

    with alertmanager(am_config) as am, prometheus(scrape_configs, rules=paths,
                                                   alertmanager_url=am.url) as prom:
        prom.query("up")

Both run from Debian's packages (``prometheus`` 2.42: ``/usr/bin/prometheus``;
``prometheus-alertmanager`` 0.25: ``/usr/bin/prometheus-alertmanager``), or the binaries
named by ``HANDBOOK_PROMETHEUS`` / ``HANDBOOK_ALERTMANAGER``. Each gets a free port on
127.0.0.1, a temporary data folder, its own process group (stopped with SIGTERM, then SIGKILL,
when the ``with`` block ends, whatever happened in it), and is ready when its
``/-/ready`` endpoint answers 200. Alertmanager runs with gossip off
(``--cluster.listen-address=``), so nothing listens beyond loopback.

Prometheus is started with ``--rules.alert.resend-delay`` short (2 s by default): it finds
its Alertmanagers through a discovery loop that publishes every 5 s, and an alert that fires
before is dropped and, with the default 1 m delay, not sent again for a minute.
:meth:`Prometheus.wait_for_alertmanager` waits until the Alertmanager is listed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from labs.with_redis import free_port

PROMETHEUS_ENV = "HANDBOOK_PROMETHEUS"
ALERTMANAGER_ENV = "HANDBOOK_ALERTMANAGER"
HINT = {
    "prometheus": "install Debian's `prometheus` package (2.42 on Debian 12) "
                  f"or set {PROMETHEUS_ENV}",
    "prometheus-alertmanager": "install Debian's `prometheus-alertmanager` package "
                               f"(0.25 on Debian 12) or set {ALERTMANAGER_ENV}",
}
T = TypeVar("T")


def find_binary(name: str, env: str) -> str:
    """The program named by ``env``, else ``name`` on the PATH, else a clear error."""
    found = os.environ.get(env) or shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found: {HINT[name]}")
    return found


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of a GET; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return 0, b""


def poll(check: Callable[[], T | None], timeout: float, what: str, every: float = 0.2) -> T:
    """Call ``check`` until it returns something truthy, and return that; TimeoutError after
    ``timeout`` seconds, naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(every)


@dataclass
class Server:
    """A started server: its process, base URL, data folder and log file."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    workdir: Path
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.workdir / "log.txt"

    def api(self, path: str, **params: Any) -> Any:
        """GET ``/api/v1/<path>`` (Prometheus) or ``/api/v2/<path>`` (when path says so) and
        return its ``data`` (v1) or body (v2), decoded; an error names the server's reply."""
        query = urllib.parse.urlencode(params)
        full = f"{self.url}/api/{path if path.startswith('v') else 'v1/' + path}"
        status, body = http_get(f"{full}?{query}" if query else full)
        if status != 200:
            raise RuntimeError(f"{self.name} {full} answered {status}: {body[:300]!r}")
        decoded = json.loads(body)
        return decoded["data"] if isinstance(decoded, dict) and "data" in decoded else decoded

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Prometheus(Server):
    def query(self, promql: str, at: float | None = None) -> list[dict]:
        """An instant query's result vector."""
        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = at
        return self.api("query", **params)["result"]

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict]:
        """A range query's result matrix (``/api/v1/query_range``)."""
        return self.api("query_range", query=promql, start=start, end=end, step=step)["result"]

    def wait_for_alertmanager(self, timeout: float = 30.0) -> None:
        """Wait until Prometheus lists an active Alertmanager (its discovery loop publishes
        every 5 s; alerts fired before are dropped)."""
        poll(lambda: self.api("alertmanagers")["activeAlertmanagers"], timeout,
             "Prometheus to discover its Alertmanager")

    def wait_for_targets(self, timeout: float = 30.0) -> None:
        """Wait until every scrape target has been scraped once and is up."""
        def all_up() -> bool:
            targets = self.api("targets")["activeTargets"]
            return bool(targets) and all(t["health"] == "up" for t in targets)
        poll(all_up, timeout, "every scrape target to be up")


def _start(name: str, args: list[str], url: str, workdir: Path, timeout: float) -> Server:
    log = (workdir / "log.txt").open("wb")
    # Own session = own process group: stop() kills the group, children included.
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                            start_new_session=True)
    log.close()
    server = Server(name, proc, url, workdir)
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited at start ({proc.returncode}):\n{server.tail()}")
            return http_get(f"{url}/-/ready", timeout=1)[0] == 200
        poll(ready, timeout, f"{name} at {url}/-/ready", every=0.1)
    except BaseException:
        stop(proc)
        raise
    return server


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the process group of ``proc``, SIGKILL it after ``grace`` seconds."""
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    with suppress(ProcessLookupError, PermissionError):  # anything left in the group
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _dump(data: dict | str) -> str:
    return data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)


@contextmanager
def alertmanager(config: dict | str, *, timeout: float = 30.0) -> Iterator[Server]:
    """Alertmanager with ``config`` (a dict or YAML text) on a free loopback port."""
    binary = find_binary("prometheus-alertmanager", ALERTMANAGER_ENV)
    with tempfile.TemporaryDirectory(prefix="handbook-alertmanager-") as tmp:
        workdir = Path(tmp)
        (workdir / "alertmanager.yml").write_text(_dump(config))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = _start("alertmanager", [
            binary, "--config.file=alertmanager.yml", f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
            "--log.level=warn",
        ], url, workdir, timeout)
        try:
            yield server
        finally:
            stop(server.proc)


@contextmanager
def prometheus(
    scrape_configs: Sequence[dict],
    *,
    rules: Sequence[Path | str] = (),
    alertmanager_url: str | None = None,
    interval: str = "1s",
    features: Sequence[str] = (),
    flags: Sequence[str] = (),
    resend_delay: str = "2s",
    timeout: float = 60.0,
) -> Iterator[Prometheus]:
    """Prometheus scraping ``scrape_configs`` every ``interval``, evaluating ``rules`` (files,
    copied into its folder) as often, sending alerts to ``alertmanager_url``.

    ``features`` go to ``--enable-feature`` (2.42 knows ``exemplar-storage`` and
    ``native-histograms``); ``flags`` are passed as they are.
    """
    binary = find_binary("prometheus", PROMETHEUS_ENV)
    with tempfile.TemporaryDirectory(prefix="handbook-prometheus-") as tmp:
        workdir = Path(tmp)
        rule_names = []
        for i, path in enumerate(rules):
            name = f"rules-{i}-{Path(path).name}"
            shutil.copyfile(path, workdir / name)
            rule_names.append(name)
        config: dict[str, Any] = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval,
                       "scrape_timeout": interval},
            "rule_files": rule_names,
            "scrape_configs": list(scrape_configs),
        }
        if alertmanager_url:
            config["alerting"] = {"alertmanagers": [{"static_configs": [
                {"targets": [urllib.parse.urlsplit(alertmanager_url).netloc]}]}]}
        (workdir / "prometheus.yml").write_text(_dump(config))
        port = free_port()
        args = [
            binary, "--config.file=prometheus.yml", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", f"--rules.alert.resend-delay={resend_delay}",
            "--log.level=warn", *flags,
        ]
        if features:
            args.append(f"--enable-feature={','.join(features)}")
        with ExitStack() as stack:
            started = _start("prometheus", args, f"http://127.0.0.1:{port}", workdir, timeout)
            stack.callback(stop, started.proc)
            server = Prometheus(started.name, started.proc, started.url, workdir)
            yield server


def scrape_config(job: str, *targets: str, scheme: str = "http", **extra: Any) -> dict:
    """One ``scrape_configs`` entry: ``job`` scraping ``targets`` (``host:port``)."""
    return {"job_name": job, "scheme": scheme, "static_configs": [{"targets": list(targets)}],
            **extra}
