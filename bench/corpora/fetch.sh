#!/usr/bin/env bash
# Fetches the corpora and conformance suites the tests read from ../shared (beside the
# project) from their public origins, pinned by commit, and verifies each by checksum.
#
#   bench/corpora/fetch.sh [DEST]            fetch into DEST (default: ../shared beside the project)
#   bench/corpora/fetch.sh --verify [DIR]    only check an existing copy (default: ../shared)
#
# sources.tsv (beside this script) names, per corpus, the repository, commit, folder and
# files taken, and the SHA-256 of the sorted `sha256sum` lines of those files. Needs curl,
# tar and sha256sum, and access to GitHub's archive downloads. Files that were made by hand
# from these sources (expected.tsv, groups.tsv, wire/, the VoiceXML IR index and its
# converted/ documents) are not on any public origin: sources.tsv lists them as `made`, and
# the tests that read them fail, naming the missing file, until ../shared holds them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mode=fetch
if [ "${1:-}" = "--verify" ]; then mode=verify; shift; fi
dest=${1:-$root/../shared}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT

# The files under $1 (relative paths, sorted) matching any of the patterns in $2.
matching() {
    local dir=$1 f p
    local -a patterns
    read -r -a patterns <<<"$2"
    [ -d "$dir" ] || return 0
    (cd "$dir" && find . -type f | sed 's#^\./##' | LC_ALL=C sort) | while IFS= read -r f; do
        for p in "${patterns[@]}"; do
            # shellcheck disable=SC2053 # $p is a glob on purpose
            if [[ $f == $p ]]; then printf '%s\n' "$f"; break; fi
        done
    done
}

# The checksum of the files under $1 matching $2.
tree_hash() {
    local dir=$1 patterns=$2
    (cd "$dir" && matching . "$patterns" | tr '\n' '\0' | xargs -0 -r sha256sum) | sha256sum | cut -c1-64
}

# Downloads repo $1 at commit $2 once; prints the unpacked folder.
archive() {
    local repo=$1 commit=$2 dir
    dir="$cache/${repo//\//_}-$commit"
    if [ ! -d "$dir" ]; then
        mkdir -p "$dir"
        curl -fsSL --retry 2 "https://codeload.github.com/$repo/tar.gz/$commit" \
            | tar -xz -C "$dir" --strip-components=1 || { rm -rf "$dir"; return 1; }
    fi
    printf '%s\n' "$dir"
}

ok=0 failed=0 made=0
while IFS=$'\t' read -r target repo commit source patterns sum; do
    case "$target" in ''|'#'*) continue ;; esac
    if [ "$repo" = made ]; then
        made=$((made + 1))
        if [ -e "$dest/$target" ]; then
            echo "present  $target (made by hand from its sources; not fetched)"
        else
            echo "MISSING  $target: made by hand from its sources (see its corpus README), not on a public origin"
        fi
        continue
    fi
    if [ "$mode" = fetch ]; then
        if ! src=$(archive "$repo" "$commit"); then
            echo "FAILED   $target: cannot download $repo@$commit (network closed?)"
            failed=$((failed + 1))
            continue
        fi
        mkdir -p "$dest/$target"
        matching "$src/$source" "$patterns" | while IFS= read -r f; do
            mkdir -p "$dest/$target/$(dirname "$f")"
            cp "$src/$source/$f" "$dest/$target/$f"
        done
    fi
    got=$(tree_hash "$dest/$target" "$patterns")
    count=$(matching "$dest/$target" "$patterns" | wc -l)
    if [ "$got" = "$sum" ]; then
        echo "ok       $target ($count files from $repo@${commit:0:12})"
        ok=$((ok + 1))
    else
        echo "FAILED   $target: checksum $got of $count files, expected $sum ($repo@${commit:0:12}:$source)"
        failed=$((failed + 1))
    fi
done < "$here/sources.tsv"
echo "$ok verified, $failed failed, $made made by hand (in $dest)"
[ "$failed" -eq 0 ]
