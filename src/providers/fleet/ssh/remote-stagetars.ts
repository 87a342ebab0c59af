import { sh } from "./sh-source.js";

/**
 * Kept stage tars on the host: the uncompressed tar of hard-link entries
 * (stage-tar.ts) that staged a release, so that the next release can be
 * sent as a patch of it (tar-patch.ts) and still be unpacked by the one
 * `tar -x` of a full staging, with all its checks: the base release
 * directory is never read (an app may have written into it, a hook changed
 * its modes: none of it matters).
 *
 * `<root>/.turnout/stagetars/<artifact>-<sha256 of the tar>`, the newest
 * KEEP_TARS (by modification time), about 512 bytes per entry of the
 * release (1.5 MB for 3,000 files). Eight, not the 16 listings: a host
 * offers at most three bases per app (op_bases), so eight serve two or
 * three apps deployed in turn, at most about 12 MB for 3,000-file
 * releases; past that an app gets the whole tree (its listing still goes
 * as a difference). A kept tar is used only when it hashes
 * to the digest in its name, which is the digest of the tar the server made
 * again from the base manifest; the rebuilt tar must hash to the digest the
 * server sends for the new one. Anything else (no such tar, damaged,
 * a patch that does not add up) answers "ok fallback": the server sends the
 * whole tree.
 *
 * Rebuilding is one `dd` per range of the patch (at most MAX_PATCH_RANGES,
 * as tar-patch.ts says; records of 512 bytes), plus one `gzip` and two
 * `sha256sum`: a few processes for a small change, whatever the file count.
 */
export const REMOTE_STAGETARS = sh`
KEEP_TARS=8
MAX_PATCH_RANGES=64
TARS=
set_tars() { TARS=$ROOT/.turnout/stagetars; }

# "tar <first 16 digits of the digest>" for each stage tar kept for release $1:
# a hint (a few bytes on the wire), not hashed here; patch_tar checks the tar it uses.
kept_tars() {
  real_dir "$TARS" || return 0
  for _t in "$TARS/$1"*; do
    _tn=\${_t##*/}
    valid_sha "\${_tn%-*}" && valid_sha "\${_tn#*-}" && [ -f "$_t" ] && [ ! -L "$_t" ] || continue
    _tn=\${_tn#*-}; echo "tar \${_tn%\${_tn#????????????????}}"
  done
}

# Keeps stage tar $1 (moved) as that of artifact $2 (digest $3), then drops all but the newest few.
keep_tar() {
  set_tars
  mkdir -p -- "$TARS" 2>/dev/null; real_dir "$TARS" || return 0
  if ! mv -f -- "$1" "$TARS/$2-$3"; then info "cannot keep the stage tar of $2"; return 0; fi
  find "$TARS" -mindepth 1 -maxdepth 1 -type f ! -name ".*" -printf "%T@ %f\n" | LC_ALL=C sort -r -n |
    tail -n +$((KEEP_TARS + 1)) | sed "s/^[^ ]* //" | (cd "$TARS" && xargs -r -d "\n" rm -f --)
  return 0
}

# Rebuilds into $3 the stage tar of release ID from the kept tar of digest
# $1, the ranges in file $2 (C <start> <count>: records of the base; L
# <count>: the next new records) and the new records, gzipped, on stdin; it
# must hash to $4. Returns 1 when it cannot (stage whole).
patch_tar() {
  set_tars
  _base=
  for _t in "$TARS"/*-"$1"; do
    _tn=\${_t##*/}
    if valid_sha "\${_tn%-*}" && [ -f "$_t" ] && [ ! -L "$_t" ]; then _base=$_t; break; fi
  done
  _bid=\${1%\${1#????????????????}}
  if [ -z "$_base" ]; then
    info "staging $ID: the stage tar $_bid is no longer kept: staging the whole tree"; return 1
  fi
  _bid=\${_base##*/}; _bid=\${_bid%\${_bid#????????????????}}
  if ! listing_ok "$_base" "$1"; then
    rm -f -- "$_base"; info "staging $ID: the kept stage tar of $_bid is damaged (removed): staging the whole tree"
    return 1
  fi
  gzip -dc >"$3.new" || refuse "bad patch of the tree"
  _lp=0
  while read -r _k _a _b; do
    case $_k in
      C) valid_count "$_a" && valid_count "$_b" || refuse "bad patch range"
        dd if="$_base" bs=512 skip="$_a" count="$_b" 2>/dev/null || return 1;;
      L) valid_count "$_a" && [ -z "$_b" ] || refuse "bad patch range"
        dd if="$3.new" bs=512 skip="$_lp" count="$_a" 2>/dev/null || return 1
        _lp=$((_lp + _a));;
      *) refuse "bad patch range";;
    esac
  done <"$2" >"$3"
  rm -f -- "$3.new"
  _sum=$(sha256sum -- "$3") || die 12 "cannot hash the stage tar"
  if [ "\${_sum%% *}" != "$4" ]; then
    info "staging $ID: the tree rebuilt from the stage tar of $_bid does not match its digest: staging the whole tree"
    return 1
  fi
}
`;
