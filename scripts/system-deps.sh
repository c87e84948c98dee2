#!/usr/bin/env bash
# The system programs `make test` needs besides Python: chromium and chromedriver (the chat
# demo's browser test), redis-server (the Redis broker tests). `make test` and `.ci/run` run
# this first, so a machine without them stops here at once rather than minutes into the suite.
#
# Missing ones are installed with apt-get when that is possible without asking (root, or
# passwordless sudo); otherwise this prints the command to run and exits 1.
#   FASTWS_NO_SYSTEM_INSTALL=1  never install, only check
#   FASTWS_SKIP_BROWSER=1       chromium/chromedriver not needed (the browser tests skip)
#   FASTWS_SKIP_REDIS=1         redis-server not needed (the Redis tests skip)
set -euo pipefail

# Debian package -> the program the tests look for (tests/integration/test_chat_browser.py
# accepts chromium or chromium-browser).
missing_packages() {
    if [[ "${FASTWS_SKIP_BROWSER:-}" != 1 ]]; then
        command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
            || echo chromium
        command -v chromedriver >/dev/null 2>&1 || echo chromium-driver
    fi
    if [[ "${FASTWS_SKIP_REDIS:-}" != 1 ]]; then
        command -v redis-server >/dev/null 2>&1 || echo redis-server
    fi
}

missing=$(missing_packages | tr '\n' ' ')
missing=${missing% }
[[ -z "$missing" ]] && exit 0

as_root=()
if [[ "$(id -u)" != 0 ]]; then
    as_root=(sudo -n)
fi
can_install=1
if [[ "${FASTWS_NO_SYSTEM_INSTALL:-}" == 1 ]] || ! command -v apt-get >/dev/null 2>&1; then
    can_install=0
elif [[ ${#as_root[@]} -gt 0 ]] && ! sudo -n true 2>/dev/null; then
    can_install=0  # not root, and sudo is absent or would ask for a password
fi

if [[ "$can_install" == 0 ]]; then
    sudo=${as_root:+sudo }
    {
        echo "scripts/system-deps.sh: missing system packages: $missing"
        if command -v apt-get >/dev/null 2>&1; then
            echo "install them with:"
            echo "    ${sudo}apt-get update &&" \
                "${sudo}apt-get install -y --no-install-recommends $missing"
        else
            echo "install them (Debian's names: $missing) with your package manager"
        fi
        echo "or skip their tests: FASTWS_SKIP_BROWSER=1 (chromium), FASTWS_SKIP_REDIS=1 (redis)"
    } >&2
    exit 1
fi

echo "scripts/system-deps.sh: installing $missing" >&2
# Wait for another apt/dpkg run to let go of its lock rather than failing at once.
apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq -o DPkg::Lock::Timeout=600)
"${apt[@]}" update
# shellcheck disable=SC2086  # $missing: one word per package
"${apt[@]}" install -y --no-install-recommends $missing >/dev/null

still=$(missing_packages | tr '\n' ' ')
if [[ -n "${still% }" ]]; then
    echo "scripts/system-deps.sh: still missing after apt-get install: ${still% }" >&2
    exit 1
fi
