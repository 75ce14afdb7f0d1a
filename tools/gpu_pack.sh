#!/usr/bin/env bash
# tools/gpu_pack.sh: build on a machine with a Rust toolchain and gather the release binaries,
# test executables and benches in .gpu/ (ignored by git), for a GPU machine that has CUDA but
# no Rust toolchain. From the repository root:
#   tools/gpu_pack.sh
# then, on the GPU machine, from a copy of the repository root that includes .gpu/:
#   COATT_REQUIRE_CUDA=1 .gpu/run-tests     # every test executable; CUDA tests must not skip
#   bash tools/gpu_check.sh                 # tests, parity table, our bench and PyTorch's
#   .gpu/bin/coatt-train ...                # the CLI
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
grep -qxF '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu
mkdir -p .gpu/bin .gpu/tests .gpu/benches

# Copies the executables cargo reports (JSON on stdin) to $1; $2 = "test" keeps only test and
# bench harness builds, anything else only the others.
gather() {
  python3 - "$1" "${2:-}" <<'PY'
import json, os, shutil, sys
dest, tests = sys.argv[1], sys.argv[2] == "test"
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and tests == bool(m.get("profile", {}).get("test")):
        shutil.copy2(m["executable"], dest)
        print("  " + os.path.join(dest, os.path.basename(m["executable"])))
PY
}

echo "release binaries"
cargo build --release --bins --message-format=json-render-diagnostics | gather .gpu/bin
echo "test executables (release)"
cargo test --release --no-run --message-format=json-render-diagnostics | gather .gpu/tests test
echo "benches"
cargo bench --no-run --message-format=json-render-diagnostics | gather .gpu/benches test
find .gpu -type f -perm -u+x -exec strip --strip-debug {} + 2>/dev/null || true

cat > .gpu/run-tests <<'RUN'
#!/usr/bin/env bash
# Every gathered test executable, one after the other; fails if any fails.
cd "$(dirname "$0")/.." || exit 2
fail=0
for t in .gpu/tests/*; do
  [ -x "$t" ] || continue
  echo "=== $t"
  "$t" --test-threads=1 "$@" || fail=1
done
exit $fail
RUN
chmod +x .gpu/run-tests
size=$(du -sm .gpu | cut -f1)
echo ".gpu/: ${size} MiB"
# the device tool carries at most 64 MiB with the working tree
[ "$size" -lt 60 ] || { echo "over 60 MiB: build fewer targets" >&2; exit 1; }
