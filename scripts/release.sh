#!/usr/bin/env bash
# Release artifacts for VERSION, laid out as the Helm plugin's install hook downloads them
# (LOCKSTEP_DOWNLOAD_BASE/vVERSION/FILE; on GitHub: releases/download/vVERSION/FILE):
#
#   bash scripts/release.sh VERSION [--out DIR] [--binary FILE] [--no-image]
#
#   DIR/vVERSION/lockstep-VERSION-linux-amd64.tar.gz          lockstep (static) + README.md
#   DIR/vVERSION/lockstep-VERSION-linux-amd64.tar.gz.sha256   "<sha256>  <file>", one per archive
#   DIR/vVERSION/lockstep-VERSION-linux-arm64.tar.gz(.sha256) only where the toolchain can build it
#   DIR/vVERSION/lockstep-cmp-VERSION-linux-amd64.oci.tar     the Argo CD sidecar image
#                                                             (podman save --format oci-archive)
#   DIR/vVERSION/SHA256SUMS                                   every file above
#
# DIR defaults to target/release-artifacts. VERSION must be the version of Cargo.toml,
# plugin.yaml and helm-postrender/plugin.yaml (a leading v is accepted). The archives are
# reproducible: names sorted, owner 0, times SOURCE_DATE_EPOCH (default: HEAD's commit time),
# gzip without a name or time.
# --binary FILE packages FILE as the linux-amd64 binary instead of building it (tests use
# their debug build); --no-image leaves out the image (podman needed). arm64 is built when
# rustup has the aarch64-unknown-linux-gnu target and aarch64-linux-gnu-gcc is on PATH;
# otherwise the script says it was skipped and why.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"

say() { printf 'release: %s\n' "$*" >&2; }
die() {
	printf 'release: error: %s\n' "$*" >&2
	exit 1
}
usage() { die "usage: bash scripts/release.sh VERSION [--out DIR] [--binary FILE] [--no-image]"; }

[[ $# -ge 1 ]] || usage
VERSION="${1#v}"
shift
OUT_BASE="$ROOT/target/release-artifacts"
BINARY=
IMAGE=1
while [[ $# -gt 0 ]]; do
	case $1 in
	--out) [[ $# -ge 2 ]] || usage; OUT_BASE="$2"; shift 2 ;;
	--binary) [[ $# -ge 2 ]] || usage; BINARY="$2"; shift 2 ;;
	--no-image) IMAGE=0; shift ;;
	*) usage ;;
	esac
done

[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || die "'$VERSION' is not a version (e.g. 0.1.0)"
for f in Cargo.toml plugin.yaml helm-postrender/plugin.yaml; do
	v=$(sed -n 's/^version[[:space:]]*[=:][[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' "$f" | head -n 1)
	[[ $v == "$VERSION" ]] || die "$f says version '$v', not $VERSION: bump every version together before releasing"
done

EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}"
OUT="$OUT_BASE/v$VERSION"
rm -rf "$OUT"
mkdir -p "$OUT"

# archive OS ARCH BINARY: the tarball and its .sha256 for the install hook.
archive() {
	local os="$1" arch="$2" bin="$3" name stage
	name="lockstep-$VERSION-$os-$arch"
	stage=$(mktemp -d)
	mkdir "$stage/$name"
	install -m 0755 "$bin" "$stage/$name/lockstep"
	install -m 0644 README.md "$stage/$name/README.md"
	find "$stage/$name" -exec touch -h -d "@$EPOCH" {} +
	tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" \
		--format=gnu -cf - "$name" | gzip -n >"$OUT/$name.tar.gz"
	rm -rf "$stage"
	(cd "$OUT" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
	say "$name.tar.gz: $(cut -d' ' -f1 "$OUT/$name.tar.gz.sha256")"
}

# linux amd64
if [[ -n $BINARY ]]; then
	[[ -x $BINARY ]] || die "--binary $BINARY is not an executable file"
	amd64=$BINARY
else
	amd64=$(bash scripts/sidecar-image.sh static-lockstep x86_64-unknown-linux-gnu)
fi
got=$("$amd64" --version) || die "$amd64 does not run"
[[ $got == *" $VERSION" ]] || die "$amd64 reports '$got', not $VERSION"
archive linux amd64 "$amd64"

# linux arm64, where this toolchain can build it
arm=aarch64-unknown-linux-gnu
if ! rustup target list --installed 2>/dev/null | grep -qx "$arm"; then
	say "linux-arm64: skipped: the Rust target $arm is not installed (rustup target add $arm; plus a cross linker, aarch64-linux-gnu-gcc)"
elif ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1; then
	say "linux-arm64: skipped: no cross linker aarch64-linux-gnu-gcc on PATH (Debian: apt-get install gcc-aarch64-linux-gnu)"
else
	arm_bin=$(CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc bash scripts/sidecar-image.sh static-lockstep "$arm")
	archive linux arm64 "$arm_bin"
fi

# the Argo CD sidecar image
if ((IMAGE)); then
	bash scripts/sidecar-image.sh build >"$OUT/.image"
	read -r image id <"$OUT/.image"
	rm -f "$OUT/.image"
	bash scripts/sidecar-image.sh save "$OUT/lockstep-cmp-$VERSION-linux-amd64.oci.tar"
	say "lockstep-cmp-$VERSION-linux-amd64.oci.tar: $image, image ID $id"
else
	say "image: left out (--no-image)"
fi

(cd "$OUT" && find . -maxdepth 1 -type f ! -name SHA256SUMS ! -name '*.sha256' -printf '%f\n' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
say "artifacts in $OUT:"
(cd "$OUT" && ls -l >&2)
