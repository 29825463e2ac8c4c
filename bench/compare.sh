#!/usr/bin/env bash
# Usage: bash bench/compare.sh OLD NEW
#
# Runs two lockstep binaries over the whole corpus (every chart and render under
# tests/fixtures/ and examples/, plus the malformed and odd inputs of tests/bad/ and
# tests/odd/) in every front-end that prints manifests, in both phases, and compares
# stdout bytes and exit status (stderr separately). One line per case, then a summary.
# Exit 0 when stdout and status agree in every case, 1 on any such difference, 2 on usage.
#
# Front-ends (invoked as their users' tools invoke them):
#   cli-render    lockstep render CHART -f VALUES --from V --phase P, and in an app directory
#                 (examples/apps/*: lockstep.yaml and lockstep.lock)
#   cli-inject    lockstep inject --phase P < RENDER (the renders of tests/fixtures, and
#                 tests/bad, tests/odd)
#   postrender    lockstep inject < RENDER: what Helm 4 runs for --post-renderer
#                 lockstep-postrender (helm-postrender/plugin.yaml), no flags
#   helm4-postrender  the same through a real `helm4 template --post-renderer`
#   argocd        lockstep argocd generate|parameters with the environment argocd-cmp-server
#                 gives (ARGOCD_APP_*, ARGOCD_ENV_LOCKSTEP_PHASE, ARGOCD_APP_PARAMETERS,
#                 KUBE_VERSION, KUBE_API_VERSIONS), in the app directory
#   helm-plugin   lockstep helm template|plan RELEASE CHART ... with HELM_NAMESPACE, as helm
#                 runs the plugin's command ($HELM_PLUGIN_DIR/bin/lockstep helm ARGS); --from
#                 names the deployed release, so no cluster is asked
#   cli-plan      lockstep plan (text and json)
# helm is the pinned helm 4 of .tools/bin (HELM3=1 also runs the render cases with helm 3).
#
# Deterministic: a cleared environment (env -i), LC_ALL=C, TZ=UTC, a private HOME and helm
# homes, proxies pointing at a closed port (offline); both binaries run each case with the
# same environment and directory, one after the other. Outputs are kept in $KEEP when set.
set -euo pipefail

if [ $# -ne 2 ]; then
	echo "usage: bash bench/compare.sh OLD_LOCKSTEP NEW_LOCKSTEP" >&2
	exit 2
fi
abs() { (cd "$(dirname "$1")" && printf '%s/%s\n' "$PWD" "$(basename "$1")"); }
OLD=$(abs "$1")
NEW=$(abs "$2")
for b in "$OLD" "$NEW"; do
	[ -x "$b" ] || {
		echo "compare.sh: $b is not an executable" >&2
		exit 2
	}
done
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=$ROOT/.tools/bin
for t in helm3 helm4; do
	[ -x "$TOOLS/$t" ] || {
		echo "compare.sh: $TOOLS/$t is missing: run bash scripts/install-tools.sh" >&2
		exit 2
	}
done

export LC_ALL=C
WORK=${KEEP:-}
if [ -z "$WORK" ]; then
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/lockstep-compare.XXXXXX")
	trap 'rm -rf "$WORK"' EXIT
else
	rm -rf "$WORK" && mkdir -p "$WORK"
fi
mkdir -p "$WORK/home" "$WORK/tmp" "$WORK/helm/cache" "$WORK/helm/config" "$WORK/helm/data" "$WORK/out"

# The environment every case starts from (cases add their own variables).
BASE_ENV=(
	"PATH=$TOOLS:/usr/bin:/bin"
	"HOME=$WORK/home"
	"TMPDIR=$WORK/tmp"
	"LC_ALL=C" "LANG=C" "TZ=UTC"
	"HELM_BIN=$TOOLS/helm4"
	"HELM_CACHE_HOME=$WORK/helm/cache"
	"HELM_CONFIG_HOME=$WORK/helm/config"
	"HELM_DATA_HOME=$WORK/helm/data"
	"KUBECONFIG=$WORK/no-kubeconfig"
	"HTTP_PROXY=http://127.0.0.1:9" "HTTPS_PROXY=http://127.0.0.1:9"
	"http_proxy=http://127.0.0.1:9" "https_proxy=http://127.0.0.1:9"
)

# Helm 4 finds the post-renderer plugin in HELM_PLUGINS; one plugin directory per binary.
for side in old new; do
	d=$WORK/plugins-$side/lockstep-postrender
	mkdir -p "$d/bin"
	cp "$ROOT/helm-postrender/plugin.yaml" "$d/plugin.yaml"
	if [ $side = old ]; then ln -s "$OLD" "$d/bin/lockstep"; else ln -s "$NEW" "$d/bin/lockstep"; fi
done

cases=0 same=0 differ=0 stderr_only=0 succeeded=0
differing=()

# run_case NAME STDIN DIR [VAR=VALUE ...] -- PROGRAM ARGS...
# PROGRAM is `lockstep` (the binary under comparison) or a tool run with {plugins} (the
# post-renderer plugin directory of the binary under comparison) in its environment.
run_case() {
	local name=$1 stdin=$2 dir=$3
	shift 3
	local envs=()
	while [ "$1" != -- ]; do
		envs+=("$1")
		shift
	done
	shift
	local safe=${name//\//_}
	local side bin o
	for side in old new; do
		if [ $side = old ]; then bin=$OLD; else bin=$NEW; fi
		o=$WORK/out/$safe.$side
		local argv=() e=()
		local a
		for a in "$@"; do
			if [ "$a" = lockstep ]; then argv+=("$bin"); else argv+=("${a//\{plugins\}/$WORK/plugins-$side}"); fi
		done
		for a in ${envs[@]+"${envs[@]}"}; do e+=("${a//\{plugins\}/$WORK/plugins-$side}"); done
		set +e
		(cd "$dir" && exec env -i "${BASE_ENV[@]}" ${e[@]+"${e[@]}"} "${argv[@]}") <"$stdin" >"$o.stdout" 2>"$o.stderr"
		echo $? >"$o.status"
		set -e
	done
	cases=$((cases + 1))
	local p=$WORK/out/$safe
	local st_old st_new
	st_old=$(cat "$p.old.status")
	st_new=$(cat "$p.new.status")
	[ "$st_new" = 0 ] && succeeded=$((succeeded + 1))
	local what=()
	cmp -s "$p.old.stdout" "$p.new.stdout" || what+=("stdout")
	[ "$st_old" = "$st_new" ] || what+=("status $st_old->$st_new")
	if [ ${#what[@]} -eq 0 ]; then
		same=$((same + 1))
		if cmp -s "$p.old.stderr" "$p.new.stderr"; then
			printf 'same    %-72s status=%s stdout=%sB\n' "$name" "$st_new" "$(wc -c <"$p.new.stdout")"
		else
			stderr_only=$((stderr_only + 1))
			printf 'STDERR  %-72s status=%s (stdout same; stderr differs)\n' "$name" "$st_new"
			diff -u --label old --label new "$p.old.stderr" "$p.new.stderr" | sed -n '3,8s/^/        /p' || true
		fi
	else
		differ=$((differ + 1))
		differing+=("$name")
		local IFS=,
		printf 'DIFFER  %-72s %s\n' "$name" "${what[*]}"
		diff -u --label old --label new "$p.old.stdout" "$p.new.stdout" | sed -n '3,14s/^/        /p' || true
		cmp -s "$p.old.stderr" "$p.new.stderr" || diff -u --label old.stderr --label new.stderr "$p.old.stderr" "$p.new.stderr" | sed -n '3,8s/^/        /p' || true
	fi
}

NULL=/dev/null
EX=$ROOT/examples
CLOUD_LADDER=(0.4.2 0.5.2 0.6.1 0.7.0 0.8.2 1.2.0)
API_VERSIONS="v1,v1/ConfigMap,v1/Secret,v1/Service,apps/v1,apps/v1/Deployment,batch/v1,batch/v1/Job,autoscaling/v2,autoscaling/v2/HorizontalPodAutoscaler,networking.k8s.io/v1,networking.k8s.io/v1/Ingress,monitoring.coreos.com/v1,monitoring.coreos.com/v1/ServiceMonitor"

helms=(helm4)
[ "${HELM3:-}" = 1 ] && helms+=(helm3)

# ---- CLI render and the Helm plugin's template: the prefect-cloud ladder ------------------
for helm in "${helms[@]}"; do
	for phase in presync sync; do
		prev=
		for v in "${CLOUD_LADDER[@]}"; do
			chart=$EX/charts/prefect-cloud-$v
			values=$EX/values/prefect-cloud/values-$v.yaml
			from=()
			[ -n "$prev" ] && from=(--from "$prev")
			run_case "cli-render/$helm/prefect-cloud-$v${prev:+-from-$prev}/$phase" $NULL "$ROOT" "HELM_BIN=$TOOLS/$helm" -- \
				lockstep render "$chart" -f "$values" --release customer-managed -n customer-managed \
				--profile prefect-customer-managed --phase "$phase" ${from[@]+"${from[@]}"}
			if [ -n "$prev" ]; then
				run_case "helm-plugin/$helm/template/prefect-cloud-$v-from-$prev/$phase" $NULL "$ROOT" \
					"HELM_BIN=$TOOLS/$helm" "HELM_NAMESPACE=customer-managed" -- \
					lockstep helm template customer-managed "$chart" -f "$values" --from "$prev" --phase "$phase"
			fi
			prev=$v
		done
		# A skipped release (refused, exit 3) and a downgrade with and without permission.
		run_case "cli-render/$helm/prefect-cloud-1.2.0-skip-from-0.4.2/$phase" $NULL "$ROOT" "HELM_BIN=$TOOLS/$helm" -- \
			lockstep render "$EX/charts/prefect-cloud-1.2.0" -f "$EX/values/prefect-cloud/values-1.2.0.yaml" \
			--profile prefect-customer-managed --phase "$phase" --from 0.4.2
		run_case "helm-plugin/$helm/template/prefect-cloud-1.2.0-skip-from-0.4.2/$phase" $NULL "$ROOT" "HELM_BIN=$TOOLS/$helm" -- \
			lockstep helm template customer-managed "$EX/charts/prefect-cloud-1.2.0" \
			-f "$EX/values/prefect-cloud/values-1.2.0.yaml" --from 0.4.2 --phase "$phase"
		run_case "cli-render/$helm/prefect-cloud-0.8.2-downgrade-from-1.2.0/$phase" $NULL "$ROOT" "HELM_BIN=$TOOLS/$helm" -- \
			lockstep render "$EX/charts/prefect-cloud-0.8.2" -f "$EX/values/prefect-cloud/values-0.8.2.yaml" \
			--profile prefect-customer-managed --phase "$phase" --from 1.2.0
		run_case "cli-render/$helm/prefect-cloud-0.8.2-allowed-downgrade-from-1.2.0/$phase" $NULL "$ROOT" "HELM_BIN=$TOOLS/$helm" -- \
			lockstep render "$EX/charts/prefect-cloud-0.8.2" -f "$EX/values/prefect-cloud/values-0.8.2.yaml" \
			--profile prefect-customer-managed --phase "$phase" --from 1.2.0 --allow-downgrade \
			--from-image prefecthq/prefect-cloud:1.2.0 --downgrade-revision nebula=aaa111 \
			--downgrade-revision orion=bbb222 --downgrade-revision events=ccc333
		run_case "cli-render/$helm/prefect-cloud-1.2.0-broken-redis/$phase" $NULL "$ROOT" "HELM_BIN=$TOOLS/$helm" -- \
			lockstep render "$EX/charts/prefect-cloud-1.2.0" -f "$EX/values/prefect-cloud/broken-redis-1.2.0.yaml" \
			--profile prefect-customer-managed --phase "$phase" --from 0.8.2
		# prefect-server: the chart with its vendored subchart, default values and production.
		run_case "cli-render/$helm/prefect-server/$phase" $NULL "$ROOT" "HELM_BIN=$TOOLS/$helm" -- \
			lockstep render "$EX/charts/prefect-server" --phase "$phase"
		run_case "cli-render/$helm/prefect-server-production-from-3.7.8/$phase" $NULL "$ROOT" "HELM_BIN=$TOOLS/$helm" -- \
			lockstep render "$EX/charts/prefect-server" -f "$EX/values/prefect-server/production.yaml" \
			--release prefect-server -n prefect --phase "$phase" --from 3.7.8 \
			--set-string 'global.prefect.image.prefectTag=3.8.3-python3.11'
		run_case "helm-plugin/$helm/template/prefect-server-production-from-3.7.8/$phase" $NULL "$ROOT" \
			"HELM_BIN=$TOOLS/$helm" "HELM_NAMESPACE=prefect" -- \
			lockstep helm template prefect-server "$EX/charts/prefect-server" -f "$EX/values/prefect-server/production.yaml" \
			--set-string 'global.prefect.image.prefectTag=3.8.3-python3.11' --from 3.7.8 --phase "$phase"
		run_case "cli-render/$helm/postgresql-lite/$phase" $NULL "$ROOT" "HELM_BIN=$TOOLS/$helm" -- \
			lockstep render "$EX/charts/postgresql-lite" --phase "$phase" --profile generic \
			--api-workload StatefulSet/postgresql-postgresql
		# The app directories: lockstep.yaml and lockstep.lock decide the rest.
		for app in prefect-cloud prefect-server; do
			run_case "cli-render/$helm/app-$app/$phase" $NULL "$EX/apps/$app" "HELM_BIN=$TOOLS/$helm" -- \
				lockstep render --phase "$phase"
		done
	done
	for app in prefect-cloud prefect-server; do
		run_case "cli-render/$helm/app-$app/lockstep.yaml-phase" $NULL "$EX/apps/$app" "HELM_BIN=$TOOLS/$helm" -- \
			lockstep render
	done
done

# ---- Argo CD: the app directories as argocd-cmp-server runs the plugin ----------------------
for app in prefect-cloud prefect-server; do
	argo=(
		"ARGOCD_APP_NAME=$app" "ARGOCD_APP_NAMESPACE=argo-dest" "ARGOCD_APP_PROJECT_NAME=default"
		"ARGOCD_APP_REVISION=0123456789abcdef0123456789abcdef01234567"
		"ARGOCD_APP_REVISION_SHORT=0123456" "ARGOCD_APP_REVISION_SHORT_8=01234567"
		"ARGOCD_APP_SOURCE_PATH=examples/apps/$app"
		"ARGOCD_APP_SOURCE_REPO_URL=https://git.example.com/platform/deploy.git"
		"ARGOCD_APP_SOURCE_TARGET_REVISION=main"
		"ARGOCD_ENV_ENVIRONMENT=production"
	)
	kube=("KUBE_VERSION=1.33.1" "KUBE_API_VERSIONS=$API_VERSIONS")
	run_case "argocd/generate/app-$app/lockstep.yaml-phase" $NULL "$EX/apps/$app" "${argo[@]}" "${kube[@]}" \
		"ARGOCD_APP_PARAMETERS=null" -- lockstep argocd generate
	for phase in presync sync; do
		run_case "argocd/generate/app-$app/env-phase/$phase" $NULL "$EX/apps/$app" "${argo[@]}" "${kube[@]}" \
			"ARGOCD_APP_PARAMETERS=null" "ARGOCD_ENV_LOCKSTEP_PHASE=$phase" -- lockstep argocd generate
		run_case "argocd/generate/app-$app/parameter-phase/$phase" $NULL "$EX/apps/$app" "${argo[@]}" "${kube[@]}" \
			"ARGOCD_APP_PARAMETERS=[{\"name\":\"phase\",\"string\":\"$phase\"},{\"name\":\"release\",\"string\":\"rel-$app\"}]" \
			-- lockstep argocd generate
	done
	run_case "argocd/generate/app-$app/force-migrations-from-env" $NULL "$EX/apps/$app" "${argo[@]}" "${kube[@]}" \
		"ARGOCD_APP_PARAMETERS=null" "ARGOCD_ENV_LOCKSTEP_FORCE_MIGRATIONS=true" -- lockstep argocd generate
	run_case "argocd/parameters/app-$app" $NULL "$EX/apps/$app" "${argo[@]}" "ARGOCD_APP_PARAMETERS=null" -- \
		lockstep argocd parameters
done

# ---- inject from stdin: every render of tests/fixtures, then tests/bad and tests/odd -------
inject_fixture() { # NAME FILE [FLAGS...]
	local name=$1 file=$2
	shift 2
	for phase in presync sync; do
		run_case "cli-inject/$name/$phase" "$file" "$ROOT" -- lockstep inject --phase "$phase" "$@"
	done
	run_case "postrender/$name" "$file" "$ROOT" -- lockstep inject
}
for f in "$ROOT"/tests/fixtures/prefect-server/*.yaml; do
	b=$(basename "$f" .yaml)
	inject_fixture "prefect-server/$b" "$f" --profile prefect-server
	# An upgrade from the previous release line (the first line: from itself), and a downgrade.
	v=$(grep -om1 'prefecthq/prefect:[0-9]*\.[0-9]*\.[0-9]*' "$f" | cut -d: -f2)
	IFS=. read -r maj min _ <<<"$v"
	from=$v
	[ "$min" -gt 4 ] && from=$maj.$((min - 1)).0
	run_case "cli-inject/prefect-server/$b/from-$from" "$f" "$ROOT" -- lockstep inject --profile prefect-server --from "$from"
	run_case "cli-inject/prefect-server/$b/downgrade-from-$maj.$((min + 1)).0" "$f" "$ROOT" -- \
		lockstep inject --profile prefect-server --from "$maj.$((min + 1)).0"
done
for f in "$ROOT"/tests/apps/*/*.yaml; do
	app=$(basename "$(dirname "$f")")
	b=$(basename "$f" .yaml)
	inject_fixture "apps/$b" "$f" --profile "$app"
done
for f in "$ROOT"/tests/bad/*.yaml "$ROOT"/tests/bad/*.json "$ROOT"/tests/odd/*.yaml; do
	d=$(basename "$(dirname "$f")")
	b=$(basename "$f")
	run_case "cli-inject/$d/$b" "$f" "$ROOT" -- lockstep inject --profile prefect-server
	run_case "postrender/$d/$b" "$f" "$ROOT" -- lockstep inject
done

# ---- Helm 4 running the post-renderer plugin for real ----------------------------------------
for phase in presync sync; do
	run_case "helm4-postrender/prefect-cloud-1.2.0/args-phase-$phase" $NULL "$ROOT" "HELM_PLUGINS={plugins}" -- \
		"$TOOLS/helm4" template prefect "$EX/charts/prefect-cloud-1.2.0" -n prefect \
		-f "$EX/values/prefect-cloud/values-1.2.0.yaml" --post-renderer lockstep-postrender \
		"--post-renderer-args=--phase=$phase"
done
run_case "helm4-postrender/prefect-server" $NULL "$ROOT" "HELM_PLUGINS={plugins}" -- \
	"$TOOLS/helm4" template prefect-server "$EX/charts/prefect-server" --post-renderer lockstep-postrender \
	--post-renderer-args=--profile=prefect-server

# ---- plan: CLI and the Helm plugin ----------------------------------------------------------
for out in text json; do
	run_case "cli-plan/prefect-cloud-0.4.2-to-1.2.0/$out" $NULL "$ROOT" -- \
		lockstep plan --profile prefect-customer-managed --from 0.4.2 --to 1.2.0 --output "$out"
	run_case "cli-plan/app-prefect-server/$out" $NULL "$EX/apps/prefect-server" -- lockstep plan --output "$out"
	run_case "helm-plugin/plan/prefect-cloud-1.2.0-from-0.4.2/$out" $NULL "$ROOT" "HELM_NAMESPACE=customer-managed" -- \
		lockstep helm plan customer-managed "$EX/charts/prefect-cloud-1.2.0" \
		-f "$EX/values/prefect-cloud/values-1.2.0.yaml" --from 0.4.2 -o "$out"
done

echo
printf 'compare.sh: %d cases (%d exit 0 with the new binary): %d same stdout and status, %d differ' \
	"$cases" "$succeeded" "$same" "$differ"
printf '; stderr differs in %d of the same ones\n' "$stderr_only"
printf '  old: %s\n  new: %s\n' "$OLD" "$NEW"
if [ "$differ" -gt 0 ]; then
	printf '  differing: %s\n' "${differing[@]}"
	exit 1
fi
