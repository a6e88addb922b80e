#!/usr/bin/env bash
# The cluster work of the reference notebooks (notebooks/src/00..09, 99) with kubectl, helm, kind,
# docker and a shell: the baseline of bench/bench_lab.py. Each "== NN name" section does, in the
# notebook's order and number, its applies (the manifests/ files the notebooks' objects equal),
# waits, probes, SQL, dumps, restores, helm installs/upgrades/rollbacks, node labels, scaling and
# 01's/09's conditional cluster (re)creation. Left out: checkpoints and their evidence, plots,
# tables, the students' TODO cells, the lab's guards (prerequisites, "finish step N first", image
# and label safety checks), its progress lines, and Python itself (the lab's API reads and
# websocket execs are kubectl calls here). Like 99 it leaves the namespace empty (deleted, with
# the database's volume; 05's outside namespace and its probe Pod stay, as in the lab).
# Env: KIT_BIN (one dir with kubectl, helm, kind; default: the lab cache, as lab/host/tools.py
# finds them), CONTEXT (kind-$LAB_CLUSTER, else kind-k8s-lab), CLUSTER (the kind cluster, from CONTEXT),
# NS (k8s-assignment), LAB_IMAGE_MODE, LAB_DATA_DIR, LAB_WEB_HOST_PORT.
# Prints "NN name SECONDS" per section, then "total SECONDS".
# shellcheck disable=SC2016  # single-quoted $1/$MYSQL_PWD expand in the Pods' shells
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd) CHART=$REPO/chart  # assignments run left to right
CONTEXT=${CONTEXT:-kind-${LAB_CLUSTER:-k8s-lab}} NS=${NS:-k8s-assignment}
CLUSTER=${CLUSTER:-${CONTEXT#kind-}} CACHE=${LAB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/k8s-lab} NODE_DATA=/var/local/k8s-lab
DATA_DIR=$CACHE/data-$CLUSTER; [[ $CLUSTER != k8s-lab ]] || DATA_DIR=$CACHE/data  # lab/config.py data_dir()
[[ -z ${LAB_DATA_DIR:-} || $CLUSTER != "${LAB_CLUSTER:-k8s-lab}" ]] || DATA_DIR=$LAB_DATA_DIR
OUTSIDE=$NS-outside CANARY=k8s-lab-canary
[[ $NS == k8s-assignment ]] || CANARY=${CANARY}-$NS
WEB_SEL=app.kubernetes.io/name=k8s-lab,app.kubernetes.io/instance=k8s-lab,app.kubernetes.io/component=web
WATCH_SEL=app.kubernetes.io/component=watcher GO_SEL=app.kubernetes.io/component=watcher-go
TMP=$(mktemp -d) && trap 'rm -rf "$TMP"' EXIT
exec 3>&1 >/dev/null  # command output is not shown (the lab prints it); errors stay on stderr
die() { echo "same_work.sh: $*" >&2; exit 1; }
tool() {  # KIT_BIN, else lab/host/tools.py's cache (downloaded, then built from Go), else PATH
  local c; for c in ${KIT_BIN:+"$KIT_BIN/$1"} "$CACHE/tools/$1-$3/$1" "$CACHE"/bin/"$2"-*/"$1"; do
    [[ -x $c ]] && { echo "$c"; return; }; done; command -v "$1" || die "no $1 (set KIT_BIN)"; }
KUBECTL=$(tool kubectl kubernetes-v1.34.4 v1.34.4); HELM=$(tool helm helm-v3.19.5 v3.19.5); KIND=$(tool kind kind-v0.30.0 v0.30.0)
PATH=$(dirname "$KUBECTL"):$(dirname "$HELM"):$(dirname "$KIND"):$PATH  # kind calls kubectl, as in the lab
k() { "$KUBECTL" --context "$CONTEXT" -n "$NS" "$@"; }
kn() { "$KUBECTL" --context "$CONTEXT" "$@"; }
h() { "$HELM" --kube-context "$CONTEXT" --namespace "$NS" "$@"; }
quiet() { "$@" 2>/dev/null; }
has() { grep "$@" >/dev/null; }  # not grep -q: with pipefail its early exit fails the writer
poll() {  # SECONDS INTERVAL CMD...: nb.wait_for, which polls a condition until it holds
  local end=$((SECONDS + $1)) every=$2; shift 2
  until "$@"; do ((SECONDS < end)) || die "timed out: $*"; sleep "$every"; done; }
gone() { [[ -z $(k get "$@" --ignore-not-found -o name) ]]; }
now() { date -u +%Y-%m-%dT%H:%M:%S.%3NZ; }  # the watchers' time format, so strings compare
# Images as lab/build/images.py names them: "auto" asks whether a registry answers. Only the
# database's differs by mode; render() substitutes it in the manifests with sed, helm gets --set.
MODE=${LAB_IMAGE_MODE:-auto}
if [[ $MODE == auto ]]; then if curl -s -o /dev/null -m 3 -I https://registry-1.docker.io/v2/; then MODE=online; else MODE=offline; fi; fi
IMG_PROBE=k8s-lab/probe:1 LOAD=(k8s-lab/web:1 k8s-lab/probe:1 k8s-lab/watcher:1 k8s-lab/watcher-go:1)
if [[ $MODE == online ]]; then IMG_DB=mysql:8.4 NODE_IMAGE=kindest/node:v1.34.0
else IMG_DB=k8s-lab/mariadb:lab NODE_IMAGE=k8s-lab/node:v1.34.4 LOAD+=(k8s-lab/mariadb:lab); fi
SET=(--set "database.image=$IMG_DB" --set web.image=k8s-lab/web:1 --set watcher.daemonset.image=k8s-lab/watcher:1 --set "tests.image=$IMG_PROBE")
# The Secret's passwords come from the lab's credentials file (lab/system/credentials.py), made
# the same way when missing: the database files on the host only open with these.
CREDS=$DATA_DIR/credentials/$NS.json
gen() { local s; s=$(LC_ALL=C tr -dc A-Za-z0-9 < <(head -c 2048 /dev/urandom)); echo "${s:0:32}"; }
if [[ ! -s $CREDS ]]; then mkdir -p "${CREDS%/*}"; chmod 700 "${CREDS%/*}"
  (umask 077; printf '{\n  "backup-password": "%s",\n  "password": "%s",\n  "root-password": "%s"\n}\n' "$(gen)" "$(gen)" "$(gen)" >"$CREDS"); fi
cred() { sed -n "s/^ *\"$1\": \"\([A-Za-z0-9]*\)\".*/\1/p" "$CREDS"; }
PW_ROOT=$(cred root-password) PW_APP=$(cred password) PW_BACKUP=$(cred backup-password)
secret() { k get secret database-credentials -o "jsonpath={.data.$1}" | base64 -d; }  # as a shell user reads it
render() { local f; for f in "$@"; do echo ---; sed -e "s#image: k8s-lab/mariadb:lab#image: $IMG_DB#" -e "s/k8s-assignment/$NS/g" "$REPO/manifests/$f"; done; }
apply() { render "$@" | k apply -f -; }
secret_yaml() {  # nb.apply's credentials.fill, in bash (no password on a command line)
  local y; y=$(<"$REPO/manifests/02-database/secret.yaml"); y=${y//root-password: \"\"/root-password: \"$PW_ROOT\"}
  y=${y//backup-password: \"\"/backup-password: \"$PW_BACKUP\"}; y=${y//password: \"\"/password: \"$PW_APP\"}; echo "${y//k8s-assignment/$NS}"; }
hostdir() { echo "mkdir -p $NODE_DATA/$1 && chown 999:999 $NODE_DATA/$1 && chmod $2 $NODE_DATA/$1"; }
hostdirs() {  # lab/system/hostdirs.py: the volumes' host directories to uid 999 (no Pod may be root)
  docker exec "$CLUSTER-control-plane" sh -c "$(hostdir pv/database 0750)${1:+ && $(hostdir backups 0755)}"; }
prepare_for_helm() {  # lab.system.deploy.prepare_for_helm: Pod Security labels (helm must not own the namespace), dirs
  local labels; mapfile -t labels < <(h template k8s-lab "$CHART" --set namespace.create=true "${SET[@]}" "$@" |
    sed -n 's/^ *\(pod-security\.kubernetes\.io\/[a-z-]*\): *"\{0,1\}\([a-z0-9.]*\)"\{0,1\}$/\1=\2/p' | sort -u)
  kn get namespace "$NS" >/dev/null 2>&1 || kn create namespace "$NS"
  kn label namespace "$NS" --overwrite "${labels[@]}"; hostdirs all; }
helm_up() {  # nb.helm_upgrade: $1 install|upgrade, $2 timeout, then values (--set, -f)
  local how=$1 t=$2 opts=(--hide-notes); shift 2; [[ $how == upgrade ]] || opts=(--install --create-namespace)
  prepare_for_helm "$@"; h upgrade k8s-lab "$CHART" "${opts[@]}" --history-max 5 "${SET[@]}" "$@" --wait --timeout "${t}s"; }
nodes_ready() { local s; s=$(kn get nodes --no-headers 2>/dev/null) || return 1; [[ $(grep -c . <<<"$s") -ge $1 && -z $(awk '$2 != "Ready"' <<<"$s") ]]; }
create_cluster() {  # $1 workers: lab.cluster.kind.render_config, kind create, nodes and DNS ready
  local mount="  extraMounts: [{hostPath: $DATA_DIR, containerPath: $NODE_DATA}]" w; mkdir -p "$DATA_DIR"
  { printf 'kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking: {podSubnet: 10.244.0.0/16, serviceSubnet: 10.96.0.0/16}\n'
    (( (16#$(awk '/^CapBnd/ {print $2}' /proc/self/status) >> 24) & 1 )) ||  # no CAP_SYS_RESOURCE: kind.py's patch
      printf 'containerdConfigPatches:\n- |\n  [plugins."io.containerd.grpc.v1.cri"]\n    restrict_oom_score_adj = true\n'
    printf 'nodes:\n- role: control-plane\n'; (($1)) || echo '  labels: {k8s-lab/database: "true"}'
    echo "  extraPortMappings: [{containerPort: 30080, hostPort: ${LAB_WEB_HOST_PORT:-30080}, listenAddress: 127.0.0.1, protocol: TCP}]"
    echo "$mount"; for ((w = 1; w <= $1; w++)); do echo "- role: worker"; ((w > 1)) || echo '  labels: {k8s-lab/database: "true"}'; echo "$mount"; done
  } >"$TMP/kind.yaml"
  "$KIND" create cluster --name "$CLUSTER" --image "$NODE_IMAGE" --config "$TMP/kind.yaml" --wait 0s
  poll 300 2 nodes_ready $(($1 + 1)); poll 300 2 quiet kn -n kube-system wait --for=condition=Ready pod -l k8s-app=kube-dns --timeout=5s; }
pod_up() { local s; s=$(k get pod "$1" -o jsonpath='{.metadata.uid} {.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) || return 1; [[ $s != "${2:-none} "* && $s == *" True" ]]; }
mysql_as() {  # nb.mysql: SQL on stdin as Secret key $1's account (or root), password key $2, database lab
  local user=root; [[ $1 == root ]] || user=$(secret "$1")
  { secret "$2"; echo; cat; } | k exec -i database-0 -c database -- sh -c 'IFS= read -r MYSQL_PWD && export MYSQL_PWD && exec mysql --batch --user="$1" "$2"' sh "$user" lab; }
# Network probes as lab/ops/probe.py makes them: one exec per source Pod, its connects in parallel.
PROBE_FN='p(){ m=$(LC_ALL=C timeout -k 1 "$T" bash -c "exec 3<>/dev/tcp/$2/$3" 2>&1); r=$?; case $r in 0) o=connected;; 124|137) o=timeout;; *) case $m in *refused*) o=refused;; *"timed out"*) o=timeout;; *unreachable*|*"No route"*) o=unreachable;; *) o=error;; esac;; esac; d=; case $o in error|unreachable) d=$m;; esac; echo "$1 $o" $d; }'
probe_once() {  # cells "ns pod container host port expected" on stdin; prints the wrong ones
  local cells ns pod ctr host port want calls; cells=$(cat)
  while read -r ns pod ctr; do calls=$(awk -v p="$pod" '$2 == p { printf "p %s:%s %s %s & ", $4, $5, $4, $5 }' <<<"$cells")
    timeout 19 "$KUBECTL" --context "$CONTEXT" -n "$ns" exec "$pod" -c "$ctr" -- bash -c "set -f; T=1.5; $PROBE_FN; ${calls}wait" \
      >"$TMP/probe-$pod" 2>/dev/null &  # 19 s: the lab's exec timeout for up to 16 connects
  done < <(cut -d' ' -f1-3 <<<"$cells" | sort -u); wait
  while read -r ns pod ctr host port want; do
    [[ $(awk -v c="$host:$port" '$1 == c { print $2 }' "$TMP/probe-$pod") == "$want" ]] || echo "$ns $pod $ctr $host $port $want"; done <<<"$cells"; }
matrix() {  # probe.matrix: wrong cells again for $1 s, then a last look; fails when some stay wrong
  local wrong end=$((SECONDS + $1)); wrong=$(probe_once)
  while [[ -n $wrong ]] && ((SECONDS < end)); do sleep 0.5; wrong=$(probe_once <<<"$wrong"); done
  [[ -z $wrong ]] || wrong=$(probe_once <<<"$wrong"); [[ -z $wrong ]]; }
probe_pod() {  # NS NAME LABELS [server]: probe_pod_manifest, made when missing (same spec digest, so the lab reuses it)
  local digest cmd='[sleep, infinity]' ports='[]'; digest=$(printf '[{%s}, "%s"]' "$3" "$IMG_PROBE" | sha256sum)
  [[ -z ${4:-} ]] || cmd='[nc, -lk, -p, "8080"]' ports='[{containerPort: 8080}]'
  kn -n "$1" get pod "$2" >/dev/null 2>&1 || kn -n "$1" create -f - <<EOF
{apiVersion: v1, kind: Pod, metadata: {name: $2, labels: {$3}, annotations: {k8s-lab.probe/spec: "${digest:0:16}"}},
 spec: {terminationGracePeriodSeconds: 1, automountServiceAccountToken: false, enableServiceLinks: false,
  securityContext: {seccompProfile: {type: RuntimeDefault}}, containers: [{name: probe, image: $IMG_PROBE,
  imagePullPolicy: IfNotPresent, command: $cmd, ports: $ports, resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 200m, memory: 64Mi}},
  securityContext: {runAsNonRoot: true, runAsUser: 65534, runAsGroup: 65534, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}}]}}
EOF
}
lab_cells() {  # 05's matrix: web Pods, other, backup, outside x database:3306, web:80, database Pod:8080
  local db web dbpod ns pod ctr grp; db=$(k get service database -o jsonpath='{.spec.clusterIP}')
  web=$(k get service web -o jsonpath='{.spec.clusterIP}'); dbpod=$(k get pod database-0 -o jsonpath='{.status.podIP}')
  while read -r ns pod ctr grp; do local a=timeout; [[ $1 == open || $grp == web || $grp == backup ]] && a=connected
    echo "$ns $pod $ctr $db 3306 $a"; echo "$ns $pod $ctr $web 80 connected"; [[ $1 == open ]] && a=refused || a=timeout; echo "$ns $pod $ctr $dbpod 8080 $a"
  done < <(web_pods | sed "s/.*/$NS & nginx web/"; printf '%s\n' "$NS probe-other-0 probe other" "$NS probe-backup-0 probe backup" "$OUTSIDE probe-outside-0 probe outside"); }
web_db_dropped() { local db; db=$(k get service database -o jsonpath='{.spec.clusterIP}'); web_pods | sed "s/.*/$NS & nginx $db 3306 timeout/" | matrix 0; }
canary() {  # probe.canary: server and client Pods, connected -> timeout under a deny-all policy -> connected
  local t srv ip ns=(-n "$CANARY"); t=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n'); srv=canary-server-$t
  kn get namespace "$CANARY" >/dev/null 2>&1 || kn create namespace "$CANARY"
  probe_pod "$CANARY" "$srv" "\"k8s-lab.probe/canary\": \"$t\", \"k8s-lab.probe/managed\": \"true\", \"k8s-lab.probe/role\": \"server\", \"k8s-lab.probe/source\": \"$srv\"" server
  probe_pod "$CANARY" "probe-canary-$t-0" "\"k8s-lab.probe/canary\": \"$t\", \"k8s-lab.probe/managed\": \"true\", \"k8s-lab.probe/role\": \"client\", \"k8s-lab.probe/source\": \"canary-$t\""
  kn "${ns[@]}" wait --for=condition=Ready "pod/probe-canary-$t-0" "pod/$srv" --timeout=120s; ip=$(kn "${ns[@]}" get pod "$srv" -o jsonpath='{.status.podIP}')
  echo "$CANARY probe-canary-$t-0 probe $ip 8080 connected" | matrix 15 || die "canary: no connection without a policy"
  kn "${ns[@]}" create -f - <<<"{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: canary-deny-$t}, spec: {podSelector: {matchLabels: {k8s-lab.probe/canary: \"$t\", k8s-lab.probe/role: server}}, policyTypes: [Ingress]}}"
  for _ in 1 2; do echo "$CANARY probe-canary-$t-0 probe $ip 8080 timeout" | matrix 15 || die "canary: NetworkPolicy is not enforced"; done
  kn "${ns[@]}" delete networkpolicy "canary-deny-$t"; echo "$CANARY probe-canary-$t-0 probe $ip 8080 connected" | matrix 15 || die "canary: no connection after the policy"
  kn delete namespace "$CANARY" --wait=false; }
web_pods() { k get pods -l "$WEB_SEL" --field-selector=status.phase=Running -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'; }
oldest_web() { k get pods -l "$WEB_SEL" --sort-by=.metadata.creationTimestamp -o jsonpath='{.items[0].metadata.name}'; }
settled() { [[ $(k get deployment web -o jsonpath='{.status.readyReplicas}/{.status.updatedReplicas}/{.status.replicas}') == "$1/$1/$1" && $(k get pods -l "$WEB_SEL" -o name | grep -c .) -eq $1 ]]; }
replaced() { ! k get pod "$1" 2>/dev/null && settled "$2"; }
logs_of() { k logs -l "$1" -c watcher --tail=-1 --max-log-requests=10 "${@:2}"; }
snapshots() {  # Pods labelled $1 that printed their "snapshot" status line: all of them, or at least $2
  local p n=0 s=0; for p in $(k get pods -l "$1" -o name); do n=$((n + 1)); k logs "$p" -c watcher | has '"status":"snapshot"' && s=$((s + 1)); done; ((n && s >= ${2:-n})); }
deleted_logged() { local l p; l=$(logs_of "$WATCH_SEL" --since-time="$1") || return 1; for p in "${@:2}"; do has -E "\"type\":\"(DELETED|RESYNC)\",\"change\":(null|\"DELETED\").*\"pod\":\"$p\"" <<<"$l" || return 1; done; }
transitions() {  # "pod type resourceVersion" of the web Pods' changes since $1 in the logs of the Pods labelled $2
  logs_of "$2" | sed -n 's/^{"time":"\([^"]*\)","type":"\(ADDED\|MODIFIED\|DELETED\)".*"pod":"\(web-[^"]*\)".*"resource_version":"\([^"]*\)".*/\1 \3 \2 \4/p' |
    awk -v since="$1" '$1 >= since { print $2, $3, $4 }' | sort -u; }
same_transitions() { local py go; py=$(transitions "$1" "$WATCH_SEL") && go=$(transitions "$1" "$GO_SEL") && has "^$2 DELETED " <<<"$py" && has "^$2 DELETED " <<<"$go" && [[ $py == "$go" ]]; }
owners() {  # notebook.ownership: "kind/name create|owned|adopt" for each chart object
  local o s; for o in "${OBJS[@]}"; do s=$(k get "$o" --ignore-not-found -o jsonpath='{.metadata.labels.app\.kubernetes\.io/managed-by}/{.metadata.annotations.meta\.helm\.sh/release-name}/{.metadata.annotations.meta\.helm\.sh/release-namespace}')
    if [[ -z $s ]]; then echo "$o create"; elif [[ $s == "Helm/k8s-lab/$NS" ]]; then echo "$o owned"; else echo "$o adopt"; fi; done; }
revisions() { h history k8s-lab --output json | grep -o '"revision":[0-9]*' | cut -d: -f2; }
# Backups as lab/ops/backup.py makes them: every SQL is a kubectl exec as root, password on stdin.
rootx() { local s=$1; shift; k exec -i database-0 -c database -- bash -c "IFS= read -r MYSQL_PWD || exit 90; export MYSQL_PWD; set -o pipefail; $s" lab-backup "$@"; }
rsql() { { printf '%s\n' "$ROOTPW"; cat; } | rootx 'exec mysql --user=root --batch --skip-column-names --default-character-set=utf8mb4'; }
exists() { rsql <<<"SELECT SCHEMA_NAME FROM information_schema.SCHEMATA;" | has -x "$1"; }
stats() {  # table_stats + object_counts of database $1: "table rows checksum" lines, then the object counts
  local t q='' tables rows n; tables=$(rsql <<<"SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA = '$1' ORDER BY 1;")
  if [[ -n $tables ]]; then for t in $tables; do q+="SELECT COUNT(*) FROM \`$1\`.\`$t\`;"; done; for t in $tables; do q+="CHECKSUM TABLE \`$1\`.\`$t\`;"; done
    rows=$(rsql <<<"$q"); n=$(grep -c . <<<"$tables"); paste <(echo "$tables") <(head -n "$n" <<<"$rows") <(tail -n "$n" <<<"$rows" | cut -f2); fi
  rsql <<<"SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '$1'; SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '$1'; SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '$1'; SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '$1';" | paste -sd' '; }
verify() { exists "$1" && [[ $(stats "$1") == "$(<"$2.stats")" ]]; }  # backup.verify: $1 against dump $2's stats
backup_create() {  # lab backup create $1: stats, then mysqldump | gzip streamed here and checked (in $TMP, not the lab's backups)
  DUMP=$TMP/k8s-lab-$1-$(date -u +%Y%m%dT%H%M%SZ).sql.gz; exists "$1" || die "no database $1"; stats "$1" >"$DUMP.stats"
  rsql <<<"SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '$1';" >"$DUMP.charset"
  rsql <<<"SELECT VERSION();"; printf '%s\n' "$ROOTPW" | rootx "mysqldump --user=root --single-transaction --routines --triggers --events --hex-blob --default-character-set=utf8mb4 \"\$1\" | gzip -6 -c" "$1" >"$DUMP"
  gzip -t "$DUMP"; zcat "$DUMP" | tail -n 1 | has -- '-- Dump completed' || die "incomplete dump of $1"; sha256sum "$DUMP" >"$DUMP.sha256"; }
load() { local c o; read -r c o <"$1.charset"; rsql <<<"DROP DATABASE IF EXISTS \`$2\`; CREATE DATABASE \`$2\` CHARACTER SET $c COLLATE $o;"
  { printf '%s\n' "$ROOTPW"; zcat "$1"; } | rootx 'mysql --user=root --default-character-set=utf8mb4 ${1:+--database="$1"}' "$2"; }
restore() {  # lab backup restore $1 --into $2: check the file, safety dump, load and verify a staging copy, then load
  local f=$1 staging; staging=$2-restore-$(date -u +%Y%m%dT%H%M%SZ); { sha256sum --quiet -c "$f.sha256" && gzip -t "$f"; } || die "$f is damaged"
  if exists "$2"; then backup_create "$2"; fi; load "$f" "$staging"; [[ $(stats "$staging") == "$(<"$f.stats")" ]] || die "staging differs"
  rsql <<<"DROP DATABASE IF EXISTS \`$staging\`;"; load "$f" "$2"; }
db_back() { pod_up database-0 "${1:-}" && rsql <<<'SELECT 1;' 2>/dev/null; }  # backup.wait_database
recreatable() {  # kubectl get -o yaml List -> documents kubectl create takes again (backup.clean_object)
  awk 'function flush() { if (doc != "" && !(kind == "ConfigMap" && name == "kube-root-ca.crt") && !(kind == "ServiceAccount" && name == "default") && !owned) printf "---\n%s", doc; doc = ""; kind = name = ""; owned = cut = ips = 0 }
    /^- / { flush(); $0 = "  " substr($0, 3); item = 1 } /^[^ -]/ { flush(); item = 0 } !item { next } { $0 = substr($0, 3) }
    cut && /^[^ ]/ { cut = 0 } cut || /^status:/ { cut = 1; next } /^kind: / { kind = $2 } /^  name: / && name == "" { name = $2 } /^  ownerReferences:/ { owned = 1 }
    /^  (uid|resourceVersion|creationTimestamp|generation|selfLink):/ || /^    (pv\.kubernetes\.io\/(bind-completed|bound-by-controller)|volume\.(beta\.)?kubernetes\.io\/storage-provisioner|volume\.kubernetes\.io\/selected-node|deployment\.kubernetes\.io\/revision):/ { next }
    /^  (clusterIP: [0-9a-f]|finalizers:)/ { ips = 1; next } ips && /^  clusterIPs:/ { next } ips && /^  - / { next } { ips = 0; doc = doc $0 "\n" } END { flush() }'; }
drill() {  # backup.drill, one stage: verify, break, wait for the database, verify (restore when the data is lost)
  local old pv pvs patch; verify lab "$DRILL" || die "lab differs from its backup before the drill"; old=$(k get pod database-0 -o jsonpath='{.metadata.uid}')
  case $1 in pod) k delete pod database-0 --wait=false; poll 600 2 db_back "$old" ;;
    statefulset) k get statefulset --field-selector metadata.name=database -o yaml | recreatable >"$TMP/sts.yaml"
      k delete statefulset database --cascade=foreground --wait=false; poll 600 2 gone statefulset/database pod/database-0
      k create -f "$TMP/sts.yaml"; poll 600 2 db_back ;;
    namespace) local labels; labels=$(kn get namespace "$NS" -o jsonpath='{.metadata.labels}')
      k get resourcequotas,limitranges,serviceaccounts,roles,rolebindings,secrets,configmaps,persistentvolumeclaims,services,networkpolicies,statefulsets,deployments,daemonsets,cronjobs -o yaml | recreatable >"$TMP/ns.yaml"
      mapfile -t pvs < <(sed -n 's/^  volumeName: //p' "$TMP/ns.yaml")
      for pv in "${pvs[@]}"; do [[ $(kn get pv "$pv" -o jsonpath='{.spec.persistentVolumeReclaimPolicy}') == Retain ]] || die "$pv is not Retain"; done
      kn delete namespace "$NS" --wait=false; poll 600 2 gone namespace/"$NS"
      for pv in "${pvs[@]}"; do  # backup.rebind_volume: drop the old claim's uid
        patch=$(kn get pv "$pv" -o jsonpath='uid={.spec.claimRef.uid} resourceVersion={.spec.claimRef.resourceVersion}' |
          awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[2] != "") printf "%s{\"op\":\"remove\",\"path\":\"/spec/claimRef/%s\"}", (n++ ? "," : ""), kv[1] } }')
        [[ -z $patch ]] || kn patch pv "$pv" --type=json -p "[$patch]"; done
      { printf '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"%s","labels":%s}}\n' "$NS" "$labels"; cat "$TMP/ns.yaml"; } |
        kn create -f - 2>"$TMP/err" || ! grep -v 'already exists' "$TMP/err" | has . || die "re-creating $NS: $(<"$TMP/err")"
      ROOTPW=$(secret root-password); poll 600 2 db_back ;;
    database) rsql <<<'DROP DATABASE IF EXISTS `lab`;' ;;
  esac; verify lab "$DRILL" || { restore "$DRILL" lab; verify lab "$DRILL"; }; }
images_loaded() { local line img; while read -r line; do for img in "${CHECK[@]}"; do [[ $line == *"docker.io/$img"* ]] || return 1; done; done < <(kn get nodes -o jsonpath='{range .items[*]}{.status.images[*].names}{"\n"}{end}'); }
TIMES=() CUR='' T0=0
section() { [[ -z $CUR ]] || TIMES+=("$CUR $((SECONDS - T0))"); CUR=${1:-} T0=$SECONDS; [[ -z $CUR ]] || echo "== $CUR" >&3; }

section "00 preflight"
docker version --format '{{.Client.Version}} {{.Server.Version}}'; docker info --format '{{.CgroupVersion}} {{.Driver}} {{.NCPU}}'
"$KUBECTL" version --client; "$HELM" version --short; "$KIND" version

section "01 kind-cluster"  # cluster_up: reuse the cluster (restarting stopped nodes), else create it
if "$KIND" get clusters 2>/dev/null | has -x "$CLUSTER"; then
  mapfile -t stopped < <(docker ps -aq --filter "label=io.x-k8s.kind.cluster=$CLUSTER" --filter status=exited)
  ((${#stopped[@]} == 0)) || docker start "${stopped[@]}"; poll 300 2 nodes_ready 1; docker inspect --format '{{.Config.Image}}' "$CLUSTER-control-plane"
else create_cluster 0; fi
kn config get-contexts; kn cluster-info; kn version; kn get nodes -o wide; "$KIND" get clusters; "$KIND" get nodes --name "$CLUSTER"
docker ps --filter "label=io.x-k8s.kind.cluster=$CLUSTER"; docker exec "$CLUSTER-control-plane" crictl ps --namespace kube-system --state running
kn -n kube-system get pods -o wide

section "02 storage"
apply 00-namespace/0-namespace.yaml; kn get namespace "$NS" --show-labels; apply 00-namespace/1-resourcequota.yaml; apply 00-namespace/2-limitrange.yaml
k get resourcequota lab-quota; k describe limitrange lab-limits
k run dry --image="$IMG_PROBE" --restart=Never --dry-run=server --override-type=strategic -o json \
  --overrides='{"spec":{"securityContext":{"runAsNonRoot":true,"runAsUser":65534,"seccompProfile":{"type":"RuntimeDefault"}},"containers":[{"name":"dry","securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}}'
SC='{allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}' MEM='{requests: {memory: 2Gi}, limits: {memory: 2Gi}}'
k apply --dry-run=server -f - 2>/dev/null <<EOF || true  # the build task: the quota refuses it
{apiVersion: v1, kind: Pod, metadata: {name: too-big}, spec: {securityContext: {runAsNonRoot: true, runAsUser: 65534, seccompProfile: {type: RuntimeDefault}}, containers: [
 {name: one, image: $IMG_PROBE, command: [sleep, infinity], securityContext: $SC, resources: $MEM}, {name: two, image: $IMG_PROBE, command: [sleep, infinity], securityContext: $SC, resources: $MEM}]}}
EOF
hostdirs; apply 01-storage/database-pv.yaml; kn get persistentvolume -l app.kubernetes.io/part-of=k8s-lab; kn get storageclass
docker exec "$CLUSTER-control-plane" ls -la "$NODE_DATA"

section "03 database"
secret_yaml | k apply -f -; k get secret database-credentials; apply 02-database/configmap.yaml; k get configmap database-config
apply 02-database/services.yaml; k get services -l app.kubernetes.io/component=database -o wide
apply 02-database/statefulset.yaml; k rollout status statefulset/database --timeout=600s
k get pods -l app.kubernetes.io/component=database; k get persistentvolumeclaims; kn get persistentvolume -l app.kubernetes.io/part-of=k8s-lab
k exec database-0 -c database -- getent hosts "database-0.database-headless.$NS.svc.cluster.local"; k exec database-0 -c database -- getent hosts "database.$NS.svc.cluster.local"
mysql_as username password <<<"CREATE TABLE IF NOT EXISTS notes (id INT PRIMARY KEY, author VARCHAR(64), note VARCHAR(255));
REPLACE INTO notes (id, author, note) VALUES (1, 'reference solution', 'hello from same_work.sh, run $RANDOM');"
mysql_as username password <<<"SELECT id, author, note FROM notes WHERE id = 1;"
old=$(k get pod database-0 -o jsonpath='{.metadata.uid}'); k delete pod database-0 --wait=true; poll 600 2 pod_up database-0 "$old"
mysql_as username password <<<"SELECT id, author, note FROM notes WHERE id = 1;"

section "04 web-server"
apply 03-web/configmap.yaml; k get configmap web-nginx; apply 03-web/deployment.yaml; k rollout status deployment/web --timeout=300s
k get pods -l "$WEB_SEL" -o wide; k get pods -l "$WEB_SEL" -o yaml  # nb.pods, then the init containers' table
apply 03-web/service.yaml; k get service web -o wide
url=$(docker port "$CLUSTER-control-plane" 30080/tcp); url="http://${url%%$'\n'*}/whoami.json"
poll 120 1 curl -fs -m 5 -o /dev/null "$url"; k get endpointslices -l kubernetes.io/service-name=web
for _ in $(seq 60); do curl -fs -m 5 -o /dev/null "$url"; done  # a new connection each, as the lab's GETs

section "05 network-policy"
poll 120 2 eval '[[ $(kn get namespace "$CANARY" --ignore-not-found -o "jsonpath={.status.phase}") != Terminating ]]'; canary
k delete networkpolicy default-deny-ingress web-allow-http database-allow-clients --ignore-not-found; k get networkpolicies
kn get namespace "$OUTSIDE" >/dev/null 2>&1 || kn create namespace "$OUTSIDE"
probe_pod "$NS" probe-other-0 '"app.kubernetes.io/name": "k8s-lab-probe", "k8s-lab.probe/managed": "true", "k8s-lab.probe/role": "other", "k8s-lab.probe/source": "other"'
k wait --for=condition=Ready pod/probe-other-0 --timeout=120s
probe_pod "$NS" probe-backup-0 '"app.kubernetes.io/component": "backup", "app.kubernetes.io/instance": "probe", "app.kubernetes.io/name": "k8s-lab", "k8s-lab.probe/managed": "true", "k8s-lab.probe/source": "backup"'
k wait --for=condition=Ready pod/probe-backup-0 --timeout=120s
probe_pod "$OUTSIDE" probe-outside-0 '"app.kubernetes.io/component": "web", "app.kubernetes.io/instance": "probe", "app.kubernetes.io/name": "k8s-lab", "k8s-lab.probe/managed": "true", "k8s-lab.probe/source": "outside"'
kn -n "$OUTSIDE" wait --for=condition=Ready pod/probe-outside-0 --timeout=120s
lab_cells open | matrix 10 || true  # 18 cells, 6 execs a pass; a wrong cell is the checkpoints' business
apply 04-network-policy/default-deny-ingress.yaml; apply 04-network-policy/web-allow-http.yaml; apply 04-network-policy/database.yaml
k describe networkpolicy database-allow-clients; lab_cells policy | matrix 10 || true
k patch networkpolicy database-allow-clients --type=json -p '[{"op": "replace", "path": "/spec/ingress/0/from/0/podSelector/matchLabels/app.kubernetes.io~1component", "value": "frontend"}]'
k get networkpolicy database-allow-clients -o json; poll 60 1 web_db_dropped
lab_cells policy | matrix 10 || true  # web -> database:3306 is wrong on purpose: retried 10 s, as in the lab
apply 04-network-policy/database.yaml; lab_cells policy | matrix 10 || true

section "06 pod-watcher"
apply 05-watcher/rbac.yaml
while read -r verb res; do k auth can-i "$verb" "$res" --as="system:serviceaccount:$NS:watcher" || true; done <<<$'get pods\nlist pods\nwatch pods\ndelete pods\nget secrets\nlist deployments'
apply 05-watcher/daemonset.yaml; k rollout status daemonset/watcher --timeout=180s; poll 120 1 snapshots "$WATCH_SEL"
k get daemonset watcher -o wide; k get pods -l "$WATCH_SEL" -o wide; k logs daemonset/watcher --tail=3; logs_of "$WATCH_SEL"
started=$(now); mapfile -t seen < <(web_pods); k scale deployment web --replicas=5; poll 180 2 settled 5; mapfile -t -O "${#seen[@]}" seen < <(web_pods)
victim=$(oldest_web); k delete pod "$victim" --wait=false; poll 180 2 replaced "$victim" 5; mapfile -t -O "${#seen[@]}" seen < <(web_pods)
k scale deployment web --replicas=3; poll 180 2 settled 3; mapfile -t after < <(web_pods)
gone_web=(); for p in "${seen[@]}"; do [[ " ${after[*]} " == *" $p "* ]] || gone_web+=("$p"); done
poll 120 1 deleted_logged "$started" "${gone_web[@]}"; logs_of "$WATCH_SEL" --since-time="$started"
list=$(kn get --raw "/api/v1/namespaces/$NS/pods?labelSelector=app.kubernetes.io%2Fcomponent%3Dweb")  # list, annotate, watch from the list's RV
rv=${list#*\"resourceVersion\":\"} rv=${rv%%\"*} first=${list#*\"items\":\[\{\"metadata\":\{\"name\":\"} first=${first%%\"*}
k annotate pod "$first" "k8s-lab/touched=$(now)" --overwrite
kn get --raw "/api/v1/namespaces/$NS/pods?labelSelector=app.kubernetes.io%2Fcomponent%3Dweb&watch=1&resourceVersion=$rv&allowWatchBookmarks=true&timeoutSeconds=3"
kn get --raw "/api/v1/namespaces/$NS/pods?watch=1&resourceVersion=1&timeoutSeconds=3" 2>/dev/null || true  # 410 Gone
logs_of "$WATCH_SEL"
sed -e 's/^  name: watcher$/  name: watcher-go/' -e 's/component: watcher$/component: watcher-go/' -e "s/k8s-assignment/$NS/" \
  "$REPO/manifests/05-watcher/go/daemonset.yaml" | k apply -f -  # the Go watcher beside the Python one, under its own name
k rollout status daemonset/watcher-go --timeout=180s; poll 120 1 snapshots "$GO_SEL" 1
from=$(now) victim=$(oldest_web); k delete pod "$victim" --wait=false; poll 180 2 replaced "$victim" 3
poll 120 1 same_transitions "$from" "$victim"; logs_of "$GO_SEL"; k delete daemonset watcher-go --wait=false

section "07 helm"
h lint "$CHART" "${SET[@]}"
mapfile -t OBJS < <(h template k8s-lab "$CHART" "${SET[@]}" | awk 'function out() { if (kind != "" && !hook) print tolower(kind) "/" name; kind = name = ""; hook = 0 }
  /^---/ { out(); next } /^kind: / { kind = $2 } /^  name: / && name == "" { name = $2 } /^    helm\.sh\/hook:/ { hook = 1 } END { out() }')
owners; h upgrade --install k8s-lab "$CHART" "${SET[@]}" --dry-run=server --hide-secret 2>/dev/null || true  # shown, not checked
while read -r ref state; do [[ $state == adopt ]] || continue  # Helm takes over what 02-06 applied
  k label "$ref" app.kubernetes.io/managed-by=Helm --overwrite; k annotate "$ref" meta.helm.sh/release-name=k8s-lab "meta.helm.sh/release-namespace=$NS" --overwrite
done < <(owners)
k get pods; helm_up install 600; k get pods; h list; k get secrets -l owner=helm,name=k8s-lab
printf 'web:\n  replicas: 2\n' >"$TMP/values.yaml"; helm_up upgrade 300 -f "$TMP/values.yaml"; h history k8s-lab
mapfile -t revs < <(revisions); for r in "${revs[@]}"; do h get values k8s-lab --revision "$r" --all --output json; done
mapfile -t revs < <(revisions); h rollback k8s-lab "${revs[-2]}" --history-max 5 --wait --timeout 300s
revisions; h upgrade k8s-lab "$CHART" "${SET[@]}" --set web.nodePort=80 2>/dev/null || true  # the schema refuses it
cp -r "$CHART" "$TMP/chart"  # one template change in a copy of the chart: the revision on the web Service
sed -i 's/^    {{- include "k8s-lab.labels" (dict "root" . "component" "web") | nindent 4 }}$/&\n  annotations:\n    k8s-lab\/revision: {{ .Release.Revision | quote }}/' \
  "$TMP/chart/templates/web/service.yaml"
CHART=$TMP/chart helm_up upgrade 300; h history k8s-lab --max 1; k get service web -o jsonpath='{.metadata.annotations}'; echo
h status k8s-lab; k get statefulsets,deployments,services,pvc

section "08 backup"
ROOTPW=$(secret root-password)
mysql_as username password <<<"CREATE TABLE IF NOT EXISTS readings (id INT PRIMARY KEY, sensor VARCHAR(16) NOT NULL, value DOUBLE NOT NULL);
REPLACE INTO readings (id, sensor, value) SELECT a.d * 100 + b.d * 10 + c.d + 1, CONCAT('sensor-', c.d), (a.d * 100 + b.d * 10 + c.d) * 0.25
FROM $(D='(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)'; echo "$D a CROSS JOIN $D b CROSS JOIN $D c");
SELECT COUNT(*) AS readings, ROUND(SUM(value), 2) AS total FROM readings;"
job=backup-now-$(date +%s); k create job "$job" --from=cronjob/database-backup
k wait --for=condition=complete "job/$job" --timeout=300s; k logs "job/$job" -c mysqldump
backup_create lab; DRILL=$DUMP; restore "$DRILL" lab_restored; verify lab_restored "$DRILL" || true  # create, restore --into, verify (shown)
mysql_as root root-password <<<"CHECKSUM TABLE lab.readings, lab_restored.readings;"
drill pod; drill statefulset
PVCOLS=custom-columns=NAME:.metadata.name,RECLAIM:.spec.persistentVolumeReclaimPolicy,STATUS:.status.phase,CLAIM:.spec.claimRef.name
kn get persistentvolume k8s-lab-database-data -o "$PVCOLS"; drill namespace; kn get persistentvolume k8s-lab-database-data -o "$PVCOLS"; drill database
helm_up install 600; mysql_as root root-password <<<"DROP DATABASE IF EXISTS lab_restored;"; k get statefulsets,deployments,daemonsets,cronjobs,pvc

section "09 scheduling"
kn get nodes
if (($(kn get nodes -o name | grep -c .) < 3)); then  # grow to 2 workers: only the lab's own cluster and namespace
  [[ $CLUSTER == k8s-lab && $NS == k8s-assignment ]] || die "$CLUSTER has fewer than 3 nodes"
  "$KIND" delete cluster --name "$CLUSTER"; create_cluster 2; RECREATED=1
fi
CHECK=(k8s-lab/web:1 k8s-lab/watcher:1 "$IMG_PROBE"); [[ $MODE == online ]] || CHECK+=(k8s-lab/mariadb:lab)
if [[ -n ${RECREATED:-} ]] || ! images_loaded; then "$KIND" load docker-image --name "$CLUSTER" "${LOAD[@]}"; fi  # built by the lab
poll 120 2 images_loaded; quiet h history k8s-lab || true
(umask 077; printf 'database:\n  auth:\n    backupPassword: %s\n    password: %s\n    rootPassword: %s\n' "$PW_BACKUP" "$PW_APP" "$PW_ROOT" >"$TMP/creds.yaml")
prepare_for_helm; h upgrade --install k8s-lab "$CHART" --create-namespace --history-max 5 --values "$TMP/creds.yaml" "${SET[@]}" --wait --timeout 600s  # lab deploy --helm
k get pods -o wide; kn get nodes -L k8s-lab/database; kn get persistentvolume k8s-lab-database-data -o 'jsonpath={.spec.nodeAffinity.required}'; k get pod database-0 -o wide
spare=$(kn get nodes -l '!node-role.kubernetes.io/control-plane' -o name | sort | tail -n 1); kn label "$spare" k8s-lab/tier=spare --overwrite
k delete pod spare-probe --ignore-not-found --wait=true; k apply -f - <<EOF
{apiVersion: v1, kind: Pod, metadata: {name: spare-probe}, spec: {securityContext: {runAsNonRoot: true, runAsUser: 65534, seccompProfile: {type: RuntimeDefault}},
 containers: [{name: probe, image: $IMG_PROBE, command: [sleep, infinity], securityContext: $SC, resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 50m, memory: 32Mi}}}],
 affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: k8s-lab/tier, operator: In, values: [spare]}]}]}}}}}
EOF
poll 60 2 eval '[[ -n $(k get pod spare-probe -o "jsonpath={.spec.nodeName}") ]]'; kn get nodes -L k8s-lab/tier; k get pod spare-probe -o wide
k get pods -o wide; k rollout status daemonset/watcher --timeout=180s; k get daemonset watcher -o wide; k get pods -l "$WATCH_SEL" -o wide
helm_up upgrade 300 --set web.replicas=6; k get pods -o wide; helm_up upgrade 300; k get pods -o wide

section "99 cleanup"
kn get namespace "$NS" --ignore-not-found; h list
if quiet h history k8s-lab; then h get manifest k8s-lab; h uninstall k8s-lab
elif kn get namespace "$NS" >/dev/null 2>&1; then  # no release: the manifests' layers, last first
  mapfile -t layers < <(cd "$REPO/manifests" && printf '%s\n' [0-9][0-9]-* | sort -r)
  for layer in "${layers[@]}"; do [[ $layer == 00-namespace ]] && continue
    (cd "$REPO/manifests" && render "$layer"/*.yaml) | kn delete --ignore-not-found --wait=false -f -; done
fi
if kn get namespace "$NS" >/dev/null 2>&1; then k get all,pvc,configmaps,secrets,networkpolicies; fi
kn delete namespace "$NS" --ignore-not-found --wait=false; kn delete persistentvolume k8s-lab-database-data --ignore-not-found --wait=false
poll 300 2 gone namespace/"$NS" persistentvolume/k8s-lab-database-data; kn get namespaces,persistentvolumes -l app.kubernetes.io/part-of=k8s-lab -o name

section; printf '%s\n' "${TIMES[@]}" "total $SECONDS" >&3
