#!/bin/sh
# Run a command (the test suite) and fail if it changed the git working tree: a tracked file
# modified, added or deleted, or a new file that .gitignore does not cover. Compares a
# fingerprint taken before and after, so a tree that was already dirty is judged by what the
# command itself did. Outside a git checkout (a source tarball) it only runs the command.
#
#   scripts/check-clean-tree.sh .venv/bin/pytest -q
set -eu

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 64
fi

if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    exec "$@"
fi

fingerprint() {
    # Paths and states, the content of every change to tracked files, and of untracked files.
    git status --porcelain=v1 --untracked-files=all
    git diff --binary HEAD | git hash-object --stdin
    git ls-files --others --exclude-standard -z | xargs -0 -r git hash-object --
}

before=$(fingerprint)
status=0
"$@" || status=$?
after=$(fingerprint)

if [ "$before" != "$after" ]; then
    echo "check-clean-tree: the command changed the working tree (tests must write only to" \
        "ignored folders; \`make screenshots\` refreshes docs/screenshots/ on purpose):" >&2
    git status --short --untracked-files=all >&2
    [ "$status" -ne 0 ] || status=1
fi
exit "$status"
