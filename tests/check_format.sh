#!/bin/sh
# check_format.sh: lists the C files under apiserver-shim/, raft/, storage/,
# cmd/, client/, tests/ and e2e/lincheck/ that clang-format (14, .clang-format at the top)
# would change; exits 1 if there is one. `check_format.sh -i` formats them.
# Run by ctest as unit/check_format (skipped without clang-format 14).
cd "$(dirname "$0")/.." || exit 2
if ! clang-format --version 2>/dev/null | grep -q 'version 14\.'; then
    echo "SKIP: clang-format 14 (Debian 12's) is not installed; other versions format differently"
    exit 0
fi
files=$(git ls-files 'apiserver-shim/*.[ch]' 'raft/*.[ch]' 'storage/*.[ch]' 'cmd/*.c' 'client/*.[ch]' 'tests/*.[ch]' 'e2e/lincheck/*.[ch]')
if [ "$1" = "-i" ]; then
    clang-format -i $files
    exit 0
fi
bad=0
for f in $files; do
    if ! clang-format "$f" | cmp -s - "$f"; then
        echo "not formatted: $f"
        bad=1
    fi
done
exit $bad
