"""The offline lab images, checked with plain `docker run` (no kind needed, but they run with the
cluster suite because they build the images the cluster uses).

Every container and network here is created by the test itself, with a unique name, and removed
afterwards; no traffic goes anywhere but to those containers.
"""
from __future__ import annotations

import gzip
import json
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from lab.build import images
from lab.host.docker import image_label
from lab.progress import Step

pytestmark = pytest.mark.cluster

FIREWALL_IMAGE = "k8s-lab/test-firewall:1"
MARIADB = images.MARIADB_IMAGE
WEB = images.WEB_IMAGE
PROBE = images.PROBE_IMAGE


def docker(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Not lab.host.docker.run: these tests read docker's output as text, and a failure must show
    stdout too, where a container run with --rm says what went wrong."""
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def offline_images() -> list[str]:
    """Build (or find up to date) every offline image, plus the firewall helper these tests use."""
    tags = images.build("offline")  # builds only: loading into a cluster is kind.load_images
    label = images.plan_hashes("offline")[images.DEBIAN_BASE][:12]
    if image_label(FIREWALL_IMAGE, "k8s-lab.test") != label:
        docker("build", "-q", "--label", f"k8s-lab.test={label}", "--build-arg", f"BASE_IMAGE={images.DEBIAN_BASE}",
               "-t", FIREWALL_IMAGE, str(images.IMAGES_DIR / "testsupport" / "firewall"), timeout=900)
    return tags


class Sandbox:
    """Containers and one network that belong to a single test, all removed at the end."""

    def __init__(self) -> None:
        self.prefix = f"k8s-lab-test-{uuid.uuid4().hex[:8]}"
        self.network = f"{self.prefix}-net"
        self.containers: list[str] = []
        self.volumes: list[str] = []
        docker("network", "create", "--label", "k8s-lab.test=1", self.network)

    def name(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def start(self, role: str, image: str, *args: str, opts: tuple[str, ...] = ()) -> str:
        name = self.name(role)
        self.containers.append(name)
        docker("run", "-d", "--name", name, "--network", self.network, "--dns-search", ".", *opts, image, *args)
        return name

    def run(self, image: str, *args: str, opts: tuple[str, ...] = (), check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess:
        """A throw-away container on the sandbox network; no search domains, so names stay local."""
        return docker("run", "--rm", "--network", self.network, "--dns-search", ".", *opts, image, *args,
                      check=check, timeout=timeout)

    def volume(self, role: str) -> str:
        name = self.name(role)
        self.volumes.append(name)
        docker("volume", "create", name)
        return name

    def close(self) -> None:
        for name in reversed(self.containers):
            docker("rm", "-f", "-v", name, check=False)
        for name in self.volumes:
            docker("volume", "rm", "-f", name, check=False)
        docker("network", "rm", self.network, check=False)


@pytest.fixture
def sandbox(offline_images):
    box = Sandbox()
    yield box
    box.close()


def logs(name: str) -> str:
    proc = docker("logs", name, check=False)
    return proc.stdout + proc.stderr


def wait_for_mysql(name: str, password: str, timeout: float = 180) -> None:
    """Until the real server answers on TCP (the init-time server listens on no port)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
        if state != "true":
            raise AssertionError(f"{name} exited during start-up:\n{logs(name)[-4000:]}")
        proc = docker("exec", name, "mysqladmin", "--protocol=tcp", "-h127.0.0.1", "-uroot",
                      f"-p{password}", "--connect-timeout=2", "ping", check=False)
        if proc.returncode == 0 and "alive" in proc.stdout:
            return
        time.sleep(1)
    raise AssertionError(f"{name} did not answer within {timeout} s:\n{logs(name)[-4000:]}")


def sql(box: Sandbox, host: str, user: str, password: str, statement: str, database: str = "") -> str:
    """Run SQL from another container, over the network, as a remote client would."""
    args = ["mysql", "-h", host, "-u", user, f"-p{password}", "--batch", "--skip-column-names", "-e", statement]
    if database:
        args.append(database)
    return box.run(MARIADB, *args).stdout


def private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


# ---------------------------------------------------------------------------------- mariadb

ROOT_PW = 'r00t pw "quoted" \\ back\'slash'


def test_mariadb_initialises_like_the_official_mysql_image(sandbox, tmp_path):
    secrets = private_dir(tmp_path / "secrets")
    (secrets / "root-password").write_text(ROOT_PW + "\n")  # trailing newline is stripped
    (secrets / "root-password").chmod(0o644)
    (secrets / "user-password").write_text("stud pw\n")
    (secrets / "user-password").chmod(0o644)
    initdb = private_dir(tmp_path / "initdb")
    (initdb / "01-schema.sql").write_text(
        "CREATE TABLE visits (id INT PRIMARY KEY, pod VARCHAR(64));\n"
        "INSERT INTO visits VALUES (1, 'from-sql');\n")
    (initdb / "02-data.sql.gz").write_bytes(gzip.compress(b"INSERT INTO visits VALUES (2, 'from-gz');\n"))
    (initdb / "03-sourced.sh").write_text(
        'docker_process_sql <<<"INSERT INTO visits VALUES (3, \'from-sh\');"\n')
    (initdb / "04-ignored.txt").write_text("not SQL\n")
    for f in initdb.iterdir():
        f.chmod(0o644)
    conf = private_dir(tmp_path / "conf.d")
    (conf / "my.cnf").write_text("[mysqld]\nmax_connections = 77\n")
    (conf / "my.cnf").chmod(0o644)

    db = sandbox.start("db", MARIADB, opts=(
        "-e", "MYSQL_ROOT_PASSWORD_FILE=/run/secrets/root-password",
        "-e", "MYSQL_DATABASE=lab_db",
        "-e", "MYSQL_USER=student",
        "-e", "MYSQL_PASSWORD_FILE=/run/secrets/user-password",
        "-v", f"{secrets}:/run/secrets:ro",
        "-v", f"{initdb}:/docker-entrypoint-initdb.d:ro",
        "-v", f"{conf}:/etc/mysql/conf.d:ro",
    ))
    wait_for_mysql(db, ROOT_PW)

    # The regular user logs in remotely and owns MYSQL_DATABASE, filled by every kind of init file.
    rows = sql(sandbox, db, "student", "stud pw", "SELECT id, pod FROM visits ORDER BY id", "lab_db")
    assert rows.split("\n")[:3] == ["1\tfrom-sql", "2\tfrom-gz", "3\tfrom-sh"]
    assert sql(sandbox, db, "student", "stud pw", "SELECT CURRENT_USER()").strip() == "student@%"
    # Root is reachable from other hosts, like the official image's 'root'@'%'.
    assert sql(sandbox, db, "root", ROOT_PW, "SELECT CURRENT_USER()").strip() == "root@%"
    users = set(sql(sandbox, db, "root", ROOT_PW, "SELECT CONCAT(User,'@',Host) FROM mysql.user").split())
    assert {"root@%", "root@localhost", "student@%"} <= users
    assert not any(u.startswith("@") for u in users), "anonymous accounts left behind"
    # The mounted conf.d overrides the image's own settings.
    assert sql(sandbox, db, "root", ROOT_PW, "SELECT @@max_connections").strip() == "77"
    assert sql(sandbox, db, "root", ROOT_PW, "SELECT @@port, @@bind_address").split() == ["3306", "0.0.0.0"]

    dump = sandbox.run(MARIADB, "mysqldump", "-h", db, "-u", "student", "-pstud pw", "lab_db").stdout
    assert "CREATE TABLE `visits`" in dump and "from-gz" in dump
    assert "ignoring /docker-entrypoint-initdb.d/04-ignored.txt" in logs(db)

    # mysqld itself is PID 1 (gets the signals) and runs as mysql, uid/gid 999.
    status = docker("exec", db, "cat", "/proc/1/status").stdout
    assert re.search(r"^Name:\s+(mysqld|mariadbd)$", status, re.M), status
    assert re.search(r"^Uid:\s+999\s+999\s+999\s+999$", status, re.M), status
    assert docker("exec", db, "id", "-u", "mysql").stdout.strip() == "999"
    assert docker("exec", db, "stat", "-c", "%u:%g", "/var/lib/mysql/lab_db").stdout.strip() == "999:999"


def test_mariadb_restarts_on_existing_data_without_reinitialising(sandbox):
    data = sandbox.volume("data")
    first = sandbox.start("first", MARIADB, opts=(
        "-e", "MYSQL_ROOT_PASSWORD=first-pw", "-e", "MYSQL_DATABASE=keep", "-v", f"{data}:/var/lib/mysql"))
    wait_for_mysql(first, "first-pw")
    sql(sandbox, first, "root", "first-pw", "CREATE TABLE t (v INT); INSERT INTO t VALUES (42);", "keep")

    started = time.monotonic()
    docker("stop", "-t", "30", first)
    assert time.monotonic() - started < 20, "mysqld did not stop promptly on SIGTERM"
    assert docker("inspect", "--format", "{{.State.ExitCode}}", first).stdout.strip() == "0"
    assert "Shutdown complete" in logs(first)

    # A second start with other settings must keep the data and the first password.
    second = sandbox.start("second", MARIADB, opts=(
        "-e", "MYSQL_ROOT_PASSWORD=second-pw", "-e", "MYSQL_DATABASE=other", "-v", f"{data}:/var/lib/mysql"))
    wait_for_mysql(second, "first-pw")
    assert sql(sandbox, second, "root", "first-pw", "SELECT v FROM t", "keep").strip() == "42"
    assert "skipping initialization" in logs(second)
    assert "other" not in sql(sandbox, second, "root", "first-pw", "SHOW DATABASES").split()


def test_mariadb_refuses_to_initialise_without_a_password_option(sandbox):
    proc = sandbox.run(MARIADB, check=False, timeout=120)
    assert proc.returncode != 0
    assert "MYSQL_ROOT_PASSWORD" in proc.stderr


def test_mariadb_runs_as_uid_999_with_a_random_root_password(sandbox):
    # Like the StatefulSet's container: runAsUser 999, no capabilities (the entrypoint never needs root).
    db = sandbox.start("db", MARIADB, opts=("--user", "999:999", "--cap-drop", "ALL", "--security-opt",
                                            "no-new-privileges", "-e", "MYSQL_RANDOM_ROOT_PASSWORD=yes"))
    deadline = time.monotonic() + 120
    password = None
    while password is None and time.monotonic() < deadline:
        match = re.search(r"GENERATED ROOT PASSWORD: (\S+)", logs(db))
        password = match.group(1) if match else None
        time.sleep(1)
    assert password, logs(db)
    wait_for_mysql(db, password)
    assert sql(sandbox, db, "root", password, "SELECT 1").strip() == "1"


# -------------------------------------------------------------------------------------- web


def render(sandbox: Sandbox, out: Path, **env: str) -> subprocess.CompletedProcess:
    """render-page the way the web Deployment's init container runs it: uid 101, read-only root
    file system, no capabilities, writing into a world-writable directory like an emptyDir."""
    out.chmod(0o777)
    opts: list[str] = ["-v", f"{out}:/usr/share/nginx/html", "--user", "101:101", "--read-only",
                       "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    for key, value in env.items():
        opts += ["-e", f"{key}={value}"]
    return sandbox.run(WEB, "render-page", opts=tuple(opts))


def meta(page: str) -> dict[str, str]:
    return dict(re.findall(r'<meta name="([a-z-]+)" content="([^"]*)">', page))


def test_web_init_script_renders_the_page_from_env(sandbox, tmp_path):
    out = private_dir(tmp_path / "html")
    proc = render(sandbox, out, POD_NAME="web-5c9d7-x2k4q", POD_IP="10.244.1.17",
                  NODE_NAME="k8s-lab-worker2", POD_NAMESPACE="k8s-assignment", SERVING_HOST="web-5c9d7-x2k4q")
    assert "web-5c9d7-x2k4q" in proc.stdout
    fields = meta((out / "index.html").read_text())
    assert fields["pod-name"] == "web-5c9d7-x2k4q"
    assert fields["pod-ip"] == "10.244.1.17"
    assert fields["node-name"] == "k8s-lab-worker2"
    assert fields["pod-namespace"] == "k8s-assignment"
    assert fields["serving-host"] == "web-5c9d7-x2k4q"
    whoami = json.loads((out / "whoami.json").read_text())
    assert whoami["pod_ip"] == "10.244.1.17" and whoami["node_name"] == "k8s-lab-worker2"
    assert whoami["serving_host"] == "web-5c9d7-x2k4q"
    assert oct((out / "index.html").stat().st_mode & 0o777) == "0o644"


def test_web_init_script_marks_missing_values(sandbox, tmp_path):
    out = private_dir(tmp_path / "html")
    proc = render(sandbox, out, POD_NAME="only-a-name")
    assert "POD_IP" in proc.stderr and "NODE_NAME" in proc.stderr and "SERVING_HOST" in proc.stderr
    fields = meta((out / "index.html").read_text())
    assert fields["pod-ip"] == "unknown" and fields["serving-host"] == "unknown"


def test_web_serves_the_page_the_init_container_wrote(sandbox, tmp_path):
    out = private_dir(tmp_path / "html")
    render(sandbox, out, POD_NAME="web-abc", POD_IP="10.244.3.3", NODE_NAME="node-a", SERVING_HOST="web-abc")
    # A page rendered without the serving host, served by a container whose hostname is known:
    # nginx leaves the field as written (it fills in nothing), so it stays "unknown".
    no_host = private_dir(tmp_path / "no-host")
    render(sandbox, no_host, POD_NAME="web-def", POD_IP="10.244.3.4", NODE_NAME="node-a")
    # As in the Pod (Pod Security "restricted"): the image's own uid 101, a read-only root file
    # system with a tmpfs at /tmp, no capabilities; nginx listens on 8080.
    restricted = ("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges")
    web = sandbox.start("web", WEB, opts=("--hostname", "web-abc", "-v", f"{out}:/usr/share/nginx/html:ro",
                                          *restricted))
    bare = sandbox.start("bare", WEB, opts=restricted)  # no init container: says so instead of stale values
    unnamed = sandbox.start("unnamed", WEB, opts=("--hostname", "web-def", "-v", f"{no_host}:/usr/share/nginx/html:ro",
                                                  *restricted))
    for name in (web, bare, unnamed):
        sandbox.run(PROBE, "sh", "-c", f"for i in $(seq 50); do probe-tcp {name} 8080 1 && exit 0; sleep 0.2; done; exit 1")
    assert docker("exec", web, "id", "-u").stdout.strip() == "101"
    web, bare, unnamed = f"{web}:8080", f"{bare}:8080", f"{unnamed}:8080"

    headers = sandbox.run(PROBE, "curl", "-sS", "-D", "-", "-o", "/dev/null", f"http://{web}/").stdout
    assert re.search(r"^X-Served-By: web-abc\r?$", headers, re.M | re.I), headers
    page = sandbox.run(PROBE, "curl", "-sS", f"http://{web}/").stdout
    fields = meta(page)
    assert fields["pod-name"] == "web-abc" and fields["serving-host"] == "web-abc"
    assert '<td id="serving-host">web-abc</td>' in page
    whoami = json.loads(sandbox.run(PROBE, "curl", "-sS", f"http://{web}/whoami.json").stdout)
    assert whoami == {**whoami, "pod_name": "web-abc", "pod_ip": "10.244.3.3", "node_name": "node-a",
                      "serving_host": "web-abc"}
    assert sandbox.run(PROBE, "curl", "-sS", f"http://{web}/healthz").stdout == "ok\n"
    assert 'name="page-rendered" content="no"' in sandbox.run(PROBE, "curl", "-sS", f"http://{bare}/").stdout
    assert meta(sandbox.run(PROBE, "curl", "-sS", f"http://{unnamed}/").stdout)["serving-host"] == "unknown"
    assert json.loads(sandbox.run(PROBE, "curl", "-sS", f"http://{unnamed}/whoami.json").stdout)["serving_host"] == "unknown"
    # The official image's logging contract: access log on stdout.
    assert "GET /whoami.json" in docker("logs", web.split(":")[0]).stdout


def test_nginx_base_has_the_official_layout(offline_images):
    script = ("nginx -t 2>&1 && grep -q 'include /etc/nginx/conf.d/\\*.conf' /etc/nginx/nginx.conf"
              " && test -f /usr/share/nginx/html/index.html"
              " && readlink /var/log/nginx/access.log && readlink /var/log/nginx/error.log && id -u nginx")
    out = docker("run", "--rm", "--network", "none", images.NGINX_BASE_OFFLINE, "sh", "-c", script).stdout
    assert "/dev/stdout" in out and "/dev/stderr" in out and out.strip().endswith("101")
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", images.NGINX_BASE_OFFLINE).stdout)
    assert config["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert "80/tcp" in config["ExposedPorts"]


def test_python_base_has_the_kubernetes_client(offline_images):
    out = docker("run", "--rm", "--network", "none", images.PYTHON_BASE_OFFLINE, "python3", "-c",
                 "import kubernetes, sys; print(sys.version_info[:2] >= (3, 11), kubernetes.__version__)").stdout
    assert out.startswith("True ")


# ------------------------------------------------------------------------------------ probe


def test_probe_tells_connected_refused_and_timed_out_apart(sandbox):
    target = sandbox.start("target", PROBE, "nc", "-lk", "8080")
    blackhole = sandbox.start("blackhole", FIREWALL_IMAGE, "blackhole", "9000", opts=("--cap-add", "NET_ADMIN"))
    for name, needle in ((target, None), (blackhole, "dropping tcp/9000")):
        deadline = time.monotonic() + 30
        while needle and needle not in logs(name) and time.monotonic() < deadline:
            time.sleep(0.5)
    time.sleep(1)

    def probe(host: str, port: int, limit: int = 2) -> tuple[str, int, float]:
        started = time.monotonic()
        proc = sandbox.run(PROBE, "probe-tcp", host, str(port), str(limit), check=False)
        return proc.stdout.strip(), proc.returncode, time.monotonic() - started

    word, rc, _ = probe(target, 8080)
    assert (word, rc) == ("connected", 0)
    word, rc, _ = probe(target, 8081)
    assert (word, rc) == ("refused", 1)
    word, rc, took = probe(blackhole, 9000, limit=2)
    assert (word, rc) == ("timeout", 2)
    assert took >= 2
    # The same port answers once the rule is gone: the firewall, not the listener, made the timeout.
    docker("exec", blackhole, "sh", "-c", "iptables -D INPUT -p tcp --dport 9000 -j DROP"
           " || iptables-legacy -D INPUT -p tcp --dport 9000 -j DROP")
    assert probe(blackhole, 9000)[:2] == ("connected", 0)
    # Bad arguments are an error of their own.
    assert probe(target, "http")[:2] == ("error", 3)  # type: ignore[arg-type]


def test_probe_resolves_names_and_has_its_tools(sandbox):
    target = sandbox.start("target", PROBE)
    ip = docker("inspect", "--format", f"{{{{(index .NetworkSettings.Networks \"{sandbox.network}\").IPAddress}}}}",
                target).stdout.strip()
    assert sandbox.run(PROBE, "getent", "hosts", target).stdout.split()[0] == ip
    assert ip in sandbox.run(PROBE, "nslookup", target).stdout
    sandbox.run(PROBE, "sh", "-c", "command -v nc && command -v curl && command -v dig && command -v timeout")
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", PROBE).stdout)
    assert config["Cmd"] == ["sleep", "infinity"]


# ----------------------------------------------------------------------------------- builds


def test_images_carry_their_inputs_and_a_second_build_changes_nothing(offline_images):
    hashes = images.plan_hashes("offline")
    before = {}
    for tag in offline_images:
        assert image_label(tag, images.INPUTS_LABEL) == hashes[tag], tag
        before[tag] = docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    started = time.monotonic()
    assert images.build("offline") == offline_images
    assert time.monotonic() - started < 60
    for tag in offline_images:
        assert docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip() == before[tag]
    leftovers = docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert not [ref for ref in leftovers if ":building-" in ref]


def test_a_failed_build_leaves_no_half_tagged_image(offline_images, tmp_path, monkeypatch):
    """The real tag keeps pointing at the last good image, and no temporary tag is left over."""
    tag = f"k8s-lab/test-broken:{uuid.uuid4().hex[:8]}"
    context = tmp_path / "images" / "broken"
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(
        f"FROM {images.DEBIAN_BASE}\nRUN echo half-done > /half\nRUN echo failing on purpose; exit 3\n")
    monkeypatch.setattr(images, "IMAGES_DIR", tmp_path / "images")
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    docker("tag", images.DEBIAN_BASE, tag)  # "the last good image"
    good = docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    try:
        spec = images.ImageSpec(tag, "broken", (("BASE_IMAGE", images.DEBIAN_BASE),))
        with pytest.raises(images.LabError) as err:
            images._docker_build(spec, "offline", "0" * 64, Step(f"building {tag}"))
        assert "failing on purpose" in err.value.message
        assert "broken.log" in (err.value.hint or "")
        assert docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip() == good
        repo = tag.split(":")[0]
        assert docker("images", "--format", "{{.Tag}}", repo).stdout.split() == [tag.split(":")[1]]
    finally:
        docker("image", "rm", "--no-prune", tag, check=False)
