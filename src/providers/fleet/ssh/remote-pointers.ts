import { sh } from "./sh-source.js";

/**
 * Pointers and bookkeeping on the host: switching `current` or a slot,
 * promoting a slot, pruning old releases (and cache blobs nothing links any
 * more), and the inventory. Changes hold the app's lock; a pointer only ever
 * names a release that is a complete directory under its final name.
 */
export const REMOTE_POINTERS = sh`
op_switch() {
  set_root "$1"; set_app "$2" "$3"; shift; valid_id "$3" || refuse "bad release id"
  valid_name "$4" || refuse "bad slot name"; valid_nonce "$5" || refuse "bad nonce"; NONCE=$5
  real_dir "$REL/$3" || die 11 "release $3 of $APP is not staged"
  lock_app
  real_dir "$REL/$3" || die 11 "release $3 of $APP is not staged"
  if [ "$4" = current ]; then _link=$APPDIR/current; _target=releases/$3
  else ensure_real_dir "$APPDIR/slots"; _link=$APPDIR/slots/$4; _target=../releases/$3
  fi
  link_release "$_link" "$4"; _prev=\${LINKED:--}
  swap_link "$_link" "$_target"
  unlock_app
  echo "ok previous $_prev"
}

op_promote() {
  set_root "$1"; set_app "$2" "$3"; shift; valid_name "$3" || refuse "bad slot name"
  [ "$3" != current ] || refuse "promote a slot, not current itself"
  valid_nonce "$4" || refuse "bad nonce"; NONCE=$4
  real_dir "$APPDIR" || die 11 "slot $3 of $APP points at no release"
  lock_app
  link_release "$APPDIR/slots/$3" slot; _id=$LINKED
  [ -n "$_id" ] || die 11 "slot $3 of $APP points at no release"
  real_dir "$REL/$_id" || die 11 "release $_id of $APP is not staged"
  link_release "$APPDIR/current" current; _prev=\${LINKED:--}
  swap_link "$APPDIR/current" "releases/$_id"
  unlock_app
  echo "ok promoted $_prev $_id"
}

# The newest "keep" releases stay (staging order, see ordered_releases), and so
# does every release current or a slot points at. Prints "removed <id>" lines.
op_prune() {
  set_root "$1"; set_app "$2" "$3"; shift; valid_count "$3" || refuse "bad count"
  _keep=$3
  real_dir "$REL" || { echo "ok pruned"; return 0; }
  lock_app
  sweep_app
  link_release "$APPDIR/current" current; _pinned=" $LINKED"
  for _s in "$APPDIR"/slots/*; do
    valid_name "\${_s##*/}" || continue
    link_release "$_s" slot; _pinned="$_pinned $LINKED"
  done
  ordered_releases
  _count=0
  for _id in $ORDERED; do _count=$((_count + 1)); done
  _i=0; _kept=; _removed=0
  for _id in $ORDERED; do
    _i=$((_i + 1))
    case "$_pinned " in *" $_id "*) _kept="$_kept $_id"; continue;; esac
    if [ "$_i" -le $((_count - _keep)) ]; then
      # Out of its name first (one rename): a release is whole under its name or gone.
      _gone=$REL/.removing-$_id-$$
      mv -T -- "$REL/$_id" "$_gone" || die 12 "cannot remove release $_id"
      rm -rf -- "$_gone" 2>/dev/null || { chmod -R u+rwx -- "$_gone"; rm -rf -- "$_gone"; } ||
        die 12 "cannot remove release $_id"
      echo "removed $_id"; _removed=$((_removed + 1))
    else
      _kept="$_kept $_id"
    fi
  done
  { for _id in $_kept; do printf "%s\n" "$_id"; done; } >"$APPDIR/.releases.tmp-$$" &&
    mv -f -- "$APPDIR/.releases.tmp-$$" "$APPDIR/.releases" || die 12 "cannot rewrite $APPDIR/.releases"
  durable "$APPDIR" "$REL"
  unlock_app
  if [ "$_removed" -gt 0 ]; then collect_blobs; fi
  echo "ok pruned"
}

# Cache blobs no release links (a link count of 1: the name in the cache itself). Only
# those older than an hour: a blob just received waits, unlinked, for its staging.
collect_blobs() {
  real_dir "$CACHE" || return 0
  find "$CACHE" -mindepth 2 -maxdepth 2 -path "$CACHE/??/*" -type f -links 1 -mmin +60 -exec rm -f -- {} + 2>/dev/null
  find "$CACHE/tmp" -mindepth 1 -maxdepth 1 -mmin +60 -exec rm -rf -- {} + 2>/dev/null
  find "$JOBS" -mindepth 1 -maxdepth 1 -type f -mmin +1440 -exec rm -f -- {} + 2>/dev/null
  return 0
}

# The releases, current and slots (APP, APPDIR, REL set). A pointer counts only while
# its release is there (one deleted by hand is drift, as on agents).
inventory_of() {
  if real_dir "$REL"; then
    ordered_releases
    for _id in $ORDERED; do echo "release $_id"; done
  fi
  link_release "$APPDIR/current" current; if [ -n "$LINKED" ] && real_dir "$REL/$LINKED"; then echo "current $LINKED"; fi
  for _s in "$APPDIR"/slots/*; do
    _slot=\${_s##*/}
    valid_name "$_slot" || continue
    link_release "$_s" slot; if [ -n "$LINKED" ] && real_dir "$REL/$LINKED"; then echo "slot $_slot $LINKED"; fi
  done
}

# The apps under the root ("app <name>"), then the layouts at recorded deploy paths
# ("app <name> <path>"); a directory of the root that is a deploy path is only the latter.
op_inventory() {
  set_root "$1"
  _paths=
  if [ -f "$ROOT/.turnout/paths" ]; then
    while IFS=" " read -r _app _path _extra || [ -n "$_app" ]; do
      [ -z "$_extra" ] && valid_name "$_app" && valid_path "$_path" || continue
      [ "$_path" != "$ROOT" ] && [ "$_path" != "$ROOT/$_app" ] || continue
      case $_path/ in "$ROOT/.turnout/"*) continue;; esac
      case " $_paths " in *" $_app:$_path "*) continue;; esac
      _paths="$_paths $_app:$_path"
    done <"$ROOT/.turnout/paths"
  fi
  if real_dir "$ROOT"; then
    for _a in "$ROOT"/*; do
      _app=\${_a##*/}
      valid_name "$_app" && real_dir "$_a" || continue
      case " $_paths " in *":$_a "*) continue;; esac
      APP=$_app; APPDIR=$_a; REL=$_a/releases
      echo "app $_app"
      inventory_of
    done
  fi
  for _p in $_paths; do
    APP=\${_p%%:*}; APPDIR=\${_p#*:}; REL=$APPDIR/releases
    real_dir "$APPDIR" || continue
    echo "app $APP $APPDIR"
    inventory_of
  done
  echo "ok inventory"
}
`;
