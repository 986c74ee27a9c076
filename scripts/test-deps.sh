#!/usr/bin/env bash
# Makes sure the NATS and PostgreSQL that the tests use are reachable.
# Uses NATS_URL and DATABASE_URL (defaults 127.0.0.1:4222 and 127.0.0.1:5432). When either is
# down and Docker is available, starts just those two with docker compose; otherwise says what
# is missing and how to provide it, and fails.
set -euo pipefail

nats_url="${NATS_URL:-nats://127.0.0.1:4222}"
db_url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

# host:port of the first URL in a list like nats://a:4222,nats://b:4222
host_port() {
  local url="${1%%,*}"
  url="${url#*://}"          # drop scheme
  url="${url#*@}"            # drop credentials
  url="${url%%/*}"           # drop path
  url="${url%%\?*}"          # drop query
  case "$url" in
    *:*) echo "$url" ;;
    *) echo "$url:$2" ;;
  esac
}

reachable() {
  local hp="$1"
  timeout 2 bash -c "exec 3<>/dev/tcp/${hp%:*}/${hp##*:}" 2>/dev/null
}

nats_hp=$(host_port "$nats_url" 4222)
pg_hp=$(host_port "$db_url" 5432)
missing=()
reachable "$nats_hp" || missing+=("NATS with JetStream at $nats_hp (NATS_URL)")
reachable "$pg_hp" || missing+=("PostgreSQL at $pg_hp (DATABASE_URL)")

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  echo "starting NATS and PostgreSQL with docker compose (missing: ${missing[*]})"
  # The tests connect without credentials on prefixes of their own: run NATS without the
  # deployment's per-service authorization (docker/nats/open.conf).
  NATS_CONFIG=open.conf docker compose up -d --wait nats postgres
  exit 0
fi

echo "The tests need services that are not reachable:" >&2
for m in "${missing[@]}"; do echo "  - $m" >&2; done
cat >&2 <<'HELP'
Provide them in one of these ways:
  - start Docker and run `make test` again (it runs `docker compose up -d --wait nats postgres`);
  - or run them yourself: `nats-server -js` (Debian/Ubuntu: apt-get install nats-server) and
    PostgreSQL 15+ with a `postgres` user allowed to create databases;
  - or point NATS_URL / DATABASE_URL at servers you already have.
HELP
exit 1
