import { sh } from "./sh-source.js";

/**
 * The remote script's shared part: checks of every name, id and path (again,
 * whatever the server checked), the layout's paths, pointers, the per-app
 * lock, and the jobs (commands run under `timeout`, stoppable by op_cancel).
 *
 * Conventions: functions "return" through upper-case globals (LINKED,
 * DECODED, BLOB); helpers use `_`-prefixed names; `die` ends the script with
 * a message on stderr and an exit code the server maps to an error.
 */
export const REMOTE_COMMON = sh`
set -u
umask 022
die() { _code=$1; shift; printf "turnout-host: %s\n" "$*" >&2; exit "$_code"; }
refuse() { die 10 "$@"; }
info() { printf "%s\n" "$*" >&2; }

is_hex() { case $1 in *[!0123456789abcdef]*) return 1;; esac; }
valid_id() { [ \${#1} -eq 16 ] && is_hex "$1"; }
valid_sha() { [ \${#1} -eq 64 ] && is_hex "$1"; }
valid_nonce() { [ \${#1} -eq 16 ] && is_hex "$1"; }
valid_name() {
  [ \${#1} -ge 1 ] && [ \${#1} -le 63 ] || return 1
  case $1 in -*|*[!abcdefghijklmnopqrstuvwxyz0123456789-]*) return 1;; esac
}
valid_count() { [ \${#1} -ge 1 ] && [ \${#1} -le 7 ] || return 1; case $1 in *[!0123456789]*) return 1;; esac; }
valid_mode() { [ \${#1} -eq 3 ] || return 1; case $1 in *[!01234567]*) return 1;; esac; }
valid_root() {
  case $1 in /*) ;; *) return 1;; esac
  case $1 in *[!ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._-]*) return 1;; esac
  case $1/ in */../*|*/./*) return 1;; esac
}
# A relative path with no empty, "." or ".." component, no backslash.
valid_rel() {
  [ \${#1} -le 4096 ] || return 1
  case /$1/ in *//*|*/./*|*/../*) return 1;; esac
  case $1 in *\\*) return 1;; esac
}
valid_env_name() {
  case $1 in ""|[0123456789]*|*[!ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_]*) return 1;; esac
}
# Whether a symlink at $1 with target $2 stays inside the tree, read as text.
link_inside() {
  case $2 in ""|/*) return 1;; esac
  _d=0; _p=$1
  while :; do case $_p in */*) _p=\${_p#*/}; _d=$((_d + 1));; *) break;; esac; done
  _t=$2/
  while [ -n "$_t" ]; do
    _c=\${_t%%/*}; _t=\${_t#*/}
    case $_c in
      ""|.) ;;
      ..) [ "$_d" -gt 0 ] || return 1; _d=$((_d - 1));;
      *) _d=$((_d + 1));;
    esac
  done
}
# base64 → DECODED, keeping trailing newlines (command substitution strips them).
decode() {
  _v=$(printf "%s" "$1" | base64 -d && printf x) || refuse "bad base64 data"
  DECODED=\${_v%x}
}
need_tools() {
  for _tool in "$@"; do command -v "$_tool" >/dev/null 2>&1 || die 13 "$_tool is missing on this host"; done
}
# fsync what was written (GNU sync with operands), or everything where that is not available.
durable() { sync -- "$@" 2>/dev/null || sync; }
real_dir() { [ -d "$1" ] && [ ! -L "$1" ]; }
ensure_real_dir() {
  mkdir -p -- "$1" 2>/dev/null
  real_dir "$1" || die 12 "$1 exists and is not a directory (a symlink or a file)"
}

set_root() {
  valid_root "$1" || refuse "bad root"
  ROOT=$1; CACHE=$ROOT/.turnout/blobs; JOBS=$ROOT/.turnout/jobs
}
# A deploy path: valid_root, and normalized (no empty component, no trailing slash), not the file system root.
valid_path() {
  valid_root "$1" && [ "$1" != / ] || return 1
  case $1 in *//*|*/) return 1;; esac
}
# $1 the app, $2 its environment deploy path or "-" (<root>/<app>). APPPATH is the path when
# the layout is not <root>/<app>; never the root itself, nor inside <root>/.turnout.
set_app() {
  valid_name "$1" || refuse "bad app name"
  APP=$1; APPPATH=; APPDIR=$ROOT/$APP
  if [ "$2" != - ]; then
    valid_path "$2" || refuse "bad deploy path"
    [ "$2" != "$ROOT" ] || refuse "bad deploy path: not the release root itself"
    case $2/ in "$ROOT/.turnout/"*) refuse "bad deploy path: not inside $ROOT/.turnout";; esac
    if [ "$2" != "$ROOT/$APP" ]; then APPPATH=$2; APPDIR=$2; fi
  fi
  REL=$APPDIR/releases; SHARED=$APPDIR/shared
  if [ -e "$APPDIR" ] || [ -L "$APPDIR" ]; then real_dir "$APPDIR" || die 12 "$APPDIR is not a directory"; fi
}
# The deploy path, recorded once in <root>/.turnout/paths ("<app> <path>" lines) so the inventory
# finds it; a duplicate line from two connections at once is harmless (readers skip it). Before
# that, a layout at, around or inside the place of another app is refused, as the agent does
# (claimPlace): a recorded deploy path of another app, or, for a deploy path under the root,
# <root>/<name> holding releases that are not a recorded deploy path (the default place of app
# <name>). Two apps in one layout would share current.
check_place() {
  _base=\${ROOT%/}; _entry=
  if [ -n "$APPPATH" ]; then
    case $APPPATH in "$_base"/*) _entry=\${APPPATH#"$_base"/}; _entry=\${_entry%%/*};; esac
    [ "$_entry" != "$APP" ] || _entry=
  fi
  if [ -f "$ROOT/.turnout/paths" ]; then
    while read -r _a _p _x; do
      [ -n "$_p" ] && [ -z "$_x" ] || continue
      if [ -n "$_entry" ] && [ "$_p" = "$_base/$_entry" ]; then _entry=; fi
      [ "$_a" != "$APP" ] || continue
      case $APPDIR/ in "$_p"/*) _hit=1;; *) case $_p/ in "$APPDIR"/*) _hit=1;; *) _hit=;; esac;; esac
      [ -z "$_hit" ] || die 12 "layout refused for app $APP: $APPDIR overlaps $_p, the place of app $_a on this host"
    done <"$ROOT/.turnout/paths"
  fi
  if [ -n "$_entry" ] && real_dir "$_base/$_entry/releases"; then
    die 12 "layout refused for app $APP: $APPPATH overlaps $_base/$_entry, the place of app $_entry on this host"
  fi
}
record_path() {
  check_place
  [ -n "$APPPATH" ] || return 0
  ensure_real_dir "$ROOT/.turnout"
  grep -qxF -- "$APP $APPPATH" "$ROOT/.turnout/paths" 2>/dev/null ||
    printf "%s %s\n" "$APP" "$APPPATH" >>"$ROOT/.turnout/paths" || die 12 "cannot write $ROOT/.turnout/paths"
}
# Serializes pointers, the order file and release directories of one app across connections.
lock_app() {
  exec 9>>"$APPDIR/.lock" || die 12 "cannot open $APPDIR/.lock"
  if command -v flock >/dev/null 2>&1; then flock -w 120 9 || die 12 "$APPDIR is locked"; fi
}
unlock_app() { exec 9>&-; }

blob_path() { BLOB=$CACHE/\${1%\${1#??}}/$1; }

# The release a pointer names: "releases/<id>" for current, "../releases/<id>" for a slot
# (only the link text is read, never followed). LINKED is "" when it names none.
link_release() {
  LINKED=
  [ -L "$1" ] || return 0
  _t=$(readlink -- "$1") || return 0
  case $2 in current) _want=releases/;; *) _want=../releases/;; esac
  case $_t in "$_want"*) ;; *) return 0;; esac
  _t=\${_t#"$_want"}
  if valid_id "$_t"; then LINKED=$_t; fi
}
# Points pointer $1 at $2 atomically: a symlink under a temporary name renamed over it.
swap_link() {
  if [ -e "$1" ] && [ ! -L "$1" ]; then die 12 "$1 is a directory, not a release pointer"; fi
  _tmp=\${1%/*}/.\${1##*/}.tmp-$NONCE
  rm -f -- "$_tmp"
  ln -s -- "$2" "$_tmp" || die 12 "cannot create $_tmp"
  mv -T -f -- "$_tmp" "$1" || { rm -f -- "$_tmp"; die 12 "cannot switch $1"; }
  durable "\${1%/*}"
}
# Release ids on disk, oldest first: those missing from .releases (sorted), then
# those of the order file, each at its last position. Sets ORDERED (space-separated).
ordered_releases() {
  _listed=
  if [ -f "$APPDIR/.releases" ]; then
    while IFS= read -r _id || [ -n "$_id" ]; do
      valid_id "$_id" && real_dir "$REL/$_id" || continue
      _l=" $_listed "
      case $_l in *" $_id "*) _listed="\${_l%% $_id *} \${_l#* $_id }";; esac
      _listed="$_listed $_id"
    done <"$APPDIR/.releases"
  fi
  ORDERED=
  for _d in "$REL"/*; do
    _id=\${_d##*/}
    valid_id "$_id" && real_dir "$_d" || continue
    case " $_listed " in *" $_id "*) ;; *) ORDERED="$ORDERED $_id";; esac
  done
  ORDERED="$ORDERED $_listed"
}
# Leftovers of interrupted work by any connection: old staging and removal
# directories, temporary pointers (switches hold the lock, and take microseconds).
sweep_app() {
  find "$REL" -mindepth 1 -maxdepth 1 \( -name ".staging-*" -o -name ".removing-*" \) -mmin +60 \
    -exec rm -rf -- {} + 2>/dev/null
  for _dir in "$APPDIR" "$APPDIR/slots"; do
    real_dir "$_dir" || continue
    find "$_dir" -mindepth 1 -maxdepth 1 -name ".*.tmp-*" -mmin +1 -exec rm -f -- {} + 2>/dev/null
  done
  return 0
}

# Jobs: argv in dir $1 under timeout ($2 s), env pairs first ($3 of them), stdin
# from /dev/null, output to the log. The pid is recorded under JOBS/NONCE so that
# op_cancel can stop it (timeout passes the signal on to its whole process group).
# JOB_ID, JOB_DIR and JOB_FINAL become the TURNOUT_* variables the agent sets too.
JOB_ID=; JOB_DIR=; JOB_FINAL=
run_job() {
  _dir=$1; _secs=$2; _n=$3; shift 3
  mkdir -p -- "$JOBS" || die 12 "cannot create $JOBS"
  _timeout=$(command -v timeout) || die 13 "timeout is missing on this host"
  _job=$JOBS/$NONCE
  (
    cd "$_dir" || exit 126
    while [ "$_n" -gt 0 ]; do export "$1"; shift; _n=$((_n - 1)); done
    export TURNOUT_APP="$APP" TURNOUT_RELEASE_ID="$JOB_ID" TURNOUT_RELEASE_DIR="$JOB_DIR" TURNOUT_SHARED_DIR="$SHARED"
    if [ -n "$JOB_FINAL" ]; then export TURNOUT_RELEASE_FINAL_DIR="$JOB_FINAL"; fi
    exec "$_timeout" -k 10 "$_secs" "$@"
  ) </dev/null 1>&2 &
  _pid=$!
  printf "%s\n" "$_pid" >"$_job"
  if [ -e "$_job.cancel" ]; then kill -TERM "$_pid" 2>/dev/null; fi
  wait "$_pid"
  _st=$?
  rm -f -- "$_job" "$_job.cancel"
  return "$_st"
}
# E (env) and A (argv) lines, base64: the caller appends DECODED to its positional parameters
# (it passes "$@"); JOB_ENV counts the env pairs, which come first.
JOB_ENV=0
command_line() {
  case $1 in
    "E "*) [ "$JOB_ARGS" -eq 0 ] || refuse "env after argv"
      decode "\${1#E }"; valid_env_name "\${DECODED%%=*}" || refuse "bad variable name"
      case $DECODED in *=*) ;; *) refuse "bad variable";; esac
      JOB_ENV=$((JOB_ENV + 1));;
    "A "*) decode "\${1#A }"; JOB_ARGS=$((JOB_ARGS + 1));;
    *) return 1;;
  esac
}
JOB_ARGS=0
`;
