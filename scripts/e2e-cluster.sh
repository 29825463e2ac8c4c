#!/usr/bin/env bash
# A real Kubernetes control plane on 127.0.0.1 for lockstep's end-to-end tests (tests/cluster.rs):
# etcd, kube-apiserver and kube-controller-manager (Job, Deployment, ReplicaSet, namespace,
# garbage-collector, service-account and root-CA publisher controllers). No kubelet, no scheduler: Pods stay
# Pending until something sets their status (tests/cluster/pod_runner.py does for Job pods).
#
#   e2e-cluster.sh start DIR        make certificates in DIR, start the three, wait until ready;
#                                   writes DIR/kubeconfig (cluster-admin, bearer token in
#                                   DIR/token), DIR/pids, logs in DIR/logs; prints the kubeconfig
#   e2e-cluster.sh stop DIR         stop every PID in DIR/pids (TERM, then KILL after 5 s)
#   e2e-cluster.sh watch DIR PID    stop DIR once process PID has exited (the test binary;
#                                   run in the background so a crashed or killed test run
#                                   still stops what it started)
#
# Binaries: etcd, kube-apiserver and kube-controller-manager from $LOCKSTEP_KUBE_BIN (a
# directory; .ci/run unpacks them there). Ports: ETCD_PORT, API_PORT, KCM_PORT from the
# environment, else free ports picked here (etcd also uses ETCD_PORT+1 and +2 when set,
# else free ones too). Needs openssl and curl. A failed start stops what it had started.
set -euo pipefail
cmd=${1:-}; D=${2:-}
[ -n "$cmd" ] && [ -n "$D" ] || { echo "usage: $0 start|stop DIR | watch DIR PID" >&2; exit 2; }
TOKEN=lockstep-e2e-admin

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() {  # SECONDS WHAT CMD...
  local t=$1 what=$2; shift 2
  for _ in $(seq 1 $((t * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "e2e-cluster: $what not ready after ${t}s (logs in $D/logs)" >&2; return 1
}

certs() {
  local P=$D/pki; mkdir -p "$P"
  (
    cd "$P"
    openssl genrsa -out ca.key 2048 2>/dev/null
    openssl req -x509 -new -nodes -key ca.key -subj "/CN=lockstep-e2e-ca" -days 2 -out ca.crt 2>/dev/null
    openssl genrsa -out apiserver.key 2048 2>/dev/null
    printf '[req]\ndistinguished_name=dn\n[dn]\n[ext]\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:127.0.0.1,IP:10.0.0.1\n' > apiserver.cnf
    openssl req -new -key apiserver.key -subj "/CN=kube-apiserver" -out apiserver.csr -config apiserver.cnf 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extensions ext -extfile apiserver.cnf -out apiserver.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    # The controller manager authenticates with a client certificate in system:masters.
    openssl genrsa -out kcm.key 2048 2>/dev/null
    printf '[ext]\nextendedKeyUsage=clientAuth\n' > client.cnf
    openssl req -new -key kcm.key -subj "/O=system:masters/CN=lockstep-e2e-kcm" -out kcm.csr 2>/dev/null
    openssl x509 -req -in kcm.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extensions ext -extfile client.cnf -out kcm.crt 2>/dev/null
    echo "$TOKEN,admin,admin-uid,\"system:masters\"" > tokens.csv
  )
  printf '%s\n' "$TOKEN" > "$D/token"
  kubeconfig "token: $TOKEN" > "$D/kubeconfig"
  kubeconfig "client-certificate-data: $(base64 -w0 < "$P/kcm.crt")
    client-key-data: $(base64 -w0 < "$P/kcm.key")" > "$D/kcm.kubeconfig"
  chmod 600 "$D/kubeconfig" "$D/kcm.kubeconfig" "$D/token"
}

kubeconfig() {  # USER-LINES
  cat <<EOC
apiVersion: v1
kind: Config
clusters:
- name: lockstep-e2e
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 < "$D/pki/ca.crt")
users:
- name: admin
  user:
    $1
contexts:
- name: lockstep-e2e
  context: {cluster: lockstep-e2e, user: admin, namespace: default}
current-context: lockstep-e2e
EOC
}

start() {
  local B=${LOCKSTEP_KUBE_BIN:-}
  [ -n "$B" ] || { echo "e2e-cluster: LOCKSTEP_KUBE_BIN is not set (a directory with etcd, kube-apiserver, kube-controller-manager)" >&2; exit 1; }
  for b in etcd kube-apiserver kube-controller-manager; do
    [ -x "$B/$b" ] || { echo "e2e-cluster: $B/$b is missing or not executable" >&2; exit 1; }
  done
  command -v openssl >/dev/null && command -v curl >/dev/null || { echo "e2e-cluster: needs openssl and curl" >&2; exit 1; }
  mkdir -p "$D/logs"; D=$(cd "$D" && pwd)
  : > "$D/pids"
  trap 'stop; exit 1' ERR INT TERM
  ETCD_PORT=${ETCD_PORT:-$(free_port)}
  local PEER=${ETCD_PEER_PORT:-$(free_port)} METRICS=${ETCD_METRICS_PORT:-$(free_port)}
  API_PORT=${API_PORT:-$(free_port)} KCM_PORT=${KCM_PORT:-$(free_port)}
  certs
  local P=$D/pki
  setsid "$B/etcd" --name e2e --data-dir "$D/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$PEER" --initial-advertise-peer-urls "http://127.0.0.1:$PEER" \
    --initial-cluster "e2e=http://127.0.0.1:$PEER" \
    --listen-metrics-urls "http://127.0.0.1:$METRICS" > "$D/logs/etcd.log" 2>&1 < /dev/null &
  echo "etcd $!" >> "$D/pids"
  wait_for 30 etcd curl -sf "http://127.0.0.1:$ETCD_PORT/health"
  setsid "$B/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --secure-port="$API_PORT" --advertise-address=127.0.0.1 \
    --service-cluster-ip-range=10.0.0.0/24 \
    --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
    --client-ca-file="$P/ca.crt" --token-auth-file="$P/tokens.csv" --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
    --allow-privileged=true --profiling=false --cert-dir="$D/apiserver-certs" \
    --endpoint-reconciler-type=none > "$D/logs/kube-apiserver.log" 2>&1 < /dev/null &
  echo "kube-apiserver $!" >> "$D/pids"
  wait_for 120 kube-apiserver curl -sf --cacert "$P/ca.crt" -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:$API_PORT/readyz"
  setsid "$B/kube-controller-manager" --kubeconfig="$D/kcm.kubeconfig" \
    --controllers=job,namespace,garbagecollector,serviceaccount,serviceaccount-token,root-ca-cert-publisher,deployment,replicaset \
    --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
    --use-service-account-credentials=false --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$D/kcm-certs" \
    > "$D/logs/kube-controller-manager.log" 2>&1 < /dev/null &
  echo "kube-controller-manager $!" >> "$D/pids"
  wait_for 60 kube-controller-manager curl -skf "https://127.0.0.1:$KCM_PORT/healthz"
  # Pods are admitted only once the service-account controller made the namespace's default SA.
  wait_for 60 "default ServiceAccount" curl -sf --cacert "$P/ca.crt" -H "Authorization: Bearer $TOKEN" \
    "https://127.0.0.1:$API_PORT/api/v1/namespaces/default/serviceaccounts/default"
  trap - ERR INT TERM
  echo "$D/kubeconfig"
}

stop() {
  [ -f "$D/pids" ] || return 0
  tac "$D/pids" | while read -r _ pid; do
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || :
  done
  rm -f "$D/pids"
}

watch() {
  local pid=${3:-}
  [ -n "$pid" ] || { echo "usage: $0 watch DIR PID" >&2; exit 2; }
  while kill -0 "$pid" 2>/dev/null; do sleep 0.5; done
  stop
}

case $cmd in
  start) start ;;
  stop) stop ;;
  watch) watch "$@" ;;
  *) echo "usage: $0 start|stop DIR | watch DIR PID" >&2; exit 2 ;;
esac
