import { sh } from "./sh-source.js";

/**
 * Staging on the host, in three steps of the remote script (one connection
 * each): which blobs are missing, receiving them (a tar, verified before
 * anything is named after it), and materializing the planned tree in a
 * private `.staging-*` directory that becomes `releases/<id>` in one rename.
 *
 * The blob cache is the agent's: `<sha256>` read-only (0444), and one sibling
 * `<sha256>.<mode>` per other mode (write bits never set: a hard link shares
 * the inode, so a writable file would let one release change the others).
 */
export const REMOTE_STAGING = sh`
# Counts a release already there as staged again (order file), as the agent does.
record_order() {
  grep -qxF -- "$1" "$APPDIR/.releases" 2>/dev/null || printf "%s\n" "$1" >>"$APPDIR/.releases" ||
    die 12 "cannot record release $1"
  durable "$APPDIR/.releases"
}
already_staged() {
  lock_app; record_order "$1"; unlock_app
  echo "ok exists"
}

# stdin: "B <sha256>" lines, END. Prints the blobs the cache lacks.
op_missing() {
  set_root "$1"; set_app "$2"; valid_id "$3" || refuse "bad release id"
  if real_dir "$REL/$3"; then already_staged "$3"; return 0; fi
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

# stdin: a tar of files named by their sha256. Each is hashed, and only then
# gets its name in the cache; one mismatch refuses them all.
INCOMING=
cleanup_incoming() { if [ -n "$INCOMING" ]; then rm -rf -- "$INCOMING" "$INCOMING.sums"; fi; }
op_receive() {
  set_root "$1"; valid_nonce "$2" || refuse "bad nonce"
  ensure_real_dir "$ROOT"; ensure_real_dir "$ROOT/.turnout"; ensure_real_dir "$CACHE"; ensure_real_dir "$CACHE/tmp"
  INCOMING=$CACHE/tmp/incoming-$2
  trap cleanup_incoming EXIT
  mkdir -m 700 -- "$INCOMING" || die 12 "cannot create $INCOMING"
  # -m: the blobs are dated now, so the cache collection leaves fresh ones alone.
  tar -x -m -f - -C "$INCOMING" --no-same-owner --no-same-permissions || die 12 "cannot unpack the blobs"
  cd "$INCOMING" || die 12 "cannot enter $INCOMING"
  for _f in .[!.]* ..?*; do if [ -e "$_f" ] || [ -L "$_f" ]; then refuse "unexpected file $_f"; fi; done
  _n=0
  for _f in *; do
    [ -e "$_f" ] || [ -L "$_f" ] || continue
    valid_sha "$_f" && [ -f "$_f" ] && [ ! -L "$_f" ] || refuse "unexpected file $_f"
    _n=$((_n + 1))
  done
  if [ "$_n" -gt 0 ]; then
    find . -mindepth 1 -maxdepth 1 -type f -exec sha256sum -- {} + >"$INCOMING.sums" || die 12 "cannot hash the blobs"
    while IFS= read -r _line; do
      _sum=\${_line%% *}; _name=\${_line##* }; _name=\${_name#./}
      [ "$_sum" = "$_name" ] || refuse "blob $_name does not match its digest (got $_sum)"
    done <"$INCOMING.sums"
    find . -mindepth 1 -maxdepth 1 -type f -exec chmod 444 -- {} + || die 12 "cannot set blob modes"
    find . -mindepth 1 -maxdepth 1 -type f -exec sync -- {} + 2>/dev/null || sync
    # One mv per shard directory, not per blob.
    _shards=
    for _f in *; do
      _s=\${_f%\${_f#??}}
      case " $_shards " in *" $_s "*) ;; *) _shards="$_shards $_s";; esac
    done
    for _s in $_shards; do
      real_dir "$CACHE/$_s" || ensure_real_dir "$CACHE/$_s"
      mv -f -t "$CACHE/$_s" -- "$_s"* || die 12 "cannot store the blobs"
    done
    durable "$CACHE"/??
  fi
  echo "ok received $_n"
}

# Hard-links blob $1 with mode $2 (3 octal digits, no write bits) at $3; a copy
# when the cache cannot be linked from there (another filesystem, link limit).
link_blob() {
  blob_path "$1"
  [ -f "$BLOB" ] || die 12 "blob $1 is not in the cache"
  _src=$BLOB
  if [ "$2" != 444 ]; then
    _m=$2
    while :; do case $_m in 0?*) _m=\${_m#0};; *) break;; esac; done
    _src=$BLOB.$_m
    if [ ! -f "$_src" ]; then
      ensure_real_dir "$CACHE/tmp"
      _tmp=$CACHE/tmp/$1.$NONCE
      cp -- "$BLOB" "$_tmp" && chmod "$2" -- "$_tmp" && mv -f -- "$_tmp" "$_src" ||
        { rm -f -- "$_tmp"; die 12 "cannot prepare blob $1 with mode $2"; }
    fi
  fi
  ln -T -- "$_src" "$3" 2>/dev/null || { cp -- "$_src" "$3" && chmod "$2" -- "$3"; } || die 12 "cannot create $3"
}
# Makes the parents of $2 below $1, refusing to go through a symlink or a file.
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
fresh() { if [ -e "$STAGE/$1" ] || [ -L "$STAGE/$1" ]; then refuse "$1 appears twice"; fi; }
# A shared path the app does not have yet: the file of the release seeds it, else an empty directory.
ensure_shared() {
  if [ -e "$SHARED/$1" ] || [ -L "$SHARED/$1" ]; then return 0; fi
  case $1 in */*) mkdir -p -- "$SHARED/\${1%/*}" || die 12 "cannot create shared/\${1%/*}";; esac
  if [ "$3" != - ]; then
    blob_path "$3"
    cp -- "$BLOB" "$SHARED/$1.$NONCE" && chmod "$2" -- "$SHARED/$1.$NONCE" &&
      mv -T -- "$SHARED/$1.$NONCE" "$SHARED/$1" || { rm -f -- "$SHARED/$1.$NONCE"; die 12 "cannot create shared/$1"; }
    info "shared: created $1 from the copy in the release"
  else
    mkdir -- "$SHARED/$1" 2>/dev/null || [ -d "$SHARED/$1" ] || die 12 "cannot create shared/$1"
    info "shared: created directory $1"
  fi
}

STAGE=
cleanup_stage() { if [ -n "$STAGE" ]; then rm -rf -- "$STAGE" "$STAGE.dirs"; fi; }
# stdin, as stage-input.ts writes it: E/A (before_switch env and argv), the
# planned D, F and L entries, S (shared paths), END.
op_stage() {
  set_root "$1"; set_app "$2"; valid_id "$3" || refuse "bad release id"
  valid_count "$4" || refuse "bad timeout"; valid_nonce "$5" || refuse "bad nonce"
  ID=$3; SECS=$4; NONCE=$5
  shift 5
  ensure_real_dir "$ROOT"; ensure_real_dir "$APPDIR"; ensure_real_dir "$REL"; ensure_real_dir "$SHARED"
  if real_dir "$REL/$ID"; then already_staged "$ID"; return 0; fi
  lock_app; sweep_app; unlock_app
  STAGE=$REL/.staging-$ID-$NONCE
  trap cleanup_stage EXIT
  mkdir -m 700 -- "$STAGE" || die 12 "cannot create $STAGE"
  : >"$STAGE.dirs"
  _phase=0; _end=
  while IFS= read -r _line; do
    if [ "$_phase" -eq 0 ] && command_line "$_line"; then set -- "$@" "$DECODED"; continue; fi
    _kind=\${_line%% *}; _rest=\${_line#* }
    case $_kind in
      D) [ "$_phase" -le 1 ] || refuse "entries after shared paths"; _phase=1
        _mode=\${_rest%% *}; _path=\${_rest#* }
        valid_mode "$_mode" && valid_rel "$_path" || refuse "bad directory entry"
        make_parents "$STAGE" "$_path"; fresh "$_path"
        mkdir -- "$STAGE/$_path" || die 12 "cannot create $_path"
        if [ "$_mode" != 755 ]; then printf "%s %s\n" "$_mode" "$_path" >>"$STAGE.dirs"; fi;;
      F) [ "$_phase" -le 1 ] || refuse "entries after shared paths"; _phase=1
        _mode=\${_rest%% *}; _rest=\${_rest#* }; _sha=\${_rest%% *}; _path=\${_rest#* }
        valid_mode "$_mode" && valid_sha "$_sha" && valid_rel "$_path" || refuse "bad file entry"
        make_parents "$STAGE" "$_path"; fresh "$_path"
        link_blob "$_sha" "$_mode" "$STAGE/$_path";;
      L) [ "$_phase" -le 1 ] || refuse "entries after shared paths"; _phase=1
        _target=\${_rest%% *}; _path=\${_rest#* }
        valid_rel "$_path" || refuse "bad symlink entry"
        decode "$_target"; link_inside "$_path" "$DECODED" || refuse "symlink $_path points outside the release"
        make_parents "$STAGE" "$_path"; fresh "$_path"
        ln -s -- "$DECODED" "$STAGE/$_path" || die 12 "cannot create $_path";;
      S) _phase=2
        _mode=\${_rest%% *}; _rest=\${_rest#* }; _sha=\${_rest%% *}; _path=\${_rest#* }
        valid_rel "$_path" || refuse "bad shared path"
        if [ "$_mode" != - ]; then valid_mode "$_mode" && valid_sha "$_sha" || refuse "bad shared seed"; fi
        make_parents "$STAGE" "$_path"; fresh "$_path"
        ensure_shared "$_path" "$_mode" "$_sha"
        _up=../../; _p=$_path
        while :; do case $_p in */*) _p=\${_p#*/}; _up=../$_up;; *) break;; esac; done
        ln -s -- "\${_up}shared/$_path" "$STAGE/$_path" || die 12 "cannot link shared/$_path";;
      END) _end=1; break;;
      *) refuse "bad input line";;
    esac
  done
  [ -n "$_end" ] || refuse "truncated input"
  # Final modes once everything is in (they always keep owner rwx: no order needed).
  while IFS= read -r _line; do
    chmod "\${_line%% *}" -- "$STAGE/\${_line#* }" || die 12 "cannot set the mode of \${_line#* }"
  done <"$STAGE.dirs"
  chmod 755 -- "$STAGE" || die 12 "cannot set the mode of $STAGE"
  if [ "$JOB_ARGS" -gt 0 ]; then
    JOB_ID=$ID; JOB_DIR=$STAGE; JOB_FINAL=$REL/$ID
    run_job "$STAGE" "$SECS" "$JOB_ENV" "$@"
    _st=$?
    if [ "$_st" -eq 124 ]; then info "before_switch: timed out after $SECS s, stopped"; fi
    [ "$_st" -eq 0 ] || die 14 "before_switch failed with exit code $_st"
    # What the hook wrote is new; linked blobs were made durable when received.
    find "$STAGE" \( -type d -o -type f -links 1 \) -exec sync -- {} + 2>/dev/null || sync
  else
    find "$STAGE" -type d -exec sync -- {} + 2>/dev/null || sync
  fi
  lock_app
  # A concurrent staging of the same release won: that one stands.
  if real_dir "$REL/$ID"; then echo "ok exists"; return 0; fi
  mv -T -- "$STAGE" "$REL/$ID" || die 12 "cannot rename $STAGE into place"
  rm -f -- "$STAGE.dirs"; STAGE=
  durable "$REL"
  record_order "$ID"
  unlock_app
  echo "ok staged"
}
`;
