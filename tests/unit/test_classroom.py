"""The classroom's objects and roster, without a cluster (tests/cluster/test_classroom.py proves
the isolation on a real one)."""
from __future__ import annotations

import pytest

from lab.cluster import classroom
from lab.errors import LabError


def rules_of(kind: str, objects: list[dict]) -> list[dict]:
    return next(o for o in objects if o["kind"] == kind)["rules"]


def test_a_student_gets_a_namespace_with_everything_the_multi_tenancy_recipe_asks_for():
    objects = classroom.objects(classroom.Student("ann"))
    kinds = {o["kind"]: o for o in objects}
    assert set(kinds) == {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding",
                          "ResourceQuota", "LimitRange", "NetworkPolicy", "PersistentVolume"}
    labels = kinds["Namespace"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline" and labels[classroom.LABEL] == "student"
    assert all(o["metadata"]["namespace"] == "student-ann" for o in objects
               if o["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"))
    # Each volume on a host directory of its own: another student's backups hold their data.
    volumes = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "PersistentVolume"}
    assert {name: (spec["claimRef"], spec["hostPath"]["path"]) for name, spec in volumes.items()} == {
        "k8s-lab-database-data-student-ann": ({"namespace": "student-ann", "name": "data-database-0"},
                                              "/var/local/k8s-lab/pv/database-student-ann"),
        "k8s-lab-backups-student-ann": ({"namespace": "student-ann", "name": "database-backups"},
                                        "/var/local/k8s-lab/backups-student-ann")}
    policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
    # Other students are kept out by a policy that admits no Pod of the class (but the nodes, by
    # which this machine reaches a node port), the namespace's own Pods by another, which the
    # student may delete (the lab's policies then decide inside it).
    assert policies[classroom.ISOLATION_POLICY] == {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [
        {"from": [{"namespaceSelector": {"matchExpressions": [{"key": classroom.LABEL, "operator": "DoesNotExist"}]}},
                  {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.244.0.0/16"]}}]}]}
    assert policies[classroom.OPEN_POLICY] == {"podSelector": {}, "policyTypes": ["Ingress"],
                                               "ingress": [{"from": [{"podSelector": {}}]}]}


def test_the_isolation_admits_everything_outside_the_pod_networks_of_each_family():
    [isolation] = [o for o in classroom.objects(classroom.Student("ann"), networks=["10.1.0.0/16", "fd00:1::/56"])
                   if o["metadata"]["name"] == classroom.ISOLATION_POLICY]
    assert isolation["spec"]["ingress"][0]["from"][1:] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.1.0.0/16"]}},
                                                           {"ipBlock": {"cidr": "::/0", "except": ["fd00:1::/56"]}}]


def test_the_cluster_role_only_reads_and_only_names_its_own_things():
    rules = rules_of("ClusterRole", classroom.objects(classroom.Student("ann")))
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in rules)
    named = {r["resources"][0]: r.get("resourceNames") for r in rules}
    assert named == {"nodes": None, "storageclasses": None, "namespaces": ["kube-system", "student-ann"],
                     "persistentvolumes": ["k8s-lab-database-data-student-ann", "k8s-lab-backups-student-ann"]}


def test_the_role_cannot_lift_the_classroom_quota_or_policy():
    rules = rules_of("Role", classroom.objects(classroom.Student("ann")))
    for resource, names in (("resourcequotas", classroom.LAB_QUOTA_NAMES),
                            ("networkpolicies", [*classroom.LAB_POLICY_NAMES, classroom.OPEN_POLICY,
                                                 *classroom.config.CANARY_POLICIES])):
        writes = [r for r in rules if resource in r["resources"] and {"update", "patch", "delete"} & set(r["verbs"])]
        assert writes and all(r.get("resourceNames") == names for r in writes)
        assert classroom.QUOTA_NAME not in names and classroom.ISOLATION_POLICY not in names
    assert not any("namespaces" in r["resources"] or "*" in r["verbs"] for r in rules)



def test_the_kubeconfig_holds_one_context_named_like_the_labs_and_a_token():
    config = classroom.kubeconfig(classroom.Student("ann"), "TOKEN", {"server": "https://127.0.0.1:1"})
    assert config["users"] == [{"name": "student-ann", "user": {"token": "TOKEN"}}]
    assert [c["context"]["namespace"] for c in config["contexts"]] == ["student-ann"]
    assert config["current-context"] == config["contexts"][0]["name"] == classroom.config.KUBE_CONTEXT


@pytest.mark.parametrize("text, words", [
    ("name\nann\n", "no `student` column"),
    ("student\nAnn\n", "line 2: 'Ann' is not an id"),
    ("student\nann\nann\n", "line 3: 'ann' appears twice"),
    ("student\n\n", "lists no students"),
    ("student\n" + "a" * 60 + "\n", "at most 55 characters"),
])
def test_bad_rosters_say_which_line(tmp_path, text, words):
    (tmp_path / "r.csv").write_text(text)
    with pytest.raises(LabError) as error:
        classroom.read_roster(tmp_path / "r.csv")
    assert words in error.value.message


def test_submission_names_become_unique_ids():
    students = [classroom.Student("ann-lee", "Ann Lee", "al@example.org")]
    assert classroom.ids_for(["Ann_Lee_1234.zip", "Zoe Q", "zoe-q"], students) == {
        "Ann_Lee_1234.zip": "ann-lee", "Zoe Q": "zoe-q", "zoe-q": "zoe-q-2"}


def test_classroom_status_reads_the_cluster_its_context_names(monkeypatch):
    """`lab classroom status`'s table: one row per student, from the cluster of the given context."""
    import types

    from lab.cluster import kube
    from lab.grading import grade
    from lab.target import Target

    asked = []

    def pod(phase):
        return types.SimpleNamespace(status=types.SimpleNamespace(phase=phase))

    class Core:
        def list_namespace(self, label_selector, **kwargs):
            assert label_selector == f"{classroom.LABEL}=student"
            return types.SimpleNamespace(items=[types.SimpleNamespace(
                metadata=types.SimpleNamespace(name="student-ann"), status=types.SimpleNamespace(phase="Active"))])

        def list_namespaced_pod(self, namespace, **kwargs):
            assert namespace == "student-ann"
            return types.SimpleNamespace(items=[pod("Running"), pod("Pending")])

    monkeypatch.setattr(kube, "core", lambda target: asked.append(target) or Core())
    monkeypatch.setattr(grade, "live_gradebook",
                        lambda namespaces, context=None, jobs=4: types.SimpleNamespace(submissions=[]))
    frame = grade.classroom_status([classroom.Student("ann"), classroom.Student("bob")], context="kind-grading")
    assert asked == [Target.for_context("kind-grading")]
    assert frame.to_dict("records") == [
        {"student": "ann", "name": "", "namespace": "student-ann", "state": "Active", "pods": "1/2",
         "checks": "", "points": ""},
        {"student": "bob", "name": "", "namespace": "student-bob", "state": "missing", "pods": "0/0",
         "checks": "", "points": ""},
    ]
