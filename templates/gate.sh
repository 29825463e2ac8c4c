# lockstep upgrade gate (follows record.sh). Runs before anything of the release is
# applied and before any migration, with the release record read as record.sh says. All
# inputs are environment variables computed at render time; the script needs a POSIX
# shell and no API access.
#   LOCKSTEP_TARGET        the release being deployed, e.g. 1.2.0
#   LOCKSTEP_FROM_RANGES   the live releases the target may follow: LO:HI pairs of
#                          keys M.m.p.f (f: 0 a pre-release, 1 a release), computed
#                          by the same function as the render-time gate (gate.rs
#                          `predecessors`)
#   LOCKSTEP_NEWEST        the newest live release (a key) that is not a downgrade
#   LOCKSTEP_ALLOWED       the same ranges, for people
#   LOCKSTEP_DOWNGRADE_FROM  the exact release a requested downgrade leaves, or empty
#   LOCKSTEP_TERMINATION_LOG  where the reason goes (default /dev/termination-log)
term=${LOCKSTEP_TERMINATION_LOG:-/dev/termination-log}

fail() {
  printf 'lockstep gate: %s\n' "$1" >&2
  printf 'lockstep gate: %s\n' "$1" > "$term" 2>/dev/null || :
  exit 1
}

# major.minor.patch of a version; sets v_major v_minor v_patch and v_final (0 for a
# pre-release: a suffix whose first identifier is alpha, beta, rc, pre, dev, a or b
# followed by digits only; 1 otherwise: a release, a variant such as -python3.11, a
# package revision such as -1, +build), or fails when it is not a version. gate.rs
# `parse_version` reads versions the same way. A number of more than 18 digits is
# refused: the shell's comparisons could not tell its order.
split_version() {
  case $1 in
    [0-9]*.[0-9]*) ;;
    *) return 1 ;;
  esac
  v_major=${1%%.*}
  rest=${1#*.}
  v_minor=${rest%%[!0-9]*}
  rest=${rest#"$v_minor"}
  v_patch=0
  case $rest in
    .[0-9]*) rest=${rest#.}; v_patch=${rest%%[!0-9]*}; rest=${rest#"$v_patch"} ;;
  esac
  case $rest in
    ''|-?*|+?*) ;;
    *) return 1 ;;
  esac
  v_final=1
  case $rest in
    -?*)
      id=${rest#-}; id=${id%%.*}; id=${id%%+*}
      word=${id%%[!a-z]*}; tail=${id#"$word"}
      case $tail in
        *[!0-9]*) ;;
        *) case $word in alpha|beta|rc|pre|dev|a|b) v_final=0 ;; esac ;;
      esac ;;
  esac
  case $v_major$v_minor$v_patch in
    *[!0-9]*|'') return 1 ;;
  esac
  [ ${#v_major} -le 18 ] && [ ${#v_minor} -le 18 ] && [ ${#v_patch} -le 18 ]
}

if [ -z "$record_dir" ]; then
  echo "lockstep gate: no record of a migrated release (ConfigMaps $LOCKSTEP_RECORD, $LOCKSTEP_RECORD-backup): first install, passing"
  exit 0
fi
live=
IFS= read -r live < "$record_dir/release" || :
[ ${#live} -le 128 ] ||
  fail "the record $LOCKSTEP_RECORD holds a value of ${#live} characters, not a release version; refusing to migrate. Check the ConfigMaps $LOCKSTEP_RECORD and $LOCKSTEP_RECORD-backup, or delete both if this is a fresh database."
case $live in
  ''|*[!0-9A-Za-z.+_-]*)
    fail "the record $LOCKSTEP_RECORD does not hold a release version; refusing to migrate. Check the ConfigMaps $LOCKSTEP_RECORD and $LOCKSTEP_RECORD-backup, or delete both if this is a fresh database." ;;
esac
split_version "$live" ||
  fail "the record $LOCKSTEP_RECORD holds '$live', which is not a version; refusing to migrate. Check the ConfigMaps $LOCKSTEP_RECORD and $LOCKSTEP_RECORD-backup, or delete both if this is a fresh database."
l_major=$v_major l_minor=$v_minor l_patch=$v_patch l_final=$v_final
split_version "$LOCKSTEP_TARGET" || fail "internal: target '$LOCKSTEP_TARGET' is not a version"
t_major=$v_major t_minor=$v_minor t_patch=$v_patch

if [ -n "${LOCKSTEP_DOWNGRADE_FROM:-}" ] && [ "$live" = "$LOCKSTEP_DOWNGRADE_FROM" ]; then
  echo "lockstep gate: live release $live, downgrade to $LOCKSTEP_TARGET was requested at render time: passing"
  exit 0
fi

# key_le A B: whether key A (M.m.p.f) is at most key B.
key_le() {
  a=$1 b=$2
  for _ in 1 2 3 4; do
    x=${a%%.*} y=${b%%.*}
    [ "$x" -lt "$y" ] && return 0
    [ "$x" -gt "$y" ] && return 1
    a=${a#*.} b=${b#*.}
  done
  return 0
}

live_key="$l_major.$l_minor.$l_patch.$l_final"
for range in $LOCKSTEP_FROM_RANGES; do
  if key_le "${range%%:*}" "$live_key" && key_le "$live_key" "${range#*:}"; then
    echo "lockstep gate: live release $live, target $LOCKSTEP_TARGET: allowed"
    exit 0
  fi
done
key_le "$live_key" "$LOCKSTEP_NEWEST" ||
  fail "the live release is $live and this sync deploys the older $LOCKSTEP_TARGET: downgrades are refused. Take backups and render with --allow-downgrade, or sync a newer revision."
fail "the live release is $live (line $l_major.$l_minor) and this sync deploys $LOCKSTEP_TARGET, which can only follow: $LOCKSTEP_ALLOWED. Upgrade one release at a time: run 'lockstep plan --from $live --to $LOCKSTEP_TARGET' for the stops."
