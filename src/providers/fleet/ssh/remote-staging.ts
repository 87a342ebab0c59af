import { sh } from "./sh-source.js";

/**
 * Staging on the host, in three steps of the remote script (one connection
 * each), each a fixed number of processes whatever the file count:
 *
 * 1. `missing`: which blobs the cache lacks (absent, or not the size the
 *    manifest says: damaged), and, for a release already there, whether it
 *    is still whole (every planned entry present with its kind, mode, size
 *    and link target). One `find` and `sort`/`comm`, no process per file.
 *    The server sends the release's listing, or only its difference from a
 *    listing the host keeps (remote-listings.ts); the host keeps the new one.
 * 2. `receive`: one tar of the blobs, laid out as the cache (`<aa>/<name>`),
 *    unpacked under a temporary name, hashed in one `sha256sum` run and only
 *    then given modes, made durable and named in the cache, all at once with
 *    one `cp -l` (hard links: the names appear once the bytes are on disk).
 * 3. `stage`: one gzipped tar of the release tree (directories with their
 *    modes, symlinks, and files as HARD LINK entries naming cache blobs),
 *    unpacked by one `tar -x` in a private `.staging-*` directory that
 *    becomes `releases/<id>` in one rename. Where the cache cannot be
 *    hard-linked from the release (another filesystem), the tree is unpacked
 *    beside the cache and copied over by one `cp`. The host keeps the tar
 *    (uncompressed, checked against the digest the server sends), and the
 *    next release can come as a patch of it (remote-stagetars.ts): rebuilt,
 *    checked again, and unpacked by the same one `tar -x`.
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
ensure_cache() {
  ensure_real_dir "$ROOT"; ensure_real_dir "$ROOT/.turnout"; ensure_real_dir "$CACHE"; ensure_real_dir "$CACHE/tmp"
}
# A cache name: a digest, or a digest and a mode (".555").
valid_blob_name() {
  case $1 in
    *.*) valid_sha "\${1%%.*}" || return 1; _m=\${1#*.}
      [ \${#_m} -ge 1 ] && [ \${#_m} -le 3 ] || return 1
      case $_m in 0*|*[!01234567]*) return 1;; esac;;
    *) valid_sha "$1";;
  esac
}

WORK=
cleanup_work() { if [ -n "$WORK" ]; then rm -rf -- "$WORK"; fi; }
# Hashes the cache blobs written since the last check began (all of them the
# first time: .verified is its start time), but for those receive hashed and
# recorded (tmp/verified-*: name and mtime) that have not changed since;
# removes the names whose bytes do not match (they are then missing, and sent
# again), prints "repaired <name>", and keeps their inodes in WORK/inodes.
# Blobs are never written after they are named, so an older mtime means
# bytes already checked.
check_cache() {
  : >"$WORK/inodes"
  : >"$WORK/check" || die 12 "cannot write in $WORK"
  _records=
  for _r in "$CACHE"/tmp/verified-*; do if [ -f "$_r" ]; then _records="$_records $_r"; fi; done
  if [ -n "$_records" ]; then cat -- $_records | LC_ALL=C sort -u >"$WORK/known"; else : >"$WORK/known"; fi
  set --
  if [ -f "$CACHE/.verified" ]; then set -- -newer "$CACHE/.verified"; fi
  find "$CACHE" -mindepth 2 -maxdepth 2 -path "$CACHE/??/*" -type f "$@" -printf "%f %T@\n" | LC_ALL=C sort >"$WORK/recent"
  LC_ALL=C comm -23 "$WORK/recent" "$WORK/known" | sed "s|^\(..\)\([^ ]*\) .*|$CACHE/\1/\1\2|" |
    xargs -r sha256sum -- >"$WORK/sums"
  while IFS= read -r _line; do
    _path=\${_line#*  }; _name=\${_path##*/}
    [ "\${_line%% *}" = "\${_name%%.*}" ] && continue
    find "$_path" -maxdepth 0 -printf "%i\n" >>"$WORK/inodes" 2>/dev/null
    rm -f -- "$_path"
    echo "repaired $_name"
  done <"$WORK/sums"
  mv -f -- "$WORK/check" "$CACHE/.verified" 2>/dev/null
  if [ -n "$_records" ]; then rm -f -- $_records; fi
}

# stdin, gzipped: the listing of the release, whole or as a difference from a kept
# one, plus the blobs and links of shared paths (release-listing.ts). $4: the
# artifact digest, to keep the listing under ("-": not kept). Prints
# "repaired <name>" for each cache blob found damaged (and removed),
# "damaged <entry>" (at most five) when the release is there but not whole,
# "missing <name>" for each blob the cache lacks or holds with another size,
# and "ok exists" (whole) or "ok missing"; "ok nobase" alone when the
# difference has no usable base here (the server then sends every line).
op_missing() {
  set_root "$1"; set_app "$2" "$3"; shift; valid_id "$3" || refuse "bad release id"
  check_place
  _art=$4
  if [ "$_art" != - ]; then
    valid_sha "$_art" || refuse "bad artifact digest"
    case $_art in "$3"*) ;; *) refuse "artifact $_art is not that of release $3";; esac
  fi
  ensure_cache; set_listings
  WORK=$CACHE/tmp/missing-$$
  trap cleanup_work EXIT
  mkdir -m 700 -- "$WORK" || die 12 "cannot create $WORK"
  gzip -dc >"$WORK/in" || refuse "bad input"
  [ "$(tail -n 1 -- "$WORK/in")" = END ] || refuse "truncated input"
  check_listing_input "$WORK/in"
  if ! read_listing "$WORK/in" "$WORK/listing"; then echo "ok nobase"; return 0; fi
  check_cache
  if [ "$_art" != - ]; then keep_listing "$WORK/listing" "$_art" "$LISTING_DIGEST"; fi
  if real_dir "$REL/$3"; then
    { listing_tree "$WORK/listing"; sed -n "s/^R //p" "$WORK/in"; } | LC_ALL=C sort >"$WORK/want"
    (cd "$REL/$3" && find . -mindepth 1 \( -type d -printf "d %P\n" \) -o \( -type f -printf "f %m %s %P\n" \) \
      -o \( -type l -printf "l %P -> %l\n" \)) | LC_ALL=C sort >"$WORK/have"
    LC_ALL=C comm -23 "$WORK/want" "$WORK/have" >"$WORK/bad"
    # Files sharing an inode with a blob found damaged hold the same wrong bytes.
    if [ -s "$WORK/inodes" ]; then
      (cd "$REL/$3" && find . -type f -printf "%i %P\n") >"$WORK/files"
      sed "s/.*/^& /" "$WORK/inodes" >"$WORK/pats"
      grep -f "$WORK/pats" "$WORK/files" | sed "s/^[0123456789]* //; s/$/: bytes do not match the digest/" >>"$WORK/bad"
    fi
    if [ ! -s "$WORK/bad" ]; then already_staged "$3"; return 0; fi
    head -n 5 -- "$WORK/bad" | sed "s/^/damaged /"
  fi
  { listing_blobs "$WORK/listing"; sed -n "s/^B //p" "$WORK/in"; } | LC_ALL=C sort -u >"$WORK/need"
  find "$CACHE" -mindepth 2 -maxdepth 2 -path "$CACHE/??/*" -type f -printf "%f %s\n" | LC_ALL=C sort >"$WORK/cached"
  LC_ALL=C comm -23 "$WORK/need" "$WORK/cached" | sed "s/ .*//; s/^/missing /"
  echo "ok missing"
}

# stdin: a tar of files "<aa>/<name>" (see valid_blob_name). Each is hashed,
# and only then gets its name in the cache; one mismatch refuses them all.
op_receive() {
  set_root "$1"; valid_nonce "$2" || refuse "bad nonce"
  ensure_cache
  WORK=$CACHE/tmp/incoming-$2
  trap cleanup_work EXIT
  mkdir -m 700 -- "$WORK" || die 12 "cannot create $WORK"
  # -m: the blobs are dated now, so the cache collection leaves fresh ones alone.
  tar -x -m -f - -C "$WORK" --no-same-owner --no-same-permissions || die 12 "cannot unpack the blobs"
  cd "$WORK" || die 12 "cannot enter $WORK"
  _n=0; _modes=
  for _s in .[!.]* ..?* *; do
    [ -e "$_s" ] || [ -L "$_s" ] || continue
    case $_s in ??) ;; *) refuse "unexpected file $_s";; esac
    is_hex "$_s" && real_dir "$_s" || refuse "unexpected file $_s"
    for _f in "$_s"/.[!.]* "$_s"/..?* "$_s"/*; do
      [ -e "$_f" ] || [ -L "$_f" ] || continue
      _b=\${_f#*/}
      valid_blob_name "$_b" && [ -f "$_f" ] && [ ! -L "$_f" ] || refuse "unexpected file $_f"
      [ "\${_b%\${_b#??}}" = "$_s" ] || refuse "blob $_b is not in its shard"
      case $_b in *.*) case " $_modes " in *" \${_b#*.} "*) ;; *) _modes="$_modes \${_b#*.}";; esac;; esac
      _n=$((_n + 1))
    done
  done
  if [ "$_n" -gt 0 ]; then
    find . -type f -exec sha256sum -- {} + >"$WORK.sums" || die 12 "cannot hash the blobs"
    while IFS= read -r _line; do
      _sum=\${_line%% *}; _name=\${_line##*/}
      [ "$_sum" = "\${_name%%.*}" ] || { rm -f -- "$WORK.sums"; refuse "blob $_name does not match its digest (got $_sum)"; }
    done <"$WORK.sums"
    rm -f -- "$WORK.sums"
    find . -type f ! -name "*.*" -exec chmod 444 -- {} + || die 12 "cannot set blob modes"
    for _m in $_modes; do
      find . -type f -name "*.$_m" -exec chmod "$_m" -- {} + || die 12 "cannot set blob modes"
    done
    # Durable before named: a crash must not leave a named blob without its bytes.
    find . -type f -exec sync -- {} + 2>/dev/null || sync
    cp -R -l -f -- "$WORK/." "$CACHE/" || die 12 "cannot store the blobs"
    durable "$CACHE"/??
    # Hashed just now: the next check_cache leaves them alone while unchanged.
    find . -type f -printf "%f %T@\n" >"$WORK.verified" && mv -f -- "$WORK.verified" "$CACHE/tmp/verified-$2"
  fi
  echo "ok received $_n"
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

STAGE=; STAGE_TAR=
cleanup_stage() {
  if [ -n "$STAGE" ]; then rm -rf -- "$STAGE" "$STAGE.shared" "$STAGE.patch"; fi
  if [ -n "$STAGE_TAR" ]; then rm -f -- "$STAGE_TAR" "$STAGE_TAR.new"; fi
  cleanup_work
}
# stdin, as stage-input.ts writes it: E/A (before_switch env and argv), S
# (shared paths), K (the digest of the stage tar, and the artifact to keep it
# under), P, C and L (the tree as a patch of a kept stage tar,
# remote-stagetars.ts), TAR, then gzipped: the stage tar (entries
# "T/<path>", hard links to "C/<aa>/<name>"), or the new records of the
# patch. $6: "new", or "replace" (the release there is damaged: the staged
# one takes its name). "ok fallback": the patch could not be applied (the
# server then sends the whole tree).
op_stage() {
  set_root "$1"; set_app "$2" "$3"; shift; valid_id "$3" || refuse "bad release id"
  valid_count "$4" || refuse "bad timeout"; valid_nonce "$5" || refuse "bad nonce"
  case $6 in new|replace) ;; *) refuse "bad staging mode";; esac
  ID=$3; SECS=$4; NONCE=$5; _replace=$6
  shift 6
  ensure_cache; record_path; ensure_real_dir "$APPDIR"; ensure_real_dir "$REL"; ensure_real_dir "$SHARED"
  if [ "$_replace" = new ] && real_dir "$REL/$ID"; then already_staged "$ID"; return 0; fi
  lock_app; sweep_app; unlock_app
  STAGE=$REL/.staging-$ID-$NONCE
  trap cleanup_stage EXIT
  mkdir -m 700 -- "$STAGE" || die 12 "cannot create $STAGE"
  : >"$STAGE.shared"; : >"$STAGE.patch"
  _end=; _keep=; _from=; _ranges=0
  # read takes one byte at a time from a pipe: the gzip stream that follows TAR stays on stdin.
  while IFS= read -r _line; do
    if command_line "$_line"; then set -- "$@" "$DECODED"; continue; fi
    case $_line in
      "S "*) printf "%s\n" "\${_line#S }" >>"$STAGE.shared";;
      "K "*) _keep=\${_line#K };;
      "P "*) _from=\${_line#P };;
      "C "*|"L "*) _ranges=$((_ranges + 1))
        [ "$_ranges" -le "$MAX_PATCH_RANGES" ] || refuse "too many patch ranges"
        printf "%s\n" "$_line" >>"$STAGE.patch";;
      TAR) _end=1; break;;
      *) refuse "bad input line";;
    esac
  done
  [ -n "$_end" ] || refuse "truncated input"
  # The digest of the tar, and the artifact it is kept under ("-": not kept).
  _ka=\${_keep%% *}; _kd=\${_keep#* }
  [ -n "$_keep" ] && valid_sha "$_kd" || refuse "bad tree digest"
  if [ "$_ka" != - ]; then
    valid_sha "$_ka" || refuse "bad tree digest"
    case $_ka in "$ID"*) ;; *) refuse "the tree is not that of release $ID";; esac
  fi
  if [ -n "$_from" ]; then valid_sha "$_from" || refuse "bad patch base"; fi
  # tar unpacks below WORK, where C is the cache and T the tree: the staging
  # directory, or a directory beside the cache when no hard link reaches it.
  WORK=$CACHE/tmp/tree-$NONCE; STAGE_TAR=$WORK.tar
  mkdir -m 700 -- "$WORK" || die 12 "cannot create $WORK"
  ln -s -- "$CACHE" "$WORK/C" || die 12 "cannot prepare $WORK"
  : >"$WORK/probe"
  if ln -- "$WORK/probe" "$STAGE/.probe" 2>/dev/null; then
    rm -f -- "$STAGE/.probe"; _tree=$STAGE
  else
    _tree=$WORK/tree; mkdir -m 700 -- "$_tree" || die 12 "cannot create $_tree"
    info "staging $ID: files are copied (the cache cannot be hard-linked from $REL)"
  fi
  ln -s -- "$_tree" "$WORK/T" || die 12 "cannot prepare $WORK"
  # The stage tar, sent whole or rebuilt from a kept one, is the digest the server sent.
  if [ -n "$_from" ]; then
    if ! patch_tar "$_from" "$STAGE.patch" "$STAGE_TAR" "$_kd"; then echo "ok fallback"; return 0; fi
  else
    [ "$_ranges" -eq 0 ] || refuse "patch ranges without a base"
    gzip -dc >"$STAGE_TAR" || refuse "bad tree of release $ID"
    _sum=$(sha256sum -- "$STAGE_TAR") || die 12 "cannot hash the stage tar"
    [ "\${_sum%% *}" = "$_kd" ] || refuse "the tree of release $ID does not match its digest"
  fi
  # Only T is written: nothing of the archive lands in the cache unverified.
  tar -x -p -m -f "$STAGE_TAR" -C "$WORK" --no-same-owner --anchored --exclude=C --exclude=probe || die 12 "cannot unpack release $ID (a blob missing from the cache?)"
  if [ "$_ka" != - ]; then keep_tar "$STAGE_TAR" "$_ka" "$_kd"; fi
  if [ "$_tree" != "$STAGE" ]; then
    cp -R -p -- "$_tree/." "$STAGE/" || die 12 "cannot copy release $ID"
  fi
  rm -rf -- "$WORK"; WORK=
  # Shared paths: mode and digest of the seed ("-" for none), then the path.
  while IFS= read -r _rest; do
    _mode=\${_rest%% *}; _rest=\${_rest#* }; _sha=\${_rest%% *}; _path=\${_rest#* }
    valid_rel "$_path" || refuse "bad shared path"
    if [ "$_mode" != - ]; then valid_mode "$_mode" && valid_sha "$_sha" || refuse "bad shared seed"; fi
    make_parents "$STAGE" "$_path"; fresh "$_path"
    ensure_shared "$_path" "$_mode" "$_sha"
    _up=../../; _p=$_path
    while :; do case $_p in */*) _p=\${_p#*/}; _up=../$_up;; *) break;; esac; done
    ln -s -- "\${_up}shared/$_path" "$STAGE/$_path" || die 12 "cannot link shared/$_path"
  done <"$STAGE.shared"
  rm -f -- "$STAGE.shared" "$STAGE.patch"
  chmod 755 -- "$STAGE" || die 12 "cannot set the mode of $STAGE"
  if [ "$JOB_ARGS" -gt 0 ]; then
    JOB_ID=$ID; JOB_DIR=$STAGE; JOB_FINAL=$REL/$ID
    run_job "$STAGE" "$SECS" "$JOB_ENV" "$@"
    _st=$?
    if [ "$_st" -eq 124 ]; then info "before_switch: timed out after $SECS s, stopped"; fi
    [ "$_st" -eq 0 ] || die 14 "before_switch failed with exit code $_st"
    # What the hook wrote is new; linked blobs were made durable when received.
    find "$STAGE" \( -type d -o -type f -links 1 \) -exec sync -- {} + 2>/dev/null || sync
  elif [ "$_tree" != "$STAGE" ]; then
    find "$STAGE" \( -type d -o -type f \) -exec sync -- {} + 2>/dev/null || sync
  else
    find "$STAGE" -type d -exec sync -- {} + 2>/dev/null || sync
  fi
  lock_app
  _old=
  if real_dir "$REL/$ID"; then
    # A concurrent staging of the same release won: that one stands.
    if [ "$_replace" = new ]; then unlock_app; echo "ok exists"; return 0; fi
    # Out of its name first, then the new one in: a pointer at it dangles for
    # the moment between the two renames, never names a half-written tree.
    _old=$REL/.removing-$ID-$NONCE
    mv -T -- "$REL/$ID" "$_old" || die 12 "cannot move the damaged release $ID aside"
  fi
  mv -T -- "$STAGE" "$REL/$ID" || die 12 "cannot rename $STAGE into place"
  STAGE=
  durable "$REL"
  record_order "$ID"
  unlock_app
  if [ -n "$_old" ]; then
    rm -rf -- "$_old" 2>/dev/null || { chmod -R u+rwx -- "$_old"; rm -rf -- "$_old"; }
    echo "ok replaced"
  else
    echo "ok staged"
  fi
}
`;
