#!/usr/bin/env bash
# Every pointer in the docs resolves: each relative link ](target) in README.md, CHANGELOG.md and
# docs/*.md exists beside its file, and each file path written in backticks exists in the repository.
# A bare file name is found anywhere in the repository (`test_faults.py` under tests/reliability/).
# Skipped: placeholders (<lake>, …, $VARIABLES, URLs, dt=…), and what the pipeline writes at run
# time rather than the repository holds (RUNTIME below: the home var/, .venv/, names in the lake,
# in an MLflow run or in a model cache), and Helm keys that look like paths (NOT_PATHS).
#   bash scripts/check_docs.sh      # prints each missing target; exit 1 when there is one
set -uo pipefail
cd "$(dirname "$0")/.."
missing=0
RUNTIME=' var var/demo var/demo/services ./var .venv/bin/python _manifest.json _validation.json _validation.pending.json rows anchor.json scores review models gx_result.json _drift/prequential.jsonl _drift/state.json anchor/anchor.json anchor/history.jsonl search_logs search_logs.v2 _delta_log lineage.json readmitted.json quarantine.json '
NOT_PATHS=' images.airflow.repository/tag nvidia.com/gpu '
tracked=$(git ls-files)
for doc in README.md CHANGELOG.md docs/*.md; do
    dir=$(dirname "$doc")
    # relative links: ](path) or ](path#anchor), not http(s) or mailto
    while read -r target; do
        target=${target%%#*}
        [[ -z $target ]] && continue
        if [[ ! -e "$dir/$target" ]]; then echo "$doc: link $target: missing"; missing=1; fi
    done < <(grep -o '](\([^)]*\))' "$doc" | sed 's/^](//; s/)$//' | grep -v '^[a-z]*:')
    # paths in backticks: a word with a '/' or a known file ending, no placeholder
    while read -r path; do
        path=${path%%:*}                      # file:line forms
        path=${path%% *}                      # "path --flag" forms: the path only
        case $path in
            *'<'*|*'…'*|*'$'*|*'*'*|*'{'*|*'='*|http*|s3:*|runs:*|sqlite:*|duckdb:*|postgresql:*|/*|~*) continue ;;
        esac
        [[ $path == */* || $path =~ \.(py|md|sh|sql|yaml|yml|json|png|csv|txt|toml)$ ]] || continue
        [[ $path == */ ]] && path=${path%/}
        [[ $RUNTIME == *" $path "* || $NOT_PATHS == *" $path "* ]] && continue
        [[ $path != */* ]] && grep -q "/$path\$" <<< "$tracked" && continue
        if [[ ! -e $path && ! -e "$dir/$path" && ! -e "incremental/$path" ]]; then
            echo "$doc: path $path: missing"; missing=1
        fi
    done < <(grep -o '`[^`]*`' "$doc" | tr -d '`' | grep -E '^[A-Za-z0-9_./-]+(\.[a-z]+|/)' )
done
((missing)) && exit 1
echo "every link and path in README.md, CHANGELOG.md and docs/*.md resolves"
