"""The cached API client follows the kubeconfig: a cluster recreated by another process (a notebook
run that grows the cluster, `lab cluster up --recreate` in a shell) gets a new API port, and a
client made before must not keep calling the old one."""
from __future__ import annotations

import os

import yaml

from lab.cluster import kube
from lab.target import Target


def write_kubeconfig(path, port: int) -> None:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kind-demo",
        "clusters": [{"name": "kind-demo", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                       "insecure-skip-tls-verify": True}}],
        "users": [{"name": "kind-demo", "user": {"token": "t"}}],
        "contexts": [{"name": "kind-demo", "context": {"cluster": "kind-demo", "user": "kind-demo"}}],
    }))


def test_a_rewritten_kubeconfig_gives_a_client_for_the_new_server(tmp_path):
    path = tmp_path / "config"
    target = Target("demo", kubeconfig=path)
    write_kubeconfig(path, 38801)
    first = kube.api_client(target)
    assert kube.api_client(target) is first  # unchanged file: the same client, no re-parsing
    write_kubeconfig(path, 40123)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a coarse clock must not hide it
    assert kube.api_client(target).configuration.host == "https://127.0.0.1:40123"
    assert first.configuration.host == "https://127.0.0.1:38801"


def test_exec_status_tells_an_exit_code_from_a_command_that_never_ran():
    assert kube.exec_status("") == (0, "")
    assert kube.exec_status('{"metadata":{},"status":"Success"}') == (0, "")
    assert kube.exec_status('{"status":"Failure","reason":"NonZeroExitCode","message":"exit 2",'
                            '"details":{"causes":[{"reason":"ExitCode","message":"2"}]}}') == (2, "")
    code, problem = kube.exec_status('{"status":"Failure","message":"exec: \\"bash\\": executable file not found"}')
    assert code is None and "executable file not found" in problem
    assert kube.exec_status("not json") == (None, "not json")
