#!/usr/bin/env bash
# Installs what the end-to-end tests need: Debian packages (Chromium to drive the UI, ripgrep, the headers
# code-server's native modules build against) and code-server, a real VS Code, into the gitignored .e2e/.
# Idempotent: every step checks first and skips work already done. Run as root on Debian 12 with Node 20;
# reaches only the npm registry and Debian apt. `--packages-only` stops after the Debian packages (the unit
# tests drive the webview in Chromium too, so `npm test` runs that much).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CODE_SERVER_VERSION="${CODE_SERVER_VERSION:-4.100.3}" # the last code-server that runs on Node 20 (VS Code 1.100.3)
E2E_DIR="${PRUNEKIT_E2E_DIR:-$ROOT/.e2e}"
PREFIX="$E2E_DIR/code-server"
MARKER="$PREFIX/.installed-$CODE_SERVER_VERSION"

t_all=$SECONDS
step() { printf '[e2e install] %s\n' "$*"; }
took() { step "$1 took $(( SECONDS - $2 )) s"; }

# --- 1. Debian packages, installed only when missing -------------------------------------------------------
t=$SECONDS
wanted=(chromium ripgrep libkrb5-dev pkg-config build-essential python3)
missing=()
for pkg in "${wanted[@]}"; do
  [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]})); then
  step "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" # with recommends: Chromium's fonts render the screenshots
else
  step "Debian packages already installed: ${wanted[*]}"
fi
took "apt" "$t"
[[ "${1:-}" == --packages-only ]] && exit 0

# --- 2. code-server into .e2e/code-server ------------------------------------------------------------------
cs_bin="$PREFIX/node_modules/.bin/code-server"
if [[ -f "$MARKER" && -x "$cs_bin" ]]; then
  step "code-server $CODE_SERVER_VERSION already installed in $PREFIX"
else
  t=$SECONDS
  node_major="$(node -p 'process.versions.node.split(".")[0]')"
  [[ "$node_major" == 20 ]] || { step "code-server $CODE_SERVER_VERSION needs Node 20, found $(node -v)"; exit 1; }

  # A private TMPDIR: the ripgrep cache seeded below must sit in the os.tmpdir() the postinstall sees.
  tmp="$E2E_DIR/tmp"
  rm -rf "$PREFIX" "$tmp"
  mkdir -p "$PREFIX" "$tmp"

  # VS Code's @vscode/ripgrep postinstall downloads rg from GitHub (unreachable) unless its cache already holds
  # the release tarball: $TMPDIR/vscode-ripgrep-cache-<package version>/ripgrep-<release>-<target>.tar.gz.
  # Both versions are read from the packages themselves, so a different code-server version keeps working.
  (cd "$tmp" && npm pack --silent "code-server@$CODE_SERVER_VERSION" >/dev/null)
  rg_pkg_version="$(tar -xzOf "$tmp/code-server-$CODE_SERVER_VERSION.tgz" package/lib/vscode/npm-shrinkwrap.json \
    | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).packages["node_modules/@vscode/ripgrep"].version))')"
  (cd "$tmp" && npm pack --silent "@vscode/ripgrep@$rg_pkg_version" >/dev/null)
  rg_release="$(tar -xzOf "$tmp/vscode-ripgrep-$rg_pkg_version.tgz" package/lib/postinstall.js \
    | sed -n "s/^const VERSION = '\(.*\)';.*/\1/p")"
  case "$(uname -m)" in
    x86_64) rg_target=x86_64-unknown-linux-musl ;;
    aarch64) rg_target=aarch64-unknown-linux-musl ;;
    *) step "no ripgrep target known for $(uname -m)"; exit 1 ;;
  esac
  [[ -n "$rg_release" ]] || { step "could not read the ripgrep release from @vscode/ripgrep@$rg_pkg_version"; exit 1; }
  rg_cache="$tmp/vscode-ripgrep-cache-$rg_pkg_version"
  mkdir -p "$rg_cache/stage"
  cp "$(command -v rg)" "$rg_cache/stage/rg"
  tar -czf "$rg_cache/ripgrep-$rg_release-$rg_target.tar.gz" -C "$rg_cache/stage" rg
  rm -rf "$rg_cache/stage"
  step "seeded $rg_cache/ripgrep-$rg_release-$rg_target.tar.gz with Debian's $(rg --version | sed -n 1p)"

  # Native modules build with node-gyp, which downloads Node's headers unless nodedir points at local ones.
  if [[ "$(cd "$PREFIX" && npm config get nodedir 2>/dev/null)" =~ ^(|undefined|null)$ ]]; then
    node_prefix="$(dirname "$(dirname "$(command -v node)")")"
    [[ -f "$node_prefix/include/node/node.h" ]] && export npm_config_nodedir="$node_prefix"
  fi

  step "npm install code-server@$CODE_SERVER_VERSION (about 300 MB)"
  (cd "$PREFIX" && TMPDIR="$tmp" npm_config_unsafe_perm=true npm_config_yes=true \
    npm install --prefix "$PREFIX" --no-audit --no-fund "code-server@$CODE_SERVER_VERSION")
  # code-server writes a default config.yaml under XDG_CONFIG_HOME whenever it starts: keep it out of $HOME.
  XDG_CONFIG_HOME="$tmp/xdg" "$cs_bin" --version | sed -n 1p
  rm -rf "$tmp"
  touch "$MARKER"
  took "code-server install" "$t"
fi

step "all done in $(( SECONDS - t_all )) s"
