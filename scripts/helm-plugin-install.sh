#!/bin/sh
# Install/update hook of the lockstep Helm plugin (plugin.yaml: hooks.install, hooks.update).
# Helm runs it with `sh -c`, HELM_PLUGIN_DIR set, from the user's working directory.
#
# 1. bin/lockstep: keep it if it runs, reports the plugin's version and was built from the
#    sources in this directory (`lockstep build-id` = the source id below); otherwise build
#    it with cargo (source checkout with cargo on PATH) or download the release archive for
#    this OS/arch, verifying its sha256 before extracting and its build id before installing.
#    So `helm plugin update` after a change of the sources never keeps a stale binary that
#    merely reports the same version.
# 2. Helm 4 only: install the post-renderer plugin helm-postrender/ (name
#    lockstep-postrender) with its own bin/lockstep pointing at ours, unless a Helm 3 on
#    PATH shares the plugins directory (Helm 3 cannot load a v1 plugin.yaml and then loads
#    no plugin at all).
# Environment: LOCKSTEP_DOWNLOAD_BASE (where the release archives are: BASE/vVERSION/FILE,
# default the GitHub releases), LOCKSTEP_POSTRENDER_FORCE=1 (install the post-renderer even
# next to a Helm 3).
# Contract with the binary: `bin/lockstep --version` exits 0 and prints the version;
# `bin/lockstep build-id` prints the source id it was built from (build.rs).
# `sh helm-plugin-install.sh --source-id DIR` prints DIR's source id and exits (tests).
set -eu

# The files the binary is built from; keep in step with SOURCES in build.rs. The source id
# is `find SOURCES -type f | LC_ALL=C sort | xargs sha256sum | sha256sum`.
SOURCES="Cargo.toml Cargo.lock build.rs src profiles templates"

# $1: install or update (plugin.yaml's hooks pass it); anything else is treated as update.
MODE=${1:-update}
REGISTERED=

say() { printf 'lockstep: %s\n' "$*"; }
die() {
	printf 'lockstep: error: %s\n' "$*" >&2
	if [ "$MODE" = install ] && [ -n "$REGISTERED" ]; then
		unregister
	elif [ "$MODE" = install ]; then
		printf 'lockstep: helm keeps the plugin registered after a failed hook: run "helm plugin uninstall lockstep" before installing again\n' >&2
	elif [ -f "$HELM_PLUGIN_DIR/bin/lockstep" ]; then
		printf 'lockstep: the update failed; bin/lockstep was not replaced\n' >&2
	else
		printf 'lockstep: the update failed and helm removed the old bin/lockstep: fix the cause and run "helm plugin update lockstep" again\n' >&2
	fi
	exit 1
}

# After a failed install, take back what helm registered (it keeps a plugin whose install
# hook failed), so that nothing is installed: the link to a local directory, or the copy
# helm made in its plugins directory (a git clone or an unpacked archive).
unregister() {
	if [ -L "$REGISTERED" ]; then
		rm -f "$REGISTERED" && printf 'lockstep: nothing installed: removed %s\n' "$REGISTERED" >&2
	elif [ -d "$REGISTERED" ]; then
		cd / && rm -rf "$REGISTERED" && printf 'lockstep: nothing installed: removed %s\n' "$REGISTERED" >&2
	fi
}

sha256_of() { # FILE (or - for stdin) -> lowercase hex digest on stdout
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | awk '{print $1}'
	elif command -v shasum >/dev/null 2>&1; then
		shasum -a 256 "$1" | awk '{print $1}'
	elif command -v openssl >/dev/null 2>&1; then
		if [ "$1" = - ]; then openssl dgst -sha256 -r; else openssl dgst -sha256 -r "$1"; fi | awk '{print $1}'
	else
		die "no sha256sum, shasum or openssl to verify the download"
	fi
}

# DIR -> its source id on stdout; fails when DIR does not hold the sources.
source_id() {
	(
		cd "$1" || exit 1
		for s in $SOURCES; do [ -e "$s" ] || exit 1; done
		# shellcheck disable=SC2086 # SOURCES is a list of words
		find $SOURCES -type f | LC_ALL=C sort | while IFS= read -r f; do
			printf '%s  %s\n' "$(sha256_of "$f")" "$f"
		done | sha256_of -
	)
}

if [ "${1:-}" = --source-id ]; then
	source_id "${2:-.}" || die "${2:-.} does not hold lockstep's sources ($SOURCES)"
	exit 0
fi

[ -n "${HELM_PLUGIN_DIR:-}" ] || die "HELM_PLUGIN_DIR is not set; this script is run by 'helm plugin install'"

# HELM_BIN is argv[0] as the user typed it: make a relative path absolute before cd.
HELM=${HELM_BIN:-}
case $HELM in
/*) ;;
*/*) HELM=$(pwd)/$HELM ;;
esac

cd "$HELM_PLUGIN_DIR" || die "cannot enter $HELM_PLUGIN_DIR"
[ -f plugin.yaml ] || die "no plugin.yaml in $HELM_PLUGIN_DIR"
# What helm registered: $HELM_PLUGIN_DIR, when it is an entry of a plugins directory
# (never the user's own checkout, which helm links to) holding this plugin.
case ${HELM_PLUGIN_DIR%/} in
*/plugins/*)
	parent=${HELM_PLUGIN_DIR%/}
	parent=${parent%/*}
	if [ "${parent##*/}" = plugins ] && grep -qx 'name: lockstep' plugin.yaml; then
		REGISTERED=${HELM_PLUGIN_DIR%/}
	fi
	;;
esac

VERSION=$(sed -n 's/^version:[[:space:]]*//p' plugin.yaml | head -n 1 | tr -d "\"' \r")
[ -n "$VERSION" ] || die "cannot read the version from $HELM_PLUGIN_DIR/plugin.yaml"

# The id of the sources here; empty when this directory does not hold them (then only the
# version can be checked).
SOURCE_ID=$(source_id .) || SOURCE_ID=

# True when $1 runs, reports the plugin's version (`lockstep --version`) and was built from
# these sources (`lockstep build-id`).
binary_ok() {
	[ -f "$1" ] && [ -x "$1" ] || return 1
	out=$("$1" --version 2>/dev/null) || return 1
	case $out in
	*"$VERSION"*) ;;
	*) return 1 ;;
	esac
	[ -z "$SOURCE_ID" ] || [ "$("$1" build-id 2>/dev/null)" = "$SOURCE_ID" ]
}

install_file() { # SRC: copy to bin/lockstep atomically
	mkdir -p bin || die "cannot create $HELM_PLUGIN_DIR/bin"
	cp "$1" bin/lockstep.tmp.$$ || die "cannot copy $1 to $HELM_PLUGIN_DIR/bin"
	chmod 755 bin/lockstep.tmp.$$
	mv -f bin/lockstep.tmp.$$ bin/lockstep || die "cannot write $HELM_PLUGIN_DIR/bin/lockstep"
}

fetch() { # URL FILE
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL --retry 3 -o "$2" "$1"
	elif command -v wget >/dev/null 2>&1; then
		wget -q -O "$2" "$1"
	else
		die "neither curl nor wget is available to download $1"
	fi
}

build_with_cargo() {
	say "building lockstep $VERSION with cargo (cargo build --release --locked) ..."
	cargo build --release --locked || die "cargo build --release --locked failed in $HELM_PLUGIN_DIR"
	target=${CARGO_TARGET_DIR:-target}
	[ -f "$target/release/lockstep" ] || die "cargo build succeeded but $target/release/lockstep is missing"
	install_file "$target/release/lockstep"
}

download_release() {
	case $(uname -s) in
	Linux) os=linux ;;
	Darwin) os=darwin ;;
	*) die "unsupported OS '$(uname -s)': prebuilt binaries exist for Linux and Darwin; install cargo and reinstall to build from source" ;;
	esac
	case $(uname -m) in
	x86_64 | amd64) arch=amd64 ;;
	aarch64 | arm64) arch=arm64 ;;
	*) die "unsupported architecture '$(uname -m)': prebuilt binaries exist for amd64 and arm64; install cargo and reinstall to build from source" ;;
	esac

	name=lockstep-${VERSION}-${os}-${arch}.tar.gz
	# LOCKSTEP_DOWNLOAD_BASE: a mirror laid out like the GitHub releases (vVERSION/FILE).
	base=${LOCKSTEP_DOWNLOAD_BASE:-https://github.com/lockstep-dev/lockstep/releases/download}
	url=${base%/}/v${VERSION}/${name}
	tmp=$(mktemp -d 2>/dev/null || mktemp -d -t lockstep) || die "cannot create a temporary directory"
	trap 'rm -rf "$tmp"' EXIT
	trap 'exit 1' HUP INT TERM

	say "downloading $url"
	fetch "$url" "$tmp/$name" || die "download failed: $url"
	fetch "$url.sha256" "$tmp/$name.sha256" || die "download failed: $url.sha256"

	expected=$(awk 'NR == 1 {print tolower($1)}' "$tmp/$name.sha256")
	case $expected in
	'' | *[!0-9a-f]*) die "$url.sha256 does not hold a sha256 digest" ;;
	esac
	[ ${#expected} -eq 64 ] || die "$url.sha256 does not hold a sha256 digest"
	actual=$(sha256_of "$tmp/$name")
	if [ "$actual" != "$expected" ]; then
		die "checksum mismatch for $name: expected $expected, got $actual; refusing to install"
	fi
	say "sha256 verified: $actual"

	mkdir "$tmp/x"
	tar -xzf "$tmp/$name" -C "$tmp/x" || die "cannot extract $name"
	found=$(find "$tmp/x" -type f -name lockstep | head -n 1)
	[ -n "$found" ] || die "$name holds no file named lockstep"
	chmod 755 "$found"
	if [ -n "$SOURCE_ID" ]; then
		got=$("$found" build-id 2>/dev/null) || got="none (it does not run here)"
		[ "$got" = "$SOURCE_ID" ] || die "$name was built from other sources (build id $got) than this plugin directory ($SOURCE_ID), though both say version $VERSION: install cargo and run the update again to build this checkout, or install the plugin from the tag v$VERSION"
		say "build id verified: $got"
	fi
	install_file "$found"
}

# ---- 1. the binary ----------------------------------------------------------------------
if binary_ok bin/lockstep; then
	say "bin/lockstep $VERSION is already installed${SOURCE_ID:+ (build id $SOURCE_ID)}"
elif command -v cargo >/dev/null 2>&1 && [ -f Cargo.toml ]; then
	build_with_cargo
else
	download_release
fi
binary_ok bin/lockstep || die "$HELM_PLUGIN_DIR/bin/lockstep does not run, does not report version $VERSION (bin/lockstep --version) or was not built from these sources (bin/lockstep build-id)"
say "installed $HELM_PLUGIN_DIR/bin/lockstep"

# ---- 2. Helm 4: the post-renderer plugin ------------------------------------------------
# Helm 3 sets HELM_BIN for hooks; Helm 4 (4.3) does not, so find the helm that runs this
# hook among our ancestors (sh -c may or may not exec us), then fall back to PATH.
exe_of() { # PID -> path of its executable
	if [ -e "/proc/$1/exe" ]; then
		readlink "/proc/$1/exe" 2>/dev/null && return 0
	fi
	ps -o comm= -p "$1" 2>/dev/null # macOS: the full path
}
parent_of() { # PID -> parent PID
	if [ -r "/proc/$1/status" ]; then
		awk '/^PPid:/ {print $2}' "/proc/$1/status"
	else
		ps -o ppid= -p "$1" 2>/dev/null | tr -d ' '
	fi
}
helm_version_of() { "$1" version --template '{{.Version}}' 2>/dev/null; }

if [ -z "$HELM" ]; then
	pid=$PPID
	for i in 1 2 3; do
		[ -n "$pid" ] && [ "$pid" -gt 1 ] 2>/dev/null || break
		exe=$(exe_of "$pid") || exe=
		case ${exe##*/} in
		'' | sh | dash | bash | zsh | ash | ksh | busybox) ;;
		*)
			if [ -x "$exe" ] && helm_version_of "$exe" >/dev/null; then
				HELM=$exe
				break
			fi
			;;
		esac
		pid=$(parent_of "$pid")
	done
fi
[ -n "$HELM" ] || HELM=helm

helm_version=$(helm_version_of "$HELM") || helm_version=
case $helm_version in
v3.*)
	say "helm $helm_version: no post-renderer plugin (Helm 3 post-renderers never see hooks)"
	exit 0
	;;
v[4-9].* | v[1-9][0-9]*.*) ;;
*)
	say "warning: cannot tell the version of '$HELM'; the Helm 4 post-renderer plugin lockstep-postrender was not installed" >&2
	exit 0
	;;
esac

pr=$HELM_PLUGIN_DIR/helm-postrender
[ -f "$pr/plugin.yaml" ] || die "missing $pr/plugin.yaml"
mkdir -p "$pr/bin" || die "cannot create $pr/bin"
rm -f "$pr/bin/lockstep"
# Relative link, valid as long as helm-postrender/ stays inside this plugin (Helm 4 links a
# local directory into its plugins directory); a copy where links cannot be made.
if ! ln -s ../../bin/lockstep "$pr/bin/lockstep" 2>/dev/null || ! binary_ok "$pr/bin/lockstep"; then
	rm -f "$pr/bin/lockstep"
	cp bin/lockstep "$pr/bin/lockstep" || die "cannot copy bin/lockstep to $pr/bin"
	chmod 755 "$pr/bin/lockstep"
fi

manual="\"$HELM\" plugin install \"$pr\""

# Helm 3 parses every plugin.yaml in its plugins directory strictly and stops loading ALL
# plugins at this one (json: unknown field "apiVersion"). Do not break a Helm 3 that
# shares the directory (the default: both use \$HELM_DATA_HOME/plugins).
canon() { (cd "$1" 2>/dev/null && pwd -P); }
# Helm 4.3 installs a local directory into $HELM_DATA_HOME/plugins, whatever HELM_PLUGINS says.
target_dir=$("$HELM" env HELM_DATA_HOME 2>/dev/null)/plugins
target=$(canon "$target_dir") || target=$target_dir
if [ "${LOCKSTEP_POSTRENDER_FORCE:-}" != 1 ]; then
	for cand in helm helm3; do
		h3=$(command -v "$cand" 2>/dev/null) || continue
		case $(helm_version_of "$h3") in v3.*) ;; *) continue ;; esac
		h3dirs=$("$h3" env HELM_PLUGINS 2>/dev/null) || continue
		old_ifs=$IFS
		IFS=:
		for d in $h3dirs; do
			IFS=$old_ifs
			if [ -n "$d" ] && [ "$(canon "$d")" = "$target" ]; then
				say "warning: $h3 (Helm 3) loads plugins from $d too, and would fail to load every plugin" >&2
				say "warning: once the Helm 4 post-renderer plugin lockstep-postrender is there. Not installed." >&2
				say "To use --post-renderer lockstep-postrender, give Helm 4 its own HELM_DATA_HOME and run" >&2
				say "  $manual" >&2
				say "(or rerun this install with LOCKSTEP_POSTRENDER_FORCE=1 to install it anyway)." >&2
				exit 0
			fi
		done
		IFS=$old_ifs
	done
fi

# Re-installing (update, or another lockstep checkout) replaces the old registration; a
# link left by an uninstalled checkout would make the install fail with "already exists".
if "$HELM" plugin list 2>/dev/null | awk 'NR > 1 {print $1}' | grep -qx lockstep-postrender; then
	"$HELM" plugin uninstall lockstep-postrender >/dev/null ||
		die "cannot replace the installed plugin lockstep-postrender ('$HELM plugin uninstall lockstep-postrender' failed)"
fi
if [ -L "$target_dir/helm-postrender" ] && [ ! -f "$target_dir/helm-postrender/plugin.yaml" ]; then
	rm -f "$target_dir/helm-postrender"
fi
"$HELM" plugin install "$pr" ||
	die "'$manual' failed: the post-renderer plugin lockstep-postrender is not installed"
if [ -d "$target_dir/helm-postrender" ] && ! binary_ok "$target_dir/helm-postrender/bin/lockstep"; then
	die "the installed post-renderer cannot run $target_dir/helm-postrender/bin/lockstep"
fi
say "installed the Helm 4 post-renderer plugin lockstep-postrender (helm ... --post-renderer lockstep-postrender)"
