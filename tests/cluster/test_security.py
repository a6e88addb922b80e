"""Secure by default (issue 14) on the real cluster: the whole system, deployed with the manifests
and then with Helm, runs under Pod Security "restricted"; the database's accounts have only the
rights they need; the backup CronJob writes trusted dumps through its claim.

The module deploys the system itself into k8s-assignment of the cluster LAB_CLUSTER names and
removes it at the end (host files stay). Needs a data directory whose database was initialized
by this version (the accounts are made on the first start). Run with -x: the tests share state.
"""
from __future__ import annotations

import gzip
import os
import time
import uuid

import pytest

from lab.ops import backup
from lab.system import deploy
from lab.cluster import kube
from tests.support import TARGET, deployed, helm, kubectl, say

pytestmark = pytest.mark.cluster

NS = TARGET.namespace  # the lab's namespace: this module deploys the system itself
MODE = os.environ.get("LAB_IMAGE_MODE") or "auto"
ENFORCE = "pod-security.kubernetes.io/enforce=restricted"


def mysql(user_key: str, password_key: str, query: str, check: bool = True, network: bool | None = None):
    """SQL inside database-0 as the account of the Secret's keys: over TCP, as a
    client connects, not by the socket (root: by the socket unless ``network``). The password goes on stdin."""
    creds = _credentials()
    user = "root" if user_key == "root" else creds[user_key]
    network = user_key != "root" if network is None else network
    where = "--protocol=tcp --host=127.0.0.1" if network else "--protocol=socket"
    script = f'IFS= read -r MYSQL_PWD; export MYSQL_PWD; exec mysql --user="$1" {where} --batch --skip-column-names -e "$2"'
    return kubectl("exec", "-i", "-n", NS, "database-0", "-c", "database", "--", "bash", "-c", script, "sql",
                   user, query, stdin=creds[password_key] + "\n", check=check)


def _credentials() -> dict[str, str]:
    import base64

    data = kube.core(TARGET).read_namespaced_secret("database-credentials", NS).data or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def restricted_dry_run() -> str:
    """What the API server says when asked to enforce "restricted" now: every Pod that would
    violate it is a warning line."""
    result = kubectl("label", "--dry-run=server", "--overwrite", "ns", NS, ENFORCE)
    return result.stderr.strip()


@pytest.fixture(scope="module")
def system():
    with deployed("manifests", MODE):
        yield {"token": uuid.uuid4().hex}


def test_manifests_run_under_restricted(system):
    labels = kube.core(TARGET).read_namespace(NS).metadata.labels
    assert {labels[f"pod-security.kubernetes.io/{m}"] for m in ("enforce", "warn", "audit")} == {"restricted"}
    assert restricted_dry_run() == ""


def test_a_privileged_pod_is_refused(system):
    """Enforced, not only advertised: a Pod that runs as root is rejected by the API server."""
    result = kubectl("run", "root-pod", "-n", NS, "--image=k8s-lab/probe:1", "--restart=Never",
                     "--dry-run=server", "--", "id", check=False)
    assert result.returncode != 0 and "violates PodSecurity" in result.stderr, result.stderr


def test_root_logs_in_only_from_localhost(system):
    accounts = mysql("root", "root-password", "SELECT User, Host FROM mysql.user ORDER BY 1, 2").stdout
    rows = [line.split("\t") for line in accounts.splitlines()]
    assert [h for u, h in rows if u == "root"] == ["localhost"], rows
    creds = _credentials()
    assert {u for u, _ in rows} >= {"root", creds["username"], creds["backup-username"]}
    # From the network (another address than the socket), root is refused.
    refused = mysql("root", "root-password", "SELECT 1", check=False, network=True)
    assert refused.returncode != 0 and "Access denied" in refused.stderr


def test_the_application_user_cannot_drop_or_read_the_mysql_schema(system):
    app = ("username", "password")
    mysql(*app, f"CREATE TABLE IF NOT EXISTS lab.survival (token VARCHAR(64)); "
                f"INSERT INTO lab.survival VALUES ('{system['token']}')")
    assert system["token"] in mysql(*app, "SELECT token FROM lab.survival").stdout
    for query in ("DROP TABLE lab.survival", "DROP DATABASE lab", "SELECT User FROM mysql.user",
                  "CREATE DATABASE elsewhere"):
        result = mysql(*app, query, check=False)
        assert result.returncode != 0 and "denied" in result.stderr, (query, result.stderr)


def test_the_backup_user_reads_but_cannot_write(system):
    reader = ("backup-username", "backup-password")
    assert system["token"] in mysql(*reader, "SELECT token FROM lab.survival").stdout
    for query in ("INSERT INTO lab.survival VALUES ('x')", "DELETE FROM lab.survival",
                  "CREATE TABLE lab.t (i INT)", "DROP TABLE lab.survival", "CREATE USER x IDENTIFIED BY 'y'"):
        result = mysql(*reader, query, check=False)
        assert result.returncode != 0 and "denied" in result.stderr, (query, result.stderr)


def test_policies_from_outside_the_namespace_and_for_outgoing_traffic(system):
    """The probe matrix's new cells: a Pod in another namespace, and one there that borrows the web
    labels, reach the web but never the database. And egress is closed by default: the web Pods
    reach DNS on 53 only, not the DNS Pods' readiness port 8181, which a plain Pod does reach.
    (Not the API server: it listens on the node itself, and kindnet polices only traffic that
    the node forwards, not traffic to the node.)"""
    from lab.ops import probe

    outside = probe.LAB_OUTSIDE_NAMESPACE
    kubectl("create", "namespace", outside, check=False)
    try:
        dns = probe.Destination.pods("dns-ready", "k8s-app=kube-dns", ports=[8181], namespace="kube-system")

        def expected(source: str, destination: str, port: int) -> str:
            if destination == "dns-ready":
                return "timeout" if source == "web" else "connected"
            return probe.lab_expected(source, destination, port)

        frame = probe.matrix(NS, [*probe.lab_sources(), *probe.lab_outside_sources()],
                             [*probe.lab_destinations(), dns], ports=probe.LAB_PORTS, expected=expected,
                             target=TARGET)
        say(f"{len(frame)} cells, {len(probe.wrong(frame))} wrong")
        assert set(frame["source_group"]) == {"web", "other", "elsewhere", "borrowed"}
        assert probe.wrong(frame).empty, probe.wrong(frame).to_string()
    finally:
        kubectl("delete", "namespace", outside, "--wait=false", check=False)
        probe.delete_probe_pods(NS, target=TARGET)


def test_the_cronjob_writes_a_trusted_dump_through_its_claim(system):
    backups = backup.backup_dir(TARGET)
    before = set(backups.glob("k8s-lab-*.sql.gz")) if backups.is_dir() else set()
    name = f"backup-sec-{uuid.uuid4().hex[:6]}"
    kubectl("create", "job", "-n", NS, "--from=cronjob/database-backup", name)
    done = kubectl("wait", "-n", NS, "--for=condition=Complete", f"job/{name}", "--timeout=240s", check=False,
                   timeout=260)
    logs = kubectl("logs", "-n", NS, f"job/{name}", "--all-containers", check=False).stdout
    assert done.returncode == 0, logs
    [new] = sorted(set(backups.glob("k8s-lab-*.sql.gz")) - before)
    meta = backup.load_metadata(new)
    assert meta is not None and meta["databases"] == ["lab"]
    backup.check_file(new, meta)  # sha256 and size as recorded
    rows = int(mysql("root", "root-password", "SELECT COUNT(*) FROM lab.survival").stdout)
    assert {t["table"]: t["rows"] for t in meta["tables"]}["survival"] == rows >= 1
    assert backup.verify(TARGET, new, record=False).attrs["ok"]
    assert not list(backups.glob(".*.partial")), "the Job left a partial file"
    assert b"`mysql`" not in gzip.decompress(new.read_bytes())
    kubectl("delete", "job", "-n", NS, name, "--wait=false")
    system["cronjob_dump"] = new


def test_helm_install_runs_under_restricted_and_keeps_the_data(system):
    deploy.undeploy(TARGET, "manifests")
    started = time.monotonic()
    deploy.deploy(TARGET, "helm", mode=MODE, wait=True)
    say(f"lab deploy --helm: {time.monotonic() - started:.0f}s")
    assert restricted_dry_run() == ""
    # The same generated passwords: the database files from the manifests' run open with them.
    assert system["token"] in mysql("username", "password", "SELECT token FROM lab.survival").stdout
    tested = helm("test", deploy.RELEASE, "--namespace", NS, "--logs", "--timeout", "180s")
    assert "all checks passed" in tested.stdout, tested.stdout
    assert restricted_dry_run() == ""  # the helm test Pod is restricted too
