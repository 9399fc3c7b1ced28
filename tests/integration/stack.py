"""A private STAC catalog on loopback: PostgreSQL + PostGIS with pgstac, stac-fastapi-pgstac, nginx.

The integration tests run glacierwatch against the same kind of services a private catalog for
real data uses (deploy/private-catalog/README.md): scenes are found through a STAC API with
pystac-client, and their COGs are read over HTTP range requests by GDAL. Everything listens on
127.0.0.1 at free ports, lives in a temporary folder and is stopped by PID.

Strategy:
- Debian packages (postgresql, postgresql-NN-postgis-3, nginx) are installed with apt-get when
  missing and we are root; otherwise `StackUnavailable` names the package, and the tests skip.
- The Python services (pypgstac, stac-fastapi-pgstac, uvicorn) run from their own virtual
  environment, built once under ~/.cache/glacierwatch/ (keyed by the pins) and reused. Not in
  the project's venv: stac-fastapi pulls in orjson, and pystac serialises with orjson when it is
  importable, which refuses numpy floats - the synthetic generator writes some
  (deploy/private-catalog/README.md). The tests talk to the services over HTTP only.
- PostgreSQL refuses to run as root, so as root its processes run as the `postgres` user, in a
  data folder of their own (pytest's temporary folders are private to root).
- One PostgreSQL cluster; pgstac is migrated once into a template database and every published
  catalog is a copy of it (`CREATE DATABASE ... TEMPLATE`), loaded with `pypgstac load` and served
  by its own uvicorn. Asset hrefs are rewritten per catalog, so the same items can point at nginx
  directly or at a fault-injecting proxy in front of it (tests/integration/fault_proxy.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote

SERVICE_PINS = ("pypgstac[psycopg]==0.10.0", "stac-fastapi-pgstac==7.2.0", "uvicorn==0.54.0")
"""Known to work together (pgstac schema 0.10.0 under stac-fastapi-pgstac 7.2.0), Python 3.11."""
CACHE = Path(os.environ.get("GLACIERWATCH_INTEGRATION_CACHE") or Path.home() / ".cache" / "glacierwatch" / "integration")
"""Where the services' virtual environment is built once and kept (CI: cache this folder between jobs)."""
START_TIMEOUT_S = 60
APT_TIMEOUT_S = 300


class StackUnavailable(RuntimeError):
    """A service cannot be installed or started here; the message names the package and the fix."""


# ---------------------------------------------------------------------------------------------
# processes


@dataclass
class Service:
    """A process we started (in its own session, so its children go with it), and its log."""

    name: str
    process: subprocess.Popen
    log: Path
    stop_signal: int = signal.SIGTERM

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, n: int = 30) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 20) -> None:
        if not self.alive():
            return
        self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)  # the group we created for it (start_new_session)
            self.process.wait(5)


def _spawn(name: str, args: list[str], log: Path, *, user: str | None = None, env: dict | None = None,
           cwd: Path | None = None, stop_signal: int = signal.SIGTERM, reaper: Reaper | None = None) -> Service:
    with open(log, "ab") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
            user=user, start_new_session=True,
        )
    service = Service(name, process, log, stop_signal)
    if reaper is not None:
        reaper.watch(service)
    return service


_REAPER = r"""
import os, shutil, signal, sys, time

def start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]

lines = [line.split(maxsplit=1) for line in sys.stdin]  # until EOF: "pid start-time signal" or "rm folder"
watched = [(kind, *rest.split()) for kind, rest in lines if kind != "rm"]
alive = []
for pid, start, sig in watched:
    if start_time(int(pid)) == start:  # still the process we started, not a reused pid
        os.kill(int(pid), int(sig))
        alive.append((int(pid), start))
deadline = time.monotonic() + 15
while alive and time.monotonic() < deadline:
    time.sleep(0.2)
    alive = [(pid, start) for pid, start in alive if start_time(pid) == start]
for pid, _ in alive:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
for kind, folder in lines:
    if kind == "rm":
        shutil.rmtree(folder.strip(), ignore_errors=True)
"""


class Reaper:
    """A watchdog process that stops our services if the test process dies before it can (kill -9, CI timeout).

    It reads one line per service from a pipe; the pipe closes when this process ends, however
    it ends, and the watchdog then stops every service still running. After a normal teardown
    the services are already stopped and it has nothing to do.
    """

    def __init__(self):
        self.process = subprocess.Popen([sys.executable, "-c", _REAPER], stdin=subprocess.PIPE, text=True,
                                        start_new_session=True)

    def watch(self, service: Service) -> None:
        with open(f"/proc/{service.process.pid}/stat") as f:
            start = f.read().rsplit(")", 1)[1].split()[19]
        self.process.stdin.write(f"{service.process.pid} {start} {int(service.stop_signal)}\n")
        self.process.stdin.flush()

    def remove_later(self, folder: Path) -> None:
        """Remove `folder` too if this process dies first (a normal teardown removes it itself)."""
        self.process.stdin.write(f"rm {folder}\n")
        self.process.stdin.flush()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(30)


def _run(args: list[str], what: str, *, user: str | None = None, env: dict | None = None, timeout: float = 300) -> str:
    done = subprocess.run(args, capture_output=True, text=True, user=user, env=env, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(map(str, args))}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready: Callable[[], bool], service: Service, timeout: float = START_TIMEOUT_S) -> None:
    """Poll `ready` until it holds; a service that exits or takes too long is an error with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if not service.alive():
            raise RuntimeError(f"{service.name} exited with {service.process.returncode}:\n{service.log_tail()}")
        time.sleep(0.1)
    raise RuntimeError(f"{service.name} not ready after {timeout} s:\n{service.log_tail()}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


# ---------------------------------------------------------------------------------------------
# installation (skipped when already there)


def _apt_install(packages: list[str]) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackUnavailable(
            f"Debian package(s) {', '.join(packages)} not installed and apt-get is not usable here "
            f"(not root, or no apt): sudo apt-get install -y --no-install-recommends {' '.join(packages)}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quick = ["-o", "Acquire::http::Timeout=20", "-o", "Acquire::Retries=0"]  # no network: fail, do not hang
    install = ["apt-get", *quick, "install", "-y", "-qq", "--no-install-recommends", *packages]

    def apt(args: list[str]) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(args, capture_output=True, text=True, env=env, timeout=APT_TIMEOUT_S)
        except subprocess.TimeoutExpired as err:
            raise StackUnavailable(f"{' '.join(args[:1] + args[5:])} took more than {APT_TIMEOUT_S} s "
                                   "(slow mirror or a held dpkg lock)") from err

    if apt(install).returncode != 0:
        apt(["apt-get", *quick, "update", "-qq"])  # stale or absent package lists
        done = apt(install)
        if done.returncode != 0:
            raise StackUnavailable(f"apt-get cannot install {', '.join(packages)}: {done.stderr.strip()[-500:]}")


@dataclass(frozen=True)
class PostgresInstall:
    version: str
    bindir: Path


def _postgres_versions() -> list[str]:
    found = [p.parent.parent.name for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")]
    return sorted(found, key=lambda v: float(v), reverse=True)


def _has_postgis(version: str) -> bool:
    return Path(f"/usr/share/postgresql/{version}/extension/postgis.control").is_file()


def ensure_postgres() -> PostgresInstall:
    """PostgreSQL with PostGIS from Debian (the distribution's version), installed if missing."""
    if not _postgres_versions():
        _apt_install(["postgresql", "postgresql-contrib"])
    versions = _postgres_versions()
    if not versions:
        raise StackUnavailable("Debian package postgresql installed but no /usr/lib/postgresql/*/bin/postgres found")
    with_postgis = [v for v in versions if _has_postgis(v)]
    if not with_postgis:
        _apt_install([f"postgresql-{versions[0]}-postgis-3"])
        with_postgis = [v for v in versions if _has_postgis(v)]
        if not with_postgis:
            raise StackUnavailable(f"Debian package postgresql-{versions[0]}-postgis-3 installed but no postgis.control")
    return PostgresInstall(with_postgis[0], Path(f"/usr/lib/postgresql/{with_postgis[0]}/bin"))


def ensure_nginx() -> Path:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).is_file()), None)
    if found is None:
        _apt_install(["nginx"])
        found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).is_file():
        raise StackUnavailable("Debian package nginx installed but no nginx binary found")
    return Path(found)


def ensure_service_venv(cache: Path = CACHE) -> Path:
    """bin/ of a virtual environment with SERVICE_PINS, built once and reused (keyed by the pins)."""
    key = hashlib.sha256(f"{sys.version_info[:2]}|{'|'.join(SERVICE_PINS)}".encode()).hexdigest()[:12]
    venv = cache / f"services-{key}"
    marker = venv / "glacierwatch-ok"
    if marker.is_file():
        return venv / "bin"
    shutil.rmtree(venv, ignore_errors=True)  # an earlier build that did not finish
    venv.parent.mkdir(parents=True, exist_ok=True)
    try:
        _run([sys.executable, "-m", "venv", str(venv)], "creating the services' virtual environment")
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--timeout", "20", "--retries", "1"]
        _run([*pip, *SERVICE_PINS], "pip install", timeout=600)
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        shutil.rmtree(venv, ignore_errors=True)
        raise StackUnavailable(f"cannot pip install {' '.join(SERVICE_PINS)} (PyPI unreachable?): {err}") from err
    marker.write_text("\n".join(SERVICE_PINS))
    return venv / "bin"


# ---------------------------------------------------------------------------------------------
# services


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1:<port>, trust authentication, no durability."""

    def __init__(self, install: PostgresInstall, workdir: Path, reaper: Reaper | None = None):
        self.install, self.reaper = install, reaper
        # PostgreSQL refuses root; pytest's temporary folders are root-only, so the cluster gets its own.
        self.user = "postgres" if os.geteuid() == 0 else None
        self.datadir = Path(tempfile.mkdtemp(prefix="glacierwatch-pg-"))
        if reaper is not None:
            reaper.remove_later(self.datadir)
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.datadir, entry.pw_uid, entry.pw_gid)
        self.port = free_port()
        self.log = workdir / "postgres.log"
        self.service: Service | None = None

    def _bin(self, name: str) -> str:
        return str(self.install.bindir / name)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        _run([self._bin("initdb"), "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
              "--no-sync"], "initdb", user=self.user)
        settings = {"listen_addresses": "127.0.0.1", "port": self.port, "unix_socket_directories": str(self.datadir),
                    "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": 50}
        args = [self._bin("postgres"), "-D", str(self.datadir)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        # SIGINT is PostgreSQL's "fast" shutdown (disconnect clients, stop).
        self.service = _spawn("postgres", args, self.log, user=self.user, stop_signal=signal.SIGINT, reaper=self.reaper)
        ready = [self._bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        wait_until(lambda: subprocess.run(ready, timeout=10).returncode == 0, self.service)

    def sql(self, statement: str, database: str = "postgres") -> str:
        return _run([self._bin("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.dsn(database), "-c", statement],
                    f"psql {statement!r}")

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)


class Nginx:
    """nginx serving `root` (static files, range requests) on 127.0.0.1:<port>."""

    def __init__(self, binary: Path, root: Path, workdir: Path, reaper: Reaper | None = None):
        self.binary, self.root, self.reaper = binary, Path(root), reaper
        self.prefix = workdir / "nginx"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.service: Service | None = None

    def config(self) -> str:
        p = self.prefix
        # As root, the master would hand the files to workers running as nobody, who cannot read
        # pytest's root-only temporary folders.
        user = "user root root;" if os.geteuid() == 0 else ""
        return f"""
{user}
daemon off;
worker_processes 2;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log {p}/access.log;
    client_body_temp_path {p}/tmp/body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
    types {{ image/tiff tif tiff; application/json json; }}
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 10000;
    server {{
        listen 127.0.0.1:{self.port};
        root {self.root};
        location / {{ autoindex off; }}
    }}
}}
"""

    def start(self) -> None:
        (self.prefix / "tmp").mkdir(parents=True, exist_ok=True)
        conf = self.prefix / "nginx.conf"
        conf.write_text(self.config())
        args = [str(self.binary), "-p", str(self.prefix), "-e", str(self.prefix / "error.log"), "-c", str(conf)]
        _run([*args, "-t"], "nginx -t (config test)")
        self.service = _spawn("nginx", args, self.prefix / "stdout.log", reaper=self.reaper)
        wait_until(lambda: http_ok(f"{self.url}/catalog.json"), self.service)

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()


def stac_documents(catalog_json: Path, cog_base_url: str, exclude: frozenset[str] = frozenset()) -> tuple[list[dict], list[dict]]:
    """Collections and items (but `exclude`) of a static catalog, asset hrefs moved from its folder to `cog_base_url`."""
    import pystac

    root = Path(catalog_json).resolve().parent
    catalog = pystac.Catalog.from_file(str(catalog_json))
    collections, items = [], []
    for collection in catalog.get_collections():
        c = collection.to_dict(include_self_link=False, transform_hrefs=False)
        c["links"] = []
        collections.append(c)
        for item in collection.get_items():
            if item.id in exclude:
                continue
            item.make_asset_hrefs_absolute()
            d = item.to_dict(include_self_link=False, transform_hrefs=False)
            d["links"] = []
            for asset in d["assets"].values():
                relative = Path(asset["href"]).resolve().relative_to(root)
                asset["href"] = f"{cog_base_url.rstrip('/')}/{quote(relative.as_posix())}"
            items.append(d)
    return collections, items


@dataclass(frozen=True)
class Installation:
    """Where the services' programs are (see `ensure_installed`)."""

    postgres: PostgresInstall
    nginx: Path
    venv_bin: Path


def ensure_installed() -> Installation:
    """Install what is missing (apt-get as root, pip into the services' venv); StackUnavailable names what cannot be."""
    return Installation(ensure_postgres(), ensure_nginx(), ensure_service_venv())


class PrivateCatalog:
    """The running stack: one PostgreSQL, one nginx over the study area, one STAC API per published catalog."""

    TEMPLATE = "pgstac_template"

    def __init__(self, area: Path, workdir: Path, installed: Installation):
        self.area, self.workdir, self.venv_bin = Path(area), Path(workdir), installed.venv_bin
        self.reaper = Reaper()
        self.postgres = Postgres(installed.postgres, self.workdir, self.reaper)
        self.nginx = Nginx(installed.nginx, self.area, self.workdir, self.reaper)
        self.apis: dict[str, str] = {}
        self._apis: list[Service] = []

    def start(self) -> None:
        self.postgres.start()
        self.nginx.start()
        self.postgres.sql(f"CREATE DATABASE {self.TEMPLATE}")
        _run([str(self.venv_bin / "pypgstac"), "migrate", "--dsn", self.postgres.dsn(self.TEMPLATE)], "pypgstac migrate")

    def publish(self, name: str, cog_base_url: str, exclude: frozenset[str] = frozenset()) -> str:
        """A STAC API (its URL) serving the area's collections and items but `exclude`, assets at `cog_base_url`."""
        if name in self.apis:
            return self.apis[name]
        if not name.isidentifier():
            raise ValueError(f"catalog name {name!r} must be an identifier (it names a database)")
        self.postgres.sql(f"CREATE DATABASE {name} TEMPLATE {self.TEMPLATE}")
        collections, items = stac_documents(self.area / "catalog.json", cog_base_url, frozenset(exclude))
        folder = self.workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        for kind, documents in (("collections", collections), ("items", items)):
            path = folder / f"{kind}.ndjson"
            path.write_text("".join(json.dumps(d) + "\n" for d in documents))
            _run([str(self.venv_bin / "pypgstac"), "load", kind, str(path), "--dsn", self.postgres.dsn(name),
                  "--method", "insert"], f"pypgstac load {kind}")
        port = free_port()
        env = {"PATH": os.environ.get("PATH", ""), "PGUSER": "postgres", "PGPASSWORD": "", "PGHOST": "127.0.0.1",
               "PGPORT": str(self.postgres.port), "PGDATABASE": name}
        args = [str(self.venv_bin / "python"), "-m", "uvicorn", "stac_fastapi.pgstac.app:create_app", "--factory",
                "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
        service = _spawn(f"stac-fastapi-pgstac ({name})", args, folder / "uvicorn.log", env=env, cwd=folder,
                         reaper=self.reaper)
        self._apis.append(service)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(f"{url}/collections"), service)
        self.apis[name] = url
        return url

    def stop(self) -> None:
        """Stop every service (STAC APIs, nginx, PostgreSQL, by PID) and the watchdog."""
        try:
            for service in self._apis:
                service.stop()
            self.nginx.stop()
            self.postgres.stop()
        finally:
            self.reaper.close()


@contextlib.contextmanager
def private_catalog(area: Path, workdir: Path, installed: Installation | None = None):
    """PostgreSQL + pgstac and nginx over `area`, running; everything stopped on exit, also on errors.

    Raises StackUnavailable (naming the package) where the services cannot be installed here.
    """
    installed = installed or ensure_installed()
    Path(workdir).mkdir(parents=True, exist_ok=True)
    stack = PrivateCatalog(area, workdir, installed)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
