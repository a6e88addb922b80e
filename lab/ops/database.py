"""The lab's database server as the tools reach it: a MySQL (MariaDB offline) in a StatefulSet's Pod.

``Database.sql`` runs statements as root and returns their rows. The root password is read from
the database's Secret through the Kubernetes API and handed to the Pod on stdin; it never appears
on a command line, in output or in an error message.

Statements go down one long-lived ``mysql`` client per database Pod, over one exec (the API
server's websocket, in-process), read back up to a marker row. Starting a ``kubectl exec`` and a
client login for every question cost about a quarter of a second before the query ran, and a
backup's verification asks four questions, a notebook's checkpoints dozens. A session whose Pod
went away is replaced by a fresh one; one that has been idle for a while must first answer a
``SELECT 1`` within a few seconds, else it is replaced too. So a statement is never sent down a
connection that may have died in silence, and a checkpoint a minute after the last one does not
pay for a new login.
"""
from __future__ import annotations

import base64
import itertools
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from kubernetes.client.exceptions import ApiException

from lab import runner, timing
from lab.cluster import kube
from lab.errors import LabError
from lab.target import Target

SYSTEM_SCHEMAS = frozenset({"mysql", "sys", "information_schema", "performance_schema"})
OBJECT_KINDS = ("views", "routines", "triggers", "events")
STATEFULSET = "database"
CONTAINER = "database"
SECRET = "database-credentials"
ROOT_PASSWORD_KEY = "root-password"
# The first thing every script run in the database Pod does: take the password from stdin.
PASSWORD_FROM_STDIN = 'IFS= read -r MYSQL_PWD || exit 90; export MYSQL_PWD; set -o pipefail; '
# Without --force the client stops at the first failing statement and exits: the session ends
# there, and its error is the request's error.
_CLIENT = ('exec mysql --user=root --batch --skip-column-names --unbuffered '
           '--default-character-set=utf8mb4 ${1:+--database="$1"}')
# A session unused for longer than this must answer a ping before it is trusted: an idle exec can
# be cut by a proxy or the kubelet without the client hearing of it. A ping that takes longer than
# PING_TIMEOUT_S ends the session; nothing but the ping went down it, so the statement goes down a
# new one.
SESSION_IDLE_S = 30.0
PING_TIMEOUT_S = 3.0



def pod_name(statefulset: str = STATEFULSET) -> str:
    return f"{statefulset}-0"


def pod_ready(pod) -> bool:
    return (pod.metadata.deletion_timestamp is None and pod.status.phase == "Running"
            and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []))


def require_running(target: Target, statefulset: str = STATEFULSET):
    """The database Pod, when it runs and is Ready; else a LabError that says why."""
    pod, namespace = pod_name(statefulset), target.namespace
    hint = (f"start it: `kubectl --context {target.kube_context} -n {namespace} scale statefulset/"
            f"{statefulset} --replicas=1` (or `lab deploy`), then try again")
    try:
        found = kube.core(target).read_namespaced_pod(pod, namespace, _request_timeout=20)
    except LabError:
        raise
    except ApiException as error:
        if error.status != 404:
            raise LabError(f"cannot read pod {pod} in {namespace}: {error.reason}") from error
        detail = ""
        try:
            sts = kube.apps(target).read_namespaced_stateful_set(statefulset, namespace)
            detail = f" (StatefulSet {statefulset} has {sts.spec.replicas} replicas)"
        except ApiException:
            detail = f" (there is no StatefulSet {statefulset} in {namespace})"
        raise LabError(f"the database is down: pod {pod} does not exist in {namespace}{detail}",
                       hint=hint) from None
    except Exception as error:  # noqa: BLE001 - refused, timed out, TLS: the cluster is not there
        raise LabError(f"the cluster {target.cluster!r} does not answer ({type(error).__name__})",
                       hint="start it with `lab cluster up`; `lab cluster status` shows its state") from error
    if not pod_ready(found):
        raise LabError(f"the database is down: pod {pod} in {namespace} is not Ready "
                       f"(phase {found.status.phase})", hint=hint)
    return found


def _secret_name(target: Target, statefulset: str) -> str:
    """The Secret the database's StatefulSet mounts its credentials from."""
    try:
        sts = kube.apps(target).read_namespaced_stateful_set(statefulset, target.namespace)
    except ApiException:
        return SECRET
    for volume in sts.spec.template.spec.volumes or []:
        if volume.secret is not None and volume.secret.secret_name:
            return volume.secret.secret_name
    return SECRET


def root_password(target: Target, statefulset: str = STATEFULSET) -> str:
    """The root password, from the database's Secret via the API. Never print it."""
    name, namespace = _secret_name(target, statefulset), target.namespace
    try:
        secret = kube.core(target).read_namespaced_secret(name, namespace)
    except ApiException as error:
        raise LabError(f"cannot read Secret {name} in {namespace}: {error.reason}",
                       hint="the database's credentials live there (key root-password)") from error
    value = (secret.data or {}).get(ROOT_PASSWORD_KEY)
    if not value:
        raise LabError(f"Secret {name} in {namespace} has no key {ROOT_PASSWORD_KEY}")
    password = base64.b64decode(value).decode()
    if "\n" in password:
        raise LabError(f"the root password in Secret {name} contains a newline; this tool cannot pass it")
    return password


def exec_cmd(target: Target, script: str, *args: str, statefulset: str = STATEFULSET,
             container: str = CONTAINER) -> list[str]:
    """kubectl exec of a bash script (with positional ``args``) in the database container; the
    script reads the password from the first line of stdin."""
    from lab.system.deploy import kubectl_cmd

    return kubectl_cmd(target, "exec", "-i", "-n", target.namespace, pod_name(statefulset), "-c", container, "--",
                       "bash", "-c", PASSWORD_FROM_STDIN + script, "lab-backup", *args)


@dataclass
class Database:
    """A database server in a namespace: its StatefulSet's Pod, reached by exec."""

    target: Target
    statefulset: str = STATEFULSET
    container: str = CONTAINER
    _password: str | None = field(default=None, repr=False)

    @property
    def namespace(self) -> str:
        return self.target.namespace

    @property
    def pod(self) -> str:
        return pod_name(self.statefulset)

    def password(self) -> str:
        if self._password is None:
            self._password = root_password(self.target, self.statefulset)
        return self._password

    def forget_password(self) -> None:
        """The Secret may have been recreated (disaster drill): read it again, log in again."""
        self._password = None
        _close_sessions(self)

    def require_running(self):
        return require_running(self.target, self.statefulset)

    def cmd(self, script: str, *args: str) -> list[str]:
        return exec_cmd(self.target, script, *args, statefulset=self.statefulset,
                        container=self.container)

    def sql(self, statements: str, database: str | None = None, timeout: float = 600) -> list[list[str]]:
        """Run SQL as root; the rows of the output (tab-separated, no header)."""
        with timing.tally("SQL"):
            lines = _request(self, statements, database, timeout)
        return [line.split("\t") for line in lines if line != ""]

    def prepare(self, database: str | None = None) -> threading.Thread:
        """Open (or check) the session to ``database`` in a background thread, while something
        else runs: the checkpoint after a student's own SQL then finds it open instead of paying
        for an exec and a login. Failures are left to whoever asks next, who reports them."""
        def open_session() -> None:
            try:
                self.sql("SELECT 1;", database=database, timeout=30)
            except Exception:  # noqa: BLE001 - the next real request opens its own and says why
                pass

        thread = threading.Thread(target=open_session, name="sql-session", daemon=True)
        thread.start()
        return thread

    def ping(self) -> bool:
        try:
            return self.sql("SELECT 1;", timeout=30) == [["1"]]
        except LabError:
            return False

    def user_databases(self) -> list[str]:
        rows = self.sql("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY 1;")
        return [r[0] for r in rows if r[0] not in SYSTEM_SCHEMAS]

    def database_exists(self, name: str) -> bool:
        return bool(self.sql(f"SELECT SCHEMA_NAME FROM information_schema.SCHEMATA "
                             f"WHERE SCHEMA_NAME = {quote_string(name)};"))

    def server_version(self) -> str:
        return self.sql("SELECT VERSION();")[0][0]


def quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _in_list(names: Iterable[str]) -> str:
    return ", ".join(quote_string(n) for n in names)


# --------------------------------------------------------------------------------------------
# What is in a database: tables, row counts, checksums, other objects


def table_stats(db: Database, databases: Sequence[str]) -> list[dict]:
    """Every base table of ``databases``: database, table, rows (COUNT(*)), checksum (CHECKSUM
    TABLE) and data_bytes (data + index length the server reports)."""
    if not databases:
        return []
    listing = db.sql("SELECT TABLE_SCHEMA, TABLE_NAME, COALESCE(DATA_LENGTH, 0) + COALESCE(INDEX_LENGTH, 0) "
                     "FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' "
                     f"AND TABLE_SCHEMA IN ({_in_list(databases)}) ORDER BY 1, 2;")
    if not listing:
        return []
    names = [f"{quote_identifier(s)}.{quote_identifier(t)}" for s, t, _ in listing]
    script = "".join(f"SELECT COUNT(*) FROM {n};\n" for n in names)
    script += "".join(f"CHECKSUM TABLE {n};\n" for n in names)
    rows = db.sql(script)
    if len(rows) != 2 * len(names):
        raise LabError(f"unexpected output counting the tables of {', '.join(databases)} "
                       f"({len(rows)} lines for {len(names)} tables)")
    found = []
    for i, (schema, table, data_bytes) in enumerate(listing):
        count = int(rows[i][0])
        checksum = rows[len(names) + i][-1]
        found.append({"database": schema, "table": table, "rows": count,
                      "checksum": None if checksum == "NULL" else int(checksum),
                      "data_bytes": int(data_bytes)})
    return found


def object_counts(db: Database, databases: Sequence[str]) -> dict[str, dict[str, int]]:
    """database -> {views, routines, triggers, events: how many}."""
    counts = {d: {k: 0 for k in OBJECT_KINDS} for d in databases}
    if not databases:
        return counts
    listed = _in_list(databases)
    queries = {
        "views": ("TABLE_SCHEMA", "VIEWS"),
        "routines": ("ROUTINE_SCHEMA", "ROUTINES"),
        "triggers": ("TRIGGER_SCHEMA", "TRIGGERS"),
        "events": ("EVENT_SCHEMA", "EVENTS"),
    }
    script = "".join(f"SELECT '{kind}', {column}, COUNT(*) FROM information_schema.{view} "
                     f"WHERE {column} IN ({listed}) GROUP BY {column};\n"
                     for kind, (column, view) in queries.items())
    for kind, schema, n in db.sql(script):
        counts.setdefault(schema, {k: 0 for k in OBJECT_KINDS})[kind] = int(n)
    return counts


def database_charsets(db: Database, databases: Sequence[str]) -> dict[str, dict[str, str]]:
    rows = db.sql("SELECT SCHEMA_NAME, DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
                  f"FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN ({_in_list(databases)});")
    return {s: {"character_set": c, "collation": k} for s, c, k in rows}




# --------------------------------------------------------------------------------------------
# Sessions: one mysql client per database Pod, over one exec


class _ClientEnded(Exception):
    """The session's client exited (a failed statement ends it) or its exec closed."""

    def __init__(self, stderr: str, status: str):
        super().__init__(stderr or status)
        self.stderr, self.status = stderr, status


class _NotSent(Exception):
    """The request could not be written: nothing ran, so it may be sent down a new session."""


class _Session:
    def __init__(self, db: Database, database: str | None):
        from kubernetes import client
        from kubernetes.stream import stream

        self.lock = threading.Lock()
        # stream() swaps the ApiClient's transport while it connects, so every exec gets its own.
        self._api = client.ApiClient(kube.api_client(db.target).configuration)
        try:
            self._ws = stream(client.CoreV1Api(self._api).connect_get_namespaced_pod_exec, db.pod, db.namespace,
                              container=db.container,
                              command=["bash", "-c", PASSWORD_FROM_STDIN + _CLIENT, "lab-sql", database or ""],
                              stdin=True, stdout=True, stderr=True, tty=False, binary=True,
                              _preload_content=False)
            self._ws.write_stdin((db.password() + "\n").encode())
        except LabError:
            self.close()
            raise
        except Exception as error:  # noqa: BLE001 - no Pod, not running, the API server refused
            self.close()
            raise LabError(f"cannot reach the database in {db.namespace}/{db.pod}: "
                           f"{type(error).__name__}: {str(error)[:300]}", hint=_down_hint(db)) from error
        # Rows never equal this by chance, so it can end every request's output.
        self._marker = f"k8s-lab-end-{uuid.uuid4().hex}"
        self._requests = itertools.count(1)
        self._served = False
        self.used = time.monotonic()

    def usable(self) -> bool:
        """Open, and either used within SESSION_IDLE_S or answering a ping now."""
        if self._ws is None:
            return False
        try:
            self._ws.update(timeout=0)
        except Exception:  # noqa: BLE001 - the connection broke: a new session is made instead
            return False
        if not self._ws.is_open():
            return False
        if not self._served or time.monotonic() - self.used <= SESSION_IDLE_S:
            return True
        try:
            return self.ask("SELECT 1;", PING_TIMEOUT_S) == ["1"]
        except (_NotSent, _ClientEnded, TimeoutError):
            return False

    def ask(self, statements: str, timeout: float) -> list[str]:
        """The output lines of ``statements``; _ClientEnded when the client exited on the way."""
        marker = f"{self._marker}-{next(self._requests)}".encode()
        text = statements.rstrip()
        # A closing ";" keeps the marker query a statement of its own; after a trailing comment it
        # lands inside the comment, where it does no harm.
        if not text.endswith(";"):
            text += ";"
        try:
            self._ws.write_stdin(text.encode() + b"\nSELECT '" + marker + b"';\n")
        except Exception as error:  # noqa: BLE001 - the connection broke before the request left
            self.close()
            raise _NotSent from error
        out, err, status = bytearray(), bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        while True:
            self._ws.update(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            out += self._ws.read_channel(1)
            err += self._ws.read_channel(2)
            status += self._ws.read_channel(3)
            # Reading an empty channel takes whatever frames have arrived off the socket: stdout
            # among them must be read now, not after the next update has waited a second for
            # frames that already came.
            out += self._ws.read_channel(1)
            lines = out.split(b"\n")
            if marker in lines[:-1]:
                self._served, self.used = True, time.monotonic()
                return [line.decode(errors="replace") for line in lines[:lines.index(marker)]]
            if not self._ws.is_open():
                self.close()
                raise _ClientEnded(err.decode(errors="replace").strip(), status.decode(errors="replace"))
            if time.monotonic() >= deadline:
                self.close()
                raise TimeoutError

    def close(self) -> None:
        ws, self._ws = getattr(self, "_ws", None), None
        if ws is not None:
            ws.close()  # the client reads end-of-input and exits
        api, self._api = self._api, None
        if api is not None:
            api.close()


_sessions: dict[tuple, _Session] = {}
_sessions_lock = threading.Lock()
# One lock per session key while its session is being opened (an exec and a login): a slow one
# (a Pod just restarted, a student's namespace in `lab grade --live`) holds up only the requests
# that wait for that session, not every other database's.
_opening: dict[tuple, threading.Lock] = {}


def _session_key(db: Database, database: str | None) -> tuple:
    target = db.target
    return (str(target.kubeconfig), target.kube_context, db.namespace, db.pod, db.container, database or "")


def _close_sessions(db: Database) -> None:
    with _sessions_lock:
        for key in [k for k in _sessions if k[:5] == _session_key(db, None)[:5]]:
            _sessions.pop(key).close()


def _session(db: Database, database: str | None) -> _Session:
    key = _session_key(db, database)
    with _sessions_lock:
        if key in _sessions:
            return _sessions[key]
        opening = _opening.setdefault(key, threading.Lock())
    with opening:
        with _sessions_lock:
            if key in _sessions:  # opened by the thread this one waited for
                return _sessions[key]
        session = _Session(db, database)
        with _sessions_lock:
            _sessions[key] = session
            _opening.pop(key, None)  # threads waiting on it hold their own reference
        return session


def _request(db: Database, statements: str, database: str | None, timeout: float) -> list[str]:
    # A session found idle or closed is replaced, and a request it could not send goes down the
    # new one; the third session in a row that cannot take it is an error.
    for _ in range(3):
        try:
            return _ask(db, database, statements, timeout)
        except _NotSent:
            continue
    raise LabError(f"cannot send SQL to {db.namespace}/{db.pod}: the connection closed each time",
                   hint=_down_hint(db))


def _down_hint(db: Database) -> str:
    return f"is the database up? `lab backup` needs pod {db.pod} Ready in {db.namespace}"


def _ask(db: Database, database: str | None, statements: str, timeout: float) -> list[str]:
    session = _session(db, database)
    where = f"{db.namespace}/{db.pod}"
    # Whether a session still serves is asked under its lock: looking at its connection while
    # another thread reads an answer from it would take that answer's frames.
    with session.lock:
        if not session.usable():
            _forget(db, database, session)
            session.close()
            raise _NotSent
        try:
            return session.ask(statements, timeout)
        except _NotSent:
            _forget(db, database, session)
            raise
        except _ClientEnded as ended:
            _forget(db, database, session)
            detail = _server_errors(ended.stderr) or _exit_status(ended.status) or "the connection closed"
            # The password this session logged in with (the Secret may be gone by now: a drill).
            raise LabError(f"SQL in {where} failed: {runner.redact(detail, [db._password or ''])[-1500:]}",
                           hint=_down_hint(db)) from None
        except TimeoutError:
            _forget(db, database, session)
            raise LabError(f"SQL in {where} did not finish within {timeout:g}s",
                           hint=f"a long query or a locked table: `kubectl -n {db.namespace} exec {db.pod} -- "
                                f"mysqladmin -uroot -p processlist` shows what runs") from None


def _forget(db: Database, database: str | None, session: _Session) -> None:
    with _sessions_lock:
        key = _session_key(db, database)
        if _sessions.get(key) is session:
            del _sessions[key]


def _server_errors(stderr: str) -> str:
    """The client's ERROR lines, without the statement it echoes around them nor its line count
    (a line of the whole session, not of the request)."""
    errors = [re.sub(r" at line \d+", "", line) for line in stderr.splitlines() if line.startswith("ERROR")]
    return "; ".join(errors) or stderr


def _exit_status(status: str) -> str:
    """The exec's status channel, as one line (it holds the exit code when the client failed)."""
    import json

    try:
        return json.loads(status).get("message", "")
    except (ValueError, AttributeError):
        return status.strip()
