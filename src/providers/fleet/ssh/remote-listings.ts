import { sh } from "./sh-source.js";

/**
 * Kept listings on the host (release-listing.ts has the format): with one,
 * the server sends the `missing` question as the lines that changed, and
 * the blobs that changed, however big the tree (the tree itself goes as a
 * patch of a kept stage tar: remote-stagetars.ts).
 *
 * `<root>/.turnout/listings/<artifact>-<listing digest>`: the listing of a
 * release staged here, the newest KEEP_LISTINGS kept (by modification time;
 * staging a release writes its listing again). A listing is used only when
 * it hashes to the digest in its name: one deleted or damaged by hand means
 * the server sends the whole listing, as before.
 */
export const REMOTE_LISTINGS = sh`
TAB=$(printf "\t")
HEX64="[0123456789abcdef]{64}"
KEEP_LISTINGS=16
LISTINGS=
set_listings() { LISTINGS=$ROOT/.turnout/listings; }

# Whether file $1 is there and hashes to $2.
listing_ok() {
  [ -f "$1" ] && [ ! -L "$1" ] || return 1
  _sum=$(sha256sum -- "$1" 2>/dev/null) || return 1
  [ "\${_sum%% *}" = "$2" ]
}

# Keeps listing $1 as that of artifact $2 (digest $3), then drops all but the newest few.
keep_listing() {
  mkdir -p -- "$LISTINGS" 2>/dev/null; real_dir "$LISTINGS" || return 0
  if ! { cp -- "$1" "$LISTINGS/.tmp-$$" && mv -f -- "$LISTINGS/.tmp-$$" "$LISTINGS/$2-$3"; }; then
    rm -f -- "$LISTINGS/.tmp-$$"; info "cannot keep the listing of $2"; return 0
  fi
  find "$LISTINGS" -mindepth 1 -maxdepth 1 -type f ! -name ".*" -printf "%T@ %f\n" | LC_ALL=C sort -r -n |
    tail -n +$((KEEP_LISTINGS + 1)) | sed "s/^[^ ]* //" | (cd "$LISTINGS" && xargs -r -d "\n" rm -f --)
  return 0
}

# The missing question (release-listing.ts): every line well formed, and no
# path of the listing absolute, with an empty, "." or ".." component, a
# backslash or a control character.
check_listing_input() {
  if LC_ALL=C grep -qvE "^(M full|M delta $HEX64 $HEX64|N $HEX64|[-+] [^$TAB]+$TAB(d [1234567][01234567]{2}|f $HEX64(\.[1234567][01234567]{0,2})? [0123456789]{1,15}|l .+)|B $HEX64 [0123456789]{1,15}|R [dfl] .+|END)$" "$1"; then
    refuse "bad input line"
  fi
  sed -n "s/^+ \([^$TAB]*\)$TAB.*/\1/p" "$1" >"$WORK/paths"
  _ctl=$(printf "[\001-\011\013-\037\177]")
  if LC_ALL=C grep -qE "(^|/)\.{0,2}(/|$)|\\\\|$_ctl" "$WORK/paths"; then refuse "bad path in the listing"; fi
}

# The listing of the release into $2: the "+" lines (M full), or the kept base
# less the "-" lines plus the "+" lines (M delta); it must hash to the N
# line. Returns 1 when a difference cannot be applied here (no such base, or
# a damaged one, which is removed): the server then sends every line.
LISTING_DIGEST=
read_listing() {
  _mode=$(sed -n "1s/^M //p" "$1"); _want=$(sed -n "2s/^N //p" "$1")
  [ -n "$_want" ] || refuse "no listing digest"
  sed -n "s/^+ //p" "$1" | LC_ALL=C sort >"$2.add"
  case $_mode in
    full) mv -f -- "$2.add" "$2";;
    "delta "*)
      _b=\${_mode#delta }; _bf=$LISTINGS/\${_b%% *}-\${_b#* }
      if ! listing_ok "$_bf" "\${_b#* }"; then
        if [ -e "$_bf" ]; then rm -f -- "$_bf"; info "the kept listing \${_b%% *} is damaged: the whole listing is needed"; fi
        return 1
      fi
      sed -n "s/^- //p" "$1" | LC_ALL=C sort >"$2.del"
      LC_ALL=C comm -23 "$_bf" "$2.del" | LC_ALL=C sort -m - "$2.add" >"$2";;
    *) refuse "bad listing mode";;
  esac
  _sum=$(sha256sum -- "$2") || die 12 "cannot hash the listing"
  if [ "\${_sum%% *}" != "$_want" ]; then
    [ "$_mode" != full ] || refuse "the listing does not match its digest"
    info "the listing rebuilt from its base does not match its digest: the whole listing is needed"
    return 1
  fi
  LISTING_DIGEST=$_want
}

# The tree listing $1 describes, as the find of op_missing prints it.
listing_tree() {
  sed -e "s/^\([^$TAB]*\)\${TAB}d [01234567]*$/d \1/" \
    -e "s/^\([^$TAB]*\)\${TAB}f [0123456789abcdef]*\.\([01234567]*\) \([0123456789]*\)$/f \2 \3 \1/" \
    -e "s/^\([^$TAB]*\)\${TAB}f [0123456789abcdef]* \([0123456789]*\)$/f 444 \2 \1/" \
    -e "s/^\([^$TAB]*\)\${TAB}l /l \1 -> /" "$1"
}
# The cache names listing $1 needs with their sizes: that of each file, and the plain (0444) blob of each digest.
listing_blobs() {
  sed -n "s/^[^$TAB]*\${TAB}f \([0123456789abcdef]*\)\(\.[01234567]*\)\{0,1\} \([0123456789]*\)$/\1\2 \3/p" "$1"
  sed -n "s/^[^$TAB]*\${TAB}f \([0123456789abcdef]*\)[.01234567]* \([0123456789]*\)$/\1 \2/p" "$1"
}

# stdin: nothing. The listings kept for releases of this app the host still
# has, the one current points at first, then the newest; each verified.
# Prints "base <artifact> <listing digest>" lines, and "tar <artifact> <tar
# digest>" for the stage tars kept for the same releases (checked when used).
op_bases() {
  set_root "$1"; set_app "$2" "$3"; set_listings; set_tars
  if real_dir "$LISTINGS" && real_dir "$REL"; then
    link_release "$APPDIR/current" current; _cur=$LINKED
    ordered_releases
    _newest=
    for _id in $ORDERED; do if [ "$_id" != "$_cur" ]; then _newest="$_id $_newest"; fi; done
    _ids="$_cur $_newest"
    _n=0; _files=
    for _id in $_ids; do
      real_dir "$REL/$_id" || continue
      [ "$_n" -lt 3 ] || break
      _n=$((_n + 1))
      kept_tars "$_id"
      for _f in "$LISTINGS/$_id"*; do
        _name=\${_f##*/}
        valid_sha "\${_name%-*}" && valid_sha "\${_name#*-}" && [ -f "$_f" ] || continue
        _files="$_files $_f"
      done
    done
    if [ -n "$_files" ]; then
      sha256sum -- $_files 2>/dev/null | while IFS= read -r _line; do
        _sum=\${_line%% *}; _name=\${_line##*/}
        if [ "$_sum" = "\${_name#*-}" ]; then echo "base \${_name%-*} $_sum"; else rm -f -- "$LISTINGS/$_name"; fi
      done
    fi
  fi
  echo "ok bases"
}

`;
