import { sh } from "./sh-source.js";

/**
 * Commands on the host (restart, depool, pool, command health checks), the
 * HTTP health check made from the host itself, stopping a job, and the
 * greeting that checks the host has the tools the script needs.
 */
export const REMOTE_COMMANDS = sh`
op_hello() {
  need_tools tar gzip sha256sum base64 timeout ln mv rm mkdir chmod readlink cp find grep sed sort comm head tail dd sync xargs cat
  echo "ok turnout-host 1"
}

# stdin: E/A lines, END. Runs argv in the current release; prints "ok status <code>".
# Mode "any": without a current release, in the app directory (depool and pool
# may come first); mode "current": prints "ok nocurrent" instead (health).
op_run() {
  set_root "$1"; set_app "$2" "$3"; shift; valid_count "$3" || refuse "bad timeout"
  valid_nonce "$4" || refuse "bad nonce"; SECS=$3; NONCE=$4; _mode=$5
  case $_mode in any|current) ;; *) refuse "bad mode";; esac
  shift 5
  _end=
  while IFS= read -r _line; do
    if command_line "$_line"; then set -- "$@" "$DECODED"; continue; fi
    case $_line in
      END) _end=1; break;;
      *) refuse "bad input line";;
    esac
  done
  [ -n "$_end" ] || refuse "truncated input"
  [ "$JOB_ARGS" -gt 0 ] || refuse "no command"
  link_release "$APPDIR/current" current
  if [ -n "$LINKED" ] && real_dir "$REL/$LINKED"; then
    JOB_ID=$LINKED; JOB_DIR=$REL/$LINKED; _cwd=$JOB_DIR
  elif [ "$_mode" = current ]; then
    echo "ok nocurrent"; return 0
  else
    ensure_real_dir "$ROOT"; ensure_real_dir "$APPDIR"; _cwd=$APPDIR
    info "$APP has no current release yet: running in $APPDIR"
  fi
  run_job "$_cwd" "$SECS" "$JOB_ENV" "$@"
  echo "ok status $?"
}

# stdin: "U <url>", END. A GET answered 2xx is healthy; redirects are not followed.
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
    _code=$(curl -sS -o /dev/null -m "$1" -w "%{http_code}" --url "$_url" </dev/null) || { echo "ok status 1"; return 0; }
    case $_code in 2??) echo "ok status 0";; *) info "HTTP $_code"; echo "ok status 1";; esac
  elif command -v wget >/dev/null 2>&1; then
    if wget -q --max-redirect=0 -O /dev/null -T "$1" -t 1 -- "$_url" </dev/null 1>&2; then echo "ok status 0"
    else info "wget failed (exit code $?)"; echo "ok status 1"; fi
  else
    die 13 "neither curl nor wget is installed on this host"
  fi
}

# Stops a job another connection started (the server aborted): marks it
# cancelled (run_job checks after recording the pid) and signals it.
op_cancel() {
  set_root "$1"; valid_nonce "$2" || refuse "bad nonce"
  mkdir -p -- "$JOBS" || die 12 "cannot create $JOBS"
  : >"$JOBS/$2.cancel"
  if [ -f "$JOBS/$2" ]; then
    _pid=$(cat -- "$JOBS/$2")
    if valid_count "$_pid"; then kill -TERM "$_pid" 2>/dev/null; fi
  fi
  echo "ok cancelled"
}
`;
