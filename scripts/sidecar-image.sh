#!/usr/bin/env bash
# The Argo CD sidecar image (deploy/argocd), built and tested with podman.
#
#   bash scripts/sidecar-image.sh build   # builds localhost/lockstep-cmp:<version> from this checkout
#   bash scripts/sidecar-image.sh test    # runs it as argocd-repo-server runs a CMP sidecar
#   bash scripts/sidecar-image.sh ci      # .ci/run: installs podman when root with apt and it is
#                                         # missing, then build + test; one line and exit 0 where
#                                         # podman cannot work
#   bash scripts/sidecar-image.sh check   # exit 0 when podman can build and run here, else 1 + why
#   bash scripts/sidecar-image.sh save FILE               # the image as an OCI archive
#   bash scripts/sidecar-image.sh static-lockstep [TRIPLE] # the static build; prints its path
#
# build: a FROM scratch image (deploy/argocd/Containerfile) holding only
#   /usr/local/bin/lockstep  this checkout, linked statically (crt-static, glibc), release build
#   /usr/local/bin/helm      .tools/bin/helm3 (v3.19.0, checksum-pinned by scripts/install-tools.sh)
#   /etc/passwd, /etc/group  deploy/argocd/image/ (root and argocd 999:999)
#   /etc/ssl/certs/ca-certificates.crt  the build machine's CA bundle (LOCKSTEP_CA_BUNDLE to
#                            choose another); its origin and sha256 are printed, kept in
#                            target/sidecar-image/ca-bundle.txt and in the image's labels
#   /tmp                     empty, 1777 (the sidecar mounts its own emptyDir there)
# Reproducible: every file's time is SOURCE_DATE_EPOCH (default: the commit time of HEAD),
# modes are fixed, paths in the binary are remapped; the image ID is printed, and is the
# same for two builds of one checkout. deploy/argocd/Dockerfile builds the same layout for
# Docker/BuildKit users (tests/sidecar_image.rs keeps the two in step).
#
# test: for every app in examples/apps, `lockstep argocd init|generate|parameters` run in the
# image as user 999, read-only root, /tmp a tmpfs, no network, no capabilities, the repository
# read-only at /tmp/_cmp_server/<id>, the working directory at the app path, Argo CD's env
# and parameters; stdout, stderr and exit code must equal the host binary's (target/debug/lockstep,
# or LOCKSTEP_HOST_BIN) run the same way with the same helm. A refused skip must exit 3 with
# nothing on stdout.
#
# podman: run as root. Defaults that work on Debian 12 VMs (crun fails there: "cgroups in
# hybrid mode not supported"): --runtime runc when runc is installed, --cgroup-manager
# cgroupfs, and a containers.conf with default_ulimits = [] unless CONTAINERS_CONF is set.
# LOCKSTEP_PODMAN_FLAGS replaces these flags. LOCKSTEP_IMAGE names the image.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
OUT="$ROOT/target/sidecar-image"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
IMAGE="${LOCKSTEP_IMAGE:-localhost/lockstep-cmp:$VERSION}"

say() { printf 'sidecar-image: %s\n' "$*" >&2; }
die() {
	printf 'sidecar-image: error: %s\n' "$*" >&2
	exit 1
}

mkdir -p "$OUT"
if [[ -z "${CONTAINERS_CONF:-}" ]]; then
	printf '[containers]\ndefault_ulimits = []\n' >"$OUT/containers.conf"
	export CONTAINERS_CONF="$OUT/containers.conf"
fi
if [[ -n "${LOCKSTEP_PODMAN_FLAGS+x}" ]]; then
	read -r -a PODMAN_FLAGS <<<"$LOCKSTEP_PODMAN_FLAGS"
else
	PODMAN_FLAGS=(--cgroup-manager=cgroupfs)
	if command -v runc >/dev/null 2>&1; then PODMAN_FLAGS+=(--runtime runc); fi
fi
pm() { podman "${PODMAN_FLAGS[@]}" "$@"; }

# Why podman cannot build and run an image here, or nothing (exit 0) when it can.
why_not() {
	command -v podman >/dev/null 2>&1 || {
		echo "podman is not installed (Debian: apt-get install podman runc)"
		return 1
	}
	[[ $(id -u) == 0 ]] || {
		echo "not root (the image is built and run with rootful podman)"
		return 1
	}
	local err
	err=$(pm info --format '{{.Host.OCIRuntime.Name}}' 2>&1 >/dev/null) || {
		echo "podman info failed: ${err%%$'\n'*}"
		return 1
	}
	return 0
}

host_triple() { rustc -vV | sed -n 's/^host: //p'; }

# The static lockstep for TRIPLE (default: this machine's), path of the binary on stdout.
static_lockstep() {
	local triple="${1:-$(host_triple)}" cargo_home="${CARGO_HOME:-$HOME/.cargo}"
	case $triple in
	*-linux-gnu) ;;
	*) die "static builds are set up for *-linux-gnu targets, not $triple" ;;
	esac
	say "building lockstep (release, static, $triple) in target/static ..."
	RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$ROOT=/build/lockstep --remap-path-prefix=$cargo_home=/build/cargo" \
		cargo build --release --locked --quiet --target "$triple" --target-dir "$ROOT/target/static" --bin lockstep >&2 ||
		die "cargo build of the static lockstep failed"
	echo "$ROOT/target/static/$triple/release/lockstep"
}

ca_origin() { # FILE -> one line: where the bundle comes from
	local f="$1" pkg
	if command -v dpkg >/dev/null 2>&1 && pkg=$(dpkg -S "$(readlink -f "$f")" 2>/dev/null | head -n 1); then
		echo "$f (Debian package ${pkg%%:*} $(dpkg-query -W -f='${Version}' "${pkg%%:*}" 2>/dev/null))"
	elif command -v dpkg-query >/dev/null 2>&1 && dpkg-query -W ca-certificates >/dev/null 2>&1; then
		echo "$f (generated by Debian ca-certificates $(dpkg-query -W -f='${Version}' ca-certificates))"
	else
		echo "$f"
	fi
}

build() {
	local why
	why=$(why_not) || die "cannot build the image here: $why"
	bash scripts/install-tools.sh
	local helm="$ROOT/.tools/bin/helm3" ca="${LOCKSTEP_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
	[[ -f "$ca" ]] || die "no CA bundle at $ca (Debian: apt-get install ca-certificates; or set LOCKSTEP_CA_BUNDLE)"
	local epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
	local revision
	revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
	local bin
	bin=$(static_lockstep)

	local rootfs="$OUT/context/rootfs"
	rm -rf "$OUT/context"
	mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs"
	install -m 0755 "$bin" "$rootfs/usr/local/bin/lockstep"
	install -m 0755 "$helm" "$rootfs/usr/local/bin/helm"
	install -m 0644 deploy/argocd/image/passwd "$rootfs/etc/passwd"
	install -m 0644 deploy/argocd/image/group "$rootfs/etc/group"
	install -m 0644 "$ca" "$rootfs/etc/ssl/certs/ca-certificates.crt"
	install -d -m 1777 "$rootfs/tmp"
	find "$rootfs" -type d ! -path "$rootfs/tmp" -exec chmod 0755 {} +
	find "$OUT/context" -exec touch -h -d "@$epoch" {} +
	cp deploy/argocd/Containerfile "$OUT/context/Containerfile"

	local ca_sha ca_from build_id
	ca_sha=$(sha256sum "$ca" | cut -d' ' -f1)
	ca_from=$(ca_origin "$ca")
	build_id=$("$bin" build-id)
	printf 'origin: %s\nsha256: %s\n' "$ca_from" "$ca_sha" >"$OUT/ca-bundle.txt"
	say "CA bundle: $ca_from, sha256 $ca_sha"

	pm build --quiet --pull=never --network=none --timestamp "$epoch" \
		--label "org.opencontainers.image.title=lockstep-cmp" \
		--label "org.opencontainers.image.version=$VERSION" \
		--label "org.opencontainers.image.revision=$revision" \
		--label "dev.lockstep.build-id=$build_id" \
		--label "dev.lockstep.helm=$("$helm" version --short)" \
		--label "dev.lockstep.ca-bundle.origin=$ca_from" \
		--label "dev.lockstep.ca-bundle.sha256=$ca_sha" \
		-f "$OUT/context/Containerfile" -t "$IMAGE" "$OUT/context" >"$OUT/image-id" ||
		die "podman build failed"
	local id
	id=$(pm image inspect --format '{{.Id}}' "$IMAGE")
	echo "sha256:$id" >"$OUT/image-id"
	# Smoke run: a binary that is not static cannot start in a FROM scratch image.
	local v
	v=$(pm run --rm --network=none "$IMAGE" --version) || die "the image does not run lockstep --version"
	pm run --rm --network=none --entrypoint /usr/local/bin/helm "$IMAGE" version --short >/dev/null ||
		die "the image does not run helm version"
	say "built $IMAGE ($v, build id $build_id)"
	say "image ID sha256:$id (SOURCE_DATE_EPOCH=$epoch)"
	echo "$IMAGE sha256:$id"
}

# ---- test -------------------------------------------------------------------------------
FAILS=0
fail() {
	say "FAIL: $*"
	FAILS=$((FAILS + 1))
}

test_image() {
	local why
	why=$(why_not) || die "cannot run the image here: $why"
	pm image exists "$IMAGE" || die "no image $IMAGE: run 'bash scripts/sidecar-image.sh build' first"
	bash scripts/install-tools.sh
	local host="${LOCKSTEP_HOST_BIN:-}"
	if [[ -z "$host" ]]; then
		cargo build --locked --quiet --bin lockstep >&2 || die "cargo build failed"
		host="$ROOT/target/debug/lockstep"
	fi
	[[ -x "$host" ]] || die "host binary $host is missing"

	# The repository, as the repo-server sends it: a fresh copy under /tmp/_cmp_server/<id>
	# (the same path on the host and in the container, so paths in messages agree).
	local id work hostbin
	id=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
	work="/tmp/_cmp_server/$id"
	hostbin="$OUT/host-bin-$id"
	mkdir -p "$work" "$hostbin" "$OUT/host-home-$id"
	CLEANUP=("$work" "$hostbin" "$OUT/host-home-$id")
	trap 'rm -rf "${CLEANUP[@]}"' EXIT
	if git rev-parse --git-dir >/dev/null 2>&1; then
		git ls-files -z --cached --others --exclude-standard | tar -c --null -T - -f - | tar -x -C "$work"
	else
		tar -c --exclude=./target --exclude=./.tools -f - . | tar -x -C "$work"
	fi
	# The host runs the same helm as the image (helm 3.19.0).
	ln -s "$ROOT/.tools/bin/helm3" "$hostbin/helm"

	local apps=() a
	for a in examples/apps/*/lockstep.yaml; do apps+=("$(basename "$(dirname "$a")")"); done
	((${#apps[@]})) || die "no example apps (examples/apps/*/lockstep.yaml)"

	local compared=0
	for a in "${apps[@]}"; do
		local params='[{"name":"release","string":"'"$a"'"}]'
		local penv=(PARAM_RELEASE="$a")
		for sub in init generate parameters; do
			compare "$work" "$hostbin" "$a" "$sub" 0 "$params" "${penv[@]}" && compared=$((compared + 1))
		done
	done
	# A refused skip: prefect-cloud is at 1.2.0; deployed 0.4.2 would skip four release lines.
	compare "$work" "$hostbin" prefect-cloud generate 3 \
		'[{"name":"from","string":"0.4.2"}]' PARAM_FROM=0.4.2 && compared=$((compared + 1))

	if ((FAILS)); then
		die "$FAILS of $((compared + FAILS)) comparisons failed (outputs kept in $OUT/test)"
	fi
	say "ok: $compared runs of $IMAGE match the host binary byte for byte (${#apps[@]} apps: ${apps[*]}; init, generate, parameters; a refused skip exits 3 with empty stdout)"
}

# compare WORK HOSTBIN APP SUB WANT_RC PARAMS_JSON [PARAM_X=V...]
compare() {
	local work="$1" hostbin="$2" app="$3" sub="$4" want="$5" params="$6"
	shift 6
	local dir="$OUT/test/$app-$sub-$want" appdir="$work/examples/apps/$app"
	rm -rf "$dir"
	mkdir -p "$dir"
	local rev=0123456789abcdef0123456789abcdef01234567
	local env=(
		"ARGOCD_APP_NAME=$app"
		"ARGOCD_APP_SOURCE_REPO_URL=https://git.example.com/platform/deploy.git"
		"ARGOCD_APP_SOURCE_PATH=examples/apps/$app"
		"ARGOCD_APP_SOURCE_TARGET_REVISION=main"
		"ARGOCD_ENV_ENVIRONMENT=production"
		"ARGOCD_APP_PARAMETERS=$params"
		"$@"
	)
	if [[ $sub != parameters ]]; then # the dynamic parameters command gets fewer variables
		env+=(
			"ARGOCD_APP_NAMESPACE=argo-dest"
			"ARGOCD_APP_PROJECT_NAME=default"
			"ARGOCD_APP_REVISION=$rev"
			"ARGOCD_APP_REVISION_SHORT=${rev:0:7}"
			"ARGOCD_APP_REVISION_SHORT_8=${rev:0:8}"
			"KUBE_VERSION=1.33.1"
			"KUBE_API_VERSIONS=v1,v1/ConfigMap,v1/Secret,v1/Service,apps/v1,apps/v1/Deployment,batch/v1,batch/v1/Job,autoscaling/v2,networking.k8s.io/v1,networking.k8s.io/v1/Ingress"
		)
	fi
	local eargs=() e
	for e in "${env[@]}"; do eargs+=(-e "$e"); done

	local crc=0 hrc=0
	pm run --rm --network=none --user 999:999 --read-only --tmpfs /tmp:rw,mode=1777 \
		--cap-drop=ALL --security-opt=no-new-privileges \
		-v "$work:$work:ro" -w "$appdir" "${eargs[@]}" \
		--entrypoint /usr/local/bin/lockstep "$IMAGE" argocd "$sub" \
		>"$dir/container.out" 2>"$dir/container.err" || crc=$?
	local home="$OUT/host-home-${work##*/}"
	(cd "$appdir" && env -i PATH="$hostbin:/usr/bin:/bin" HOME="$home" \
		HELM_CACHE_HOME="$home/helm/cache" HELM_CONFIG_HOME="$home/helm/config" HELM_DATA_HOME="$home/helm/data" \
		"${env[@]}" "$host" argocd "$sub") >"$dir/host.out" 2>"$dir/host.err" || hrc=$?

	local what="$app: lockstep argocd $sub"
	[[ $want == 3 ]] && what="$what (refused skip)"
	if [[ $crc != "$want" ]]; then
		fail "$what: the image exited $crc, expected $want: $(head -c 600 "$dir/container.err")"
		return 1
	fi
	if [[ $hrc != "$want" ]]; then
		fail "$what: the host binary exited $hrc, expected $want: $(head -c 600 "$dir/host.err")"
		return 1
	fi
	if ! cmp -s "$dir/container.out" "$dir/host.out"; then
		fail "$what: stdout differs between the image and the host binary (diff $dir/host.out $dir/container.out)"
		return 1
	fi
	if ! cmp -s "$dir/container.err" "$dir/host.err"; then
		fail "$what: stderr differs between the image and the host binary (diff $dir/host.err $dir/container.err)"
		return 1
	fi
	if [[ $want == 3 ]]; then
		[[ ! -s $dir/container.out ]] || { fail "$what: wrote to stdout"; return 1; }
		grep -q 'skips' "$dir/container.err" || { fail "$what: stderr does not say why: $(head -c 300 "$dir/container.err")"; return 1; }
	elif [[ $sub == generate && ! -s $dir/container.out ]]; then
		fail "$what: empty stdout"
		return 1
	fi
	say "ok: $what ($(wc -c <"$dir/container.out") bytes, exit $crc)"
}

ci() {
	if ! command -v podman >/dev/null 2>&1 && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
		say "installing podman and runc with apt-get ..."
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc; } >"$OUT/apt.log" 2>&1 ||
			say "apt-get install podman runc failed (log: $OUT/apt.log)"
	fi
	local why start=$SECONDS
	if ! why=$(why_not); then
		echo "sidecar-image: SKIPPED: the sidecar image is not built or tested here: $why"
		return 0
	fi
	build >/dev/null
	test_image
	say "build + test took $((SECONDS - start)) s"
}

case "${1:-}" in
build) build ;;
test) test_image ;;
static-lockstep) static_lockstep "${2:-}" ;;
save)
	[[ -n "${2:-}" ]] || die "usage: bash scripts/sidecar-image.sh save FILE"
	pm image exists "$IMAGE" || die "no image $IMAGE: run 'bash scripts/sidecar-image.sh build' first"
	# podman save --format oci-archive, made reproducible: the OCI layout podman writes,
	# tarred with sorted names, owner 0 and the image's timestamp.
	rm -rf "$OUT/oci"
	pm save --quiet --format oci-dir -o "$OUT/oci" "$IMAGE" || die "podman save failed"
	epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
	tar -C "$OUT/oci" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
		--format=gnu -cf "$2" . || die "cannot write $2"
	rm -rf "$OUT/oci"
	;;
ci) ci ;;
check)
	why=$(why_not) || {
		echo "$why"
		exit 1
	}
	;;
*)
	echo "usage: bash scripts/sidecar-image.sh build|test|ci|check|save FILE|static-lockstep [TRIPLE]" >&2
	exit 2
	;;
esac
