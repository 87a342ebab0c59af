import { sh } from "./sh-source.js";

/**
 * Kept listings on the host (release-listing.ts has the format), and staging
 * from a base release with them: the server then sends only the lines and
 * the blobs that changed, however big the tree.
 *
 * `<root>/.turnout/listings/<artifact>-<listing digest>`: the listing of a
 * release staged here, the newest KEEP_LISTINGS kept (by modification time;
 * staging a release writes its listing again). A listing is used only when
 * it hashes to the digest in its name: one deleted or damaged by hand means
 * the server sends the whole tree, as before.
 *
 * Staging from a base never trusts the base release directory (an app may
 * have written into it, a hook may have changed modes, a file may have been
 * replaced): its tree is linked into the staging directory by one `cp -l`,
 * everything the new listing does not hold is taken out, the directories are
 * made and given their modes, the changed files and links come from the
 * server's tar as in a full staging, and the whole tree is then compared
 * with the listing, files by inode (the very cache blob a full staging
 * links). Any difference: the staging directory is dropped and the server
 * sends the whole tree. A fixed number of processes whatever the file count.
 */
export const REMOTE_LISTINGS = sh`
TAB=$(printf "\t")
NL=$(printf "\nx"); NL=\${NL%x}
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
# Prints "base <artifact> <listing digest>" lines.
op_bases() {
  set_root "$1"; set_app "$2" "$3"; set_listings
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

# The D line of the stage input: base artifact and listing, then those of this release.
DELTA_BASE=; DELTA_OLD=; DELTA_NEW=; DELTA_NEW_DIGEST=
parse_delta() {
  _r=$1; _ba=\${_r%% *}; _r=\${_r#* }; _bd=\${_r%% *}; _r=\${_r#* }; _na=\${_r%% *}; _nd=\${_r#* }
  valid_sha "$_ba" && valid_sha "$_bd" && valid_sha "$_na" && valid_sha "$_nd" || refuse "bad delta line"
  case $_na in "$ID"*) ;; *) refuse "the delta is not that of release $ID";; esac
  set_listings
  DELTA_BASE=\${_ba%\${_ba#????????????????}}
  DELTA_OLD=$LISTINGS/$_ba-$_bd; DELTA_NEW=$LISTINGS/$_na-$_nd
  [ "$DELTA_BASE" != "$ID" ] || refuse "a release is not its own base"
  listing_ok "$DELTA_OLD" "$_bd" && listing_ok "$DELTA_NEW" "$_nd"
}

# The tree being staged, one sorted line per entry in the form of the listing
# (files by inode; directories with their mode when $1 is "mode").
staged_tree() {
  if [ "\${1:-}" = mode ]; then _dfmt="%P\td %m\n"; else _dfmt="%P\td\n"; fi
  find "$STAGE" -mindepth 1 \( -type d -printf "$_dfmt" \) -o \( -type f -printf "%P\tf %i\n" \) \
    -o \( -type l -printf "%P\tl %l\n" \) -o -printf "%P\t?\n" | LC_ALL=C sort
}
# The files of listing $1 as "<path>\tf <inode of their cache blob>" (WORK/inodes: those of the cache).
listing_files() {
  sed -n "s/^\([^$TAB]*\)\${TAB}f \([^ ]*\) .*/\2$TAB\1/p" "$1" | LC_ALL=C sort -t "$TAB" -k 1,1 >"$WORK/names"
  LC_ALL=C join -t "$TAB" "$WORK/names" "$WORK/inodes" |
    sed "s/^[^$TAB]*$TAB\(.*\)$TAB\([0123456789]*\)$/\1\${TAB}f \2/"
}

# Before the tar: the base linked in, what the new listing lacks taken out,
# the directories made. Returns 1 when the base cannot serve (stage whole).
delta_prepare() {
  real_dir "$REL/$DELTA_BASE" || { info "staging $ID: release $DELTA_BASE is gone: staging the whole tree"; return 1; }
  cp -R -P -l -- "$REL/$DELTA_BASE/." "$STAGE/" 2>/dev/null ||
    info "staging $ID: some entries of release $DELTA_BASE could not be linked"
  if [ -n "$(find "$STAGE" -name "*$NL*" -print -quit)" ]; then
    info "staging $ID: release $DELTA_BASE holds a name with a line break: staging the whole tree"; return 1
  fi
  find "$STAGE" -type d ! -perm -700 -exec chmod u+rwx -- {} + || return 1
  find "$CACHE" -mindepth 2 -maxdepth 2 -path "$CACHE/??/*" -type f -printf "%f\t%i\n" |
    LC_ALL=C sort -t "$TAB" -k 1,1 >"$WORK/inodes"
  # The tree as it must end (delta_finish checks it), and what may stay of the
  # base: the same less the files and links the base lacks or has otherwise,
  # directories of any mode for now (they get theirs after the tar).
  { sed -n "/^[^$TAB]*\${TAB}[dl] /p" "$DELTA_NEW"; listing_files "$DELTA_NEW"; } | LC_ALL=C sort >"$WORK/want"
  LC_ALL=C comm -13 "$DELTA_OLD" "$DELTA_NEW" >"$WORK/added"
  { sed -n "/^[^$TAB]*\${TAB}l /p" "$WORK/added"; listing_files "$WORK/added"; } | LC_ALL=C sort >"$WORK/changed"
  LC_ALL=C comm -23 "$WORK/want" "$WORK/changed" | sed "s/^\([^$TAB]*\${TAB}d\) .*/\1/" >"$WORK/keep"
  staged_tree >"$WORK/have"
  LC_ALL=C comm -13 "$WORK/keep" "$WORK/have" | sed "s/$TAB.*//" >"$WORK/extra"
  # Names as find gave them, relative and without line breaks: checked anyway before rm.
  if LC_ALL=C grep -qE "(^|/)\.{0,2}(/|$)" "$WORK/extra"; then return 1; fi
  if [ -s "$WORK/extra" ]; then (cd "$STAGE" && xargs -r -d "\n" rm -rf -- <"$WORK/extra") || return 1; fi
  sed -n "s/^\([^$TAB]*\)\${TAB}d .*/\1/p" "$DELTA_NEW" | (cd "$STAGE" && xargs -r -d "\n" mkdir -p --) || return 1
}

# After the tar: directory modes (one chmod per mode), then the whole tree
# against the listing. Returns 1 on any difference (stage whole).
delta_finish() {
  sed -n "s/^[^$TAB]*\${TAB}d \([01234567]*\)$/\1/p" "$DELTA_NEW" | LC_ALL=C sort -u >"$WORK/modes"
  while IFS= read -r _m; do
    valid_mode "$_m" || return 1
    sed -n "s/^\([^$TAB]*\)\${TAB}d $_m$/\1/p" "$DELTA_NEW" | (cd "$STAGE" && xargs -r -d "\n" chmod "$_m" --) || return 1
  done <"$WORK/modes"
  staged_tree mode >"$WORK/have"
  LC_ALL=C comm -3 "$WORK/want" "$WORK/have" >"$WORK/diff"
  if [ -s "$WORK/diff" ]; then
    info "staging $ID: the tree built from release $DELTA_BASE is not the planned one ($(head -n 1 "$WORK/diff" | sed "s/^$TAB*//; s/$TAB/: /")): staging the whole tree"
    return 1
  fi
}
`;
