import { TurnoutError } from "../../../domain/errors.js";

/**
 * The one program Turnout runs on an SSH host. ssh hands the remote command
 * to the login shell as a string, so that string is built from this constant
 * script and from arguments that passed a strict pattern (and are
 * single-quoted anyway):
 *
 *   sh -c '<REMOTE_SCRIPT>' turnout-host <op> '<arg>'…
 *
 * Everything else (manifest entries, blob lists, argv and env of hooks, URLs)
 * is data on stdin, read line by line with `IFS= read -r` and never parsed as
 * code. Text that may hold anything (argv elements, env values, symlink
 * targets) travels base64-encoded and reaches commands only as quoted
 * expansions; commands run with `exec "$@"`, never through `eval`.
 *
 * stdout carries the protocol (`ok …` last on success), stderr the log.
 * Exit codes: 10 refused (bad input), 11 not found, 12 failed, 13 host
 * unusable (a tool is missing). The script checks every name, id and path
 * again, whatever the server already checked.
 *
 * Written for POSIX sh (dash) with GNU coreutils (`mv -T`, `ln -T`, `tac`,
 * `timeout`, `base64`, `sha256sum`) and tar; the SSH user's login shell
 * must be a POSIX shell. Character classes are spelled out so that no
 * locale can widen them. The source writes `\${` where sh means `${` (it
 * sits in a template literal); see the replace below.
 */
const SOURCE = String.raw`
set -u
umask 022
die() { _code=$1; shift; printf "turnout-host: %s\n" "$*" >&2; exit "$_code"; }
refuse() { die 10 "$@"; }

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
# A relative path with no empty, "." or ".." component.
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
# base64 → text, keeping trailing newlines (command substitution strips them).
decode() {
  _v=$(printf "%s" "$1" | base64 -d && printf x) || refuse "bad base64 data"
  DECODED=\${_v%x}
}
need_tools() {
  for _tool in "$@"; do command -v "$_tool" >/dev/null 2>&1 || die 13 "$_tool is missing on this host"; done
}
lock_app() {
  exec 9>>"$APPDIR/.lock" || die 12 "cannot open $APPDIR/.lock"
  if command -v flock >/dev/null 2>&1; then flock -w 120 9 || die 12 "$APPDIR is locked"; fi
}
unlock_app() { exec 9>&-; }

set_root() { valid_root "$1" || refuse "bad root"; ROOT=$1; CACHE=$ROOT/.turnout/blobs; JOBS=$ROOT/.turnout/jobs; }
set_app() {
  valid_name "$1" || refuse "bad app name"
  APP=$1; APPDIR=$ROOT/$APP; REL=$APPDIR/releases
  [ ! -L "$APPDIR" ] || refuse "$APPDIR is a symlink"
}
blob_path() { BLOB=$CACHE/\${1%\${1#??}}/$1; }
# Where a symlink points, as a release id ("" if nowhere or not a release).
link_release() {
  LINKED=
  [ -L "$1" ] || return 0
  _t=$(readlink -- "$1") || return 0
  _t=\${_t##*/}
  if valid_id "$_t"; then LINKED=$_t; fi
}
# Points link $1 at $2 atomically: a new symlink under a temporary name renamed over it.
swap_link() {
  if [ -e "$1" ] && [ ! -L "$1" ]; then die 12 "$1 exists and is not a symlink"; fi
  _tmp=\${1%/*}/.tmp-\${1##*/}-$NONCE
  rm -f -- "$_tmp"
  ln -s -- "$2" "$_tmp" || die 12 "cannot create $_tmp"
  mv -T -f -- "$_tmp" "$1" || { rm -f -- "$_tmp"; die 12 "cannot switch $1"; }
}
# Makes the parent directories of $2 below $1, refusing to go through a symlink or a file.
PARENT_OK=
make_parents() {
  case $2 in */*) _parent=\${2%/*};; *) return 0;; esac
  [ "$_parent" = "$PARENT_OK" ] && return 0
  _rest=$_parent/; _pre=
  while [ -n "$_rest" ]; do
    _pre=$_pre\${_rest%%/*}; _rest=\${_rest#*/}
    if [ -L "$1/$_pre" ]; then refuse "$2 lies below the symlink $_pre"
    elif [ -d "$1/$_pre" ]; then :
    elif [ -e "$1/$_pre" ]; then refuse "$2 lies below the file $_pre"
    else mkdir -- "$1/$_pre" || die 12 "cannot create $_pre"
    fi
    _pre=$_pre/
  done
  PARENT_OK=$_parent
}
fresh() { if [ -e "$1" ] || [ -L "$1" ]; then refuse "$2 appears twice"; fi; }

# Env (E) and argv (A) lines collect into JOB_ENV (a count) and the positional
# parameters of the caller, which passes them to run_job.
# Runs argv in dir $1 with a time limit, stdin from /dev/null, output to the
# log; the pid is recorded so that op_cancel can stop it (timeout signals its
# whole process group).
run_job() {
  _dir=$1; _secs=$2; _n=$3; shift 3
  mkdir -p -- "$JOBS" || die 12 "cannot create $JOBS"
  _timeout=$(command -v timeout) || die 13 "timeout is missing on this host"
  _job=$JOBS/$NONCE
  (
    cd "$_dir" || exit 126
    while [ "$_n" -gt 0 ]; do export "$1"; shift; _n=$((_n - 1)); done
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

op_hello() {
  need_tools tar sha256sum base64 timeout ln mv rm mkdir chmod readlink cp tac find
  echo "ok turnout-host 1"
}

# stdin: "B <sha256>" lines, END. Prints the blobs the cache lacks.
op_missing() {
  set_root "$1"; set_app "$2"; valid_id "$3" || refuse "bad release id"
  if [ -d "$REL/$3" ]; then echo "ok exists"; return 0; fi
  _end=
  while IFS= read -r _line; do
    case $_line in
      "B "*) _sha=\${_line#B }; valid_sha "$_sha" || refuse "bad digest"
        blob_path "$_sha"; [ -f "$BLOB" ] || echo "missing $_sha";;
      END) _end=1; break;;
      *) refuse "bad input line";;
    esac
  done
  [ -n "$_end" ] || refuse "truncated input"
  echo "ok missing"
}

# stdin: a tar of files named by their sha256. Verified, then moved into the cache.
INCOMING=
cleanup_incoming() { if [ -n "$INCOMING" ]; then rm -rf -- "$INCOMING" "$INCOMING.sums"; fi; }
op_receive() {
  set_root "$1"; valid_nonce "$2" || refuse "bad nonce"
  mkdir -p -- "$ROOT/.turnout/incoming" "$CACHE" || die 12 "cannot create $ROOT/.turnout"
  INCOMING=$ROOT/.turnout/incoming/$2
  mkdir -- "$INCOMING" || die 12 "cannot create $INCOMING"
  trap cleanup_incoming EXIT
  tar -x -f - -C "$INCOMING" --no-same-owner --no-same-permissions || die 12 "cannot unpack the blobs"
  cd "$INCOMING" || die 12 "cannot enter $INCOMING"
  for _f in .[!.]* ..?*; do if [ -e "$_f" ] || [ -L "$_f" ]; then refuse "unexpected file $_f"; fi; done
  _n=0
  for _f in *; do
    [ -e "$_f" ] || [ -L "$_f" ] || continue
    valid_sha "$_f" || refuse "unexpected file $_f"
    [ -f "$_f" ] && [ ! -L "$_f" ] || refuse "unexpected file $_f"
    _n=$((_n + 1))
  done
  if [ "$_n" -gt 0 ]; then
    find . -mindepth 1 -maxdepth 1 -type f -exec sha256sum -- {} + >"$INCOMING.sums" || die 12 "cannot hash the blobs"
    while IFS= read -r _line; do
      _sum=\${_line%% *}; _name=\${_line##* }; _name=\${_name#./}
      [ "$_sum" = "$_name" ] || die 12 "blob $_name does not match its digest"
    done <"$INCOMING.sums"
    find . -mindepth 1 -maxdepth 1 -type f -exec chmod 644 -- {} + || die 12 "cannot set blob modes"
    for _f in *; do
      blob_path "$_f"
      mkdir -p -- "\${BLOB%/*}" && mv -f -- "$_f" "$BLOB" || die 12 "cannot store blob $_f"
    done
  fi
  echo "ok received $_n"
}

# The cache holds each blob once with mode 644; other modes link to a sibling
# copy made once, because a chmod through a hard link would change every release.
link_blob() {
  blob_path "$1"
  [ -f "$BLOB" ] || die 12 "blob $1 is not in the cache"
  _src=$BLOB
  if [ "$2" != 644 ]; then
    _src=$BLOB.$2
    if [ ! -f "$_src" ]; then
      cp -- "$BLOB" "$_src.$NONCE" && chmod "$2" -- "$_src.$NONCE" && mv -f -- "$_src.$NONCE" "$_src" ||
        { rm -f -- "$_src.$NONCE"; die 12 "cannot prepare blob $1 mode $2"; }
    fi
  fi
  # Past the link limit of the file system (or across devices) a copy does.
  ln -T -- "$_src" "$3" 2>/dev/null || cp -- "$_src" "$3" || die 12 "cannot create $3"
}

STAGE=
cleanup_stage() { if [ -n "$STAGE" ]; then rm -rf -- "$STAGE" "$STAGE.dirs"; fi; }
# stdin: E/A (hook env and argv), then D/F/L entries, then S (shared paths), END.
op_stage() {
  set_root "$1"; set_app "$2"; valid_id "$3" || refuse "bad release id"
  valid_count "$4" || refuse "bad timeout"; valid_nonce "$5" || refuse "bad nonce"
  ID=$3; SECS=$4; NONCE=$5
  shift 5
  mkdir -p -- "$REL" "$APPDIR/shared" || die 12 "cannot create $REL"
  if [ -d "$REL/$ID" ]; then echo "ok exists"; return 0; fi
  STAGE=$REL/.staging-$ID-$NONCE
  trap cleanup_stage EXIT
  mkdir -- "$STAGE" || die 12 "cannot create $STAGE"
  : >"$STAGE.dirs"
  JOB_ENV=0; _phase=0; _end=
  while IFS= read -r _line; do
    _kind=\${_line%% *}; _rest=\${_line#* }
    case $_kind in
      E) [ "$_phase" -eq 0 ] && [ "$#" -eq "$JOB_ENV" ] || refuse "env after argv"
        decode "$_rest"; valid_env_name "\${DECODED%%=*}" || refuse "bad variable name"
        case $DECODED in *=*) ;; *) refuse "bad variable";; esac
        set -- "$@" "$DECODED"; JOB_ENV=$((JOB_ENV + 1));;
      A) [ "$_phase" -eq 0 ] || refuse "argv after entries"; decode "$_rest"; set -- "$@" "$DECODED";;
      D|F|L)
        [ "$_phase" -le 1 ] || refuse "entries after shared paths"; _phase=1
        case $_kind in
          D) _mode=\${_rest%% *}; _path=\${_rest#* }
            valid_mode "$_mode" && valid_rel "$_path" || refuse "bad directory entry"
            make_parents "$STAGE" "$_path"; fresh "$STAGE/$_path" "$_path"
            mkdir -- "$STAGE/$_path" || die 12 "cannot create $_path"
            if [ "$_mode" != 755 ]; then printf "%s %s\n" "$_mode" "$_path" >>"$STAGE.dirs"; fi;;
          F) _mode=\${_rest%% *}; _rest=\${_rest#* }; _sha=\${_rest%% *}; _path=\${_rest#* }
            valid_mode "$_mode" && valid_sha "$_sha" && valid_rel "$_path" || refuse "bad file entry"
            make_parents "$STAGE" "$_path"; fresh "$STAGE/$_path" "$_path"
            link_blob "$_sha" "$_mode" "$STAGE/$_path";;
          L) _target=\${_rest%% *}; _path=\${_rest#* }
            valid_rel "$_path" || refuse "bad symlink entry"
            decode "$_target"; link_inside "$_path" "$DECODED" || refuse "symlink $_path points outside the release"
            make_parents "$STAGE" "$_path"; fresh "$STAGE/$_path" "$_path"
            ln -s -- "$DECODED" "$STAGE/$_path" || die 12 "cannot create $_path";;
        esac;;
      S) _phase=2; _path=$_rest
        valid_rel "$_path" || refuse "bad shared path"
        make_parents "$STAGE" "$_path"
        rm -rf -- "$STAGE/$_path"; PARENT_OK=
        if [ ! -e "$APPDIR/shared/$_path" ] && [ ! -L "$APPDIR/shared/$_path" ]; then
          mkdir -p -- "$APPDIR/shared/$_path" || die 12 "cannot create shared/$_path"
        fi
        _up=../../; _p=$_path
        while :; do case $_p in */*) _p=\${_p#*/}; _up=../$_up;; *) break;; esac; done
        ln -s -- "\${_up}shared/$_path" "$STAGE/$_path" || die 12 "cannot link shared/$_path";;
      END) _end=1; break;;
      *) refuse "bad input line";;
    esac
  done
  [ -n "$_end" ] || refuse "truncated input"
  # Directory modes last (deepest first), so that a read-only directory was still writable while filled.
  tac "$STAGE.dirs" | while IFS= read -r _line; do
    chmod "\${_line%% *}" -- "$STAGE/\${_line#* }" || exit 1
  done || die 12 "cannot set directory modes"
  if [ "$#" -gt "$JOB_ENV" ]; then
    echo "turnout-host: before_switch in the staged release" >&2
    run_job "$STAGE" "$SECS" "$JOB_ENV" "$@"
    _st=$?
    [ "$_st" -eq 124 ] && die 12 "before_switch timed out after $SECS s"
    [ "$_st" -eq 0 ] || die 12 "before_switch failed (exit status $_st)"
  fi
  lock_app
  if ! mv -T -- "$STAGE" "$REL/$ID" 2>/dev/null; then
    [ -d "$REL/$ID" ] && { echo "ok exists"; return 0; }
    die 12 "cannot rename $STAGE into place"
  fi
  rm -f -- "$STAGE.dirs"; STAGE=
  printf "%s\n" "$ID" >>"$APPDIR/.releases" || die 12 "cannot record the release"
  unlock_app
  echo "ok staged"
}

op_switch() {
  set_root "$1"; set_app "$2"; valid_id "$3" || refuse "bad release id"
  valid_nonce "$5" || refuse "bad nonce"; NONCE=$5
  valid_name "$4" || refuse "bad slot name"
  [ -d "$REL/$3" ] && [ ! -L "$REL/$3" ] || die 11 "release $3 is not staged"
  lock_app
  [ -d "$REL/$3" ] || die 11 "release $3 is not staged"
  if [ "$4" = current ]; then _link=$APPDIR/current; _target=releases/$3
  else
    mkdir -p -- "$APPDIR/slots" || die 12 "cannot create $APPDIR/slots"
    _link=$APPDIR/slots/$4; _target=../releases/$3
  fi
  link_release "$_link"; _prev=\${LINKED:--}
  swap_link "$_link" "$_target"
  unlock_app
  echo "ok previous $_prev"
}

op_promote() {
  set_root "$1"; set_app "$2"; valid_name "$3" || refuse "bad slot name"
  valid_nonce "$4" || refuse "bad nonce"; NONCE=$4
  [ -d "$APPDIR" ] || die 11 "$APP is not on this host"
  lock_app
  link_release "$APPDIR/slots/$3"; _id=$LINKED
  [ -n "$_id" ] || die 11 "slot $3 points at no release"
  [ -d "$REL/$_id" ] || die 11 "release $_id of slot $3 is not staged"
  link_release "$APPDIR/current"; _prev=\${LINKED:--}
  swap_link "$APPDIR/current" "releases/$_id"
  unlock_app
  echo "ok promoted $_prev $_id"
}

# Reads E and A lines up to END into the positional parameters; JOB_ENV counts the E lines.
# stdin: E/A lines, END. Runs argv in current; prints its exit status.
op_run() {
  set_root "$1"; set_app "$2"; valid_count "$3" || refuse "bad timeout"
  valid_nonce "$4" || refuse "bad nonce"; SECS=$3; NONCE=$4
  shift 4
  JOB_ENV=0; _end=
  while IFS= read -r _line; do
    case $_line in
      "E "*) [ "$#" -eq "$JOB_ENV" ] || refuse "env after argv"
        decode "\${_line#E }"; valid_env_name "\${DECODED%%=*}" || refuse "bad variable name"
        case $DECODED in *=*) ;; *) refuse "bad variable";; esac
        set -- "$@" "$DECODED"; JOB_ENV=$((JOB_ENV + 1));;
      "A "*) decode "\${_line#A }"; set -- "$@" "$DECODED";;
      END) _end=1; break;;
      *) refuse "bad input line";;
    esac
  done
  [ -n "$_end" ] || refuse "truncated input"
  [ "$#" -gt "$JOB_ENV" ] || refuse "no command"
  [ -d "$APPDIR/current" ] || die 11 "$APP has no current release"
  run_job "$APPDIR/current" "$SECS" "$JOB_ENV" "$@"
  echo "ok status $?"
}

# stdin: "U <url>", END. GET from the host itself: curl, else wget.
op_http() {
  valid_count "$1" || refuse "bad timeout"
  _url=; _end=
  while IFS= read -r _line; do
    case $_line in
      "U "*) _url=\${_line#U };;
      END) _end=1; break;;
      *) refuse "bad input line";;
    esac
  done
  [ -n "$_end" ] || refuse "truncated input"
  case $_url in http://*|https://*) ;; *) refuse "bad url";; esac
  case $_url in *" "*) refuse "bad url";; esac
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null -m "$1" --url "$_url" </dev/null 1>&2
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O /dev/null -T "$1" -t 1 -- "$_url" </dev/null 1>&2
  else
    die 13 "neither curl nor wget is installed on this host"
  fi
  echo "ok status $?"
}

# Newest "keep" releases stay (order: .releases, last line newest; unlisted
# ones count as oldest), and so does every release current or a slot points at.
op_prune() {
  set_root "$1"; set_app "$2"; valid_count "$3" || refuse "bad count"
  _keep=$3
  [ -d "$REL" ] || { echo "ok pruned"; return 0; }
  lock_app
  _protected=
  link_release "$APPDIR/current"; _protected="$_protected $LINKED"
  for _s in "$APPDIR"/slots/*; do link_release "$_s"; _protected="$_protected $LINKED"; done
  _listed=
  if [ -f "$APPDIR/.releases" ]; then
    while IFS= read -r _id; do
      valid_id "$_id" && [ -d "$REL/$_id" ] || continue
      _l=" $_listed "
      case $_l in *" $_id "*) _listed="\${_l%% $_id *} \${_l#* $_id }";; esac
      _listed="$_listed $_id"
    done <"$APPDIR/.releases"
  fi
  _all=
  for _d in "$REL"/*; do
    _id=\${_d##*/}
    valid_id "$_id" && [ -d "$_d" ] || continue
    case " $_listed " in *" $_id "*) ;; *) _all="$_all $_id";; esac
  done
  _all="$_all $_listed"
  _count=0
  for _id in $_all; do _count=$((_count + 1)); done
  _excess=$((_count - _keep)); _i=0; _kept=
  for _id in $_all; do
    _i=$((_i + 1))
    case " $_protected " in *" $_id "*) _kept="$_kept $_id"; continue;; esac
    if [ "$_i" -le "$_excess" ]; then
      # Renamed first: a release is either whole under its name or gone.
      _gone=$REL/.removing-$_id-$$
      mv -T -- "$REL/$_id" "$_gone" && rm -rf -- "$_gone" || die 12 "cannot remove release $_id"
      echo "removed $_id"
    else
      _kept="$_kept $_id"
    fi
  done
  { for _id in $_kept; do printf "%s\n" "$_id"; done; } >"$APPDIR/.releases.tmp" &&
    mv -f -- "$APPDIR/.releases.tmp" "$APPDIR/.releases" || die 12 "cannot rewrite $APPDIR/.releases"
  # Leftovers of interrupted staging or pruning.
  find "$REL" -mindepth 1 -maxdepth 1 \( -name ".staging-*" -o -name ".removing-*" \) -mmin +60 \
    -exec rm -rf -- {} + 2>/dev/null
  unlock_app
  echo "ok pruned"
}

op_inventory() {
  set_root "$1"
  if [ -d "$ROOT" ]; then
    for _a in "$ROOT"/*; do
      _app=\${_a##*/}
      valid_name "$_app" && [ -d "$_a" ] && [ ! -L "$_a" ] || continue
      echo "app $_app"
      for _d in "$_a"/releases/*; do
        _id=\${_d##*/}
        if valid_id "$_id" && [ -d "$_d" ]; then echo "release $_id"; fi
      done
      link_release "$_a/current"; if [ -n "$LINKED" ]; then echo "current $LINKED"; fi
      for _s in "$_a"/slots/*; do
        _slot=\${_s##*/}
        valid_name "$_slot" || continue
        link_release "$_s"; if [ -n "$LINKED" ]; then echo "slot $_slot $LINKED"; fi
      done
    done
  fi
  echo "ok inventory"
}

# Stops a job started by another invocation (an abort on the server).
op_cancel() {
  set_root "$1"; valid_nonce "$2" || refuse "bad nonce"
  mkdir -p -- "$JOBS" || die 12 "cannot create $JOBS"
  : >"$JOBS/$2.cancel"
  if [ -f "$JOBS/$2" ]; then
    _pid=$(cat -- "$JOBS/$2")
    valid_count "$_pid" && kill -TERM "$_pid" 2>/dev/null
  fi
  echo "ok cancelled"
}

trap "exit 129" HUP
trap "exit 130" INT
trap "exit 141" PIPE
trap "exit 143" TERM
[ "$#" -ge 1 ] || refuse "no operation"
_op=$1; shift
case $_op in
  hello) op_hello;;
  missing) [ "$#" -eq 3 ] || refuse "usage"; op_missing "$@";;
  receive) [ "$#" -eq 2 ] || refuse "usage"; op_receive "$@";;
  stage) [ "$#" -eq 5 ] || refuse "usage"; op_stage "$@";;
  switch) [ "$#" -eq 5 ] || refuse "usage"; op_switch "$@";;
  promote) [ "$#" -eq 4 ] || refuse "usage"; op_promote "$@";;
  run) [ "$#" -eq 4 ] || refuse "usage"; op_run "$@";;
  http) [ "$#" -eq 1 ] || refuse "usage"; op_http "$@";;
  prune) [ "$#" -eq 3 ] || refuse "usage"; op_prune "$@";;
  inventory) [ "$#" -eq 1 ] || refuse "usage"; op_inventory "$@";;
  cancel) [ "$#" -eq 2 ] || refuse "usage"; op_cancel "$@";;
  *) refuse "unknown operation";;
esac
`;

export const REMOTE_SCRIPT: string = SOURCE.replaceAll("\\${", "${");

// The script travels inside single quotes: one quote in it would end them.
if (REMOTE_SCRIPT.includes("'")) throw new Error("remote-script: the script must not contain a single quote");

export type RemoteOp =
  | "hello"
  | "missing"
  | "receive"
  | "stage"
  | "switch"
  | "promote"
  | "run"
  | "http"
  | "prune"
  | "inventory"
  | "cancel";

/** Argument text that needs no quoting in any POSIX shell (and is single-quoted anyway). */
const PLAIN_ARG = /^[A-Za-z0-9/._-]{1,4096}$/;

/** Exit codes of the script, and what they mean to the server. */
export const EXIT_REFUSED = 10;
export const EXIT_NOT_FOUND = 11;
export const EXIT_FAILED = 12;
export const EXIT_UNUSABLE = 13;

/**
 * The remote command string for one operation. Arguments must already have
 * passed the validators of ssh-validate.ts; anything outside a plain
 * character set here is a bug, refused before ssh is started.
 */
export function remoteCommand(op: RemoteOp, args: readonly string[]): string {
  for (const arg of args) {
    if (!PLAIN_ARG.test(arg)) {
      throw new TurnoutError("E_VALIDATION", `refusing to pass ${JSON.stringify(arg)} to an SSH host`);
    }
  }
  return ["sh", "-c", quote(REMOTE_SCRIPT), "turnout-host", op, ...args.map(quote)].join(" ");
}

function quote(text: string): string {
  return `'${text}'`;
}
