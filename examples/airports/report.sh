#!/bin/sh
# report.sh DIR
#
# The join of the airports pipeline: merges DIR/results/*.tsv (one line per state, written by
# state_stats.sh) into DIR/report.md (a Markdown report) and DIR/report.csv (one row per state).
# Publishes report, csv, states, airports, movements and a multi-line `top` (the five states
# with the most scheduled-flight movements) to $TANDEM_OUTPUT.
#
# Checks before writing (exit 1 with the reason otherwise):
#   - every state listed in DIR/states.txt has a result (the matrix covers the whole data set);
#   - the per-state airport counts plus the airports with no state add up to every airport parsed.
set -eu
export LC_ALL=C

: "${TANDEM_OUTPUT:?TANDEM_OUTPUT is not set: run this script through tandem}"
: "${TANDEM_RUN_ID:?TANDEM_RUN_ID is not set: run this script through tandem}"
: "${WORKFLOW_NAME:?WORKFLOW_NAME is not set: the workflow passes it in the env of task report}"
if [ $# -ne 1 ]; then
    echo "usage: report.sh DIR" >&2
    exit 2
fi
dir=$1

missing=
while read -r state; do
    [ -s "$dir/results/$state.tsv" ] || missing="$missing $state"
done < "$dir/states.txt"
if [ -n "$missing" ]; then
    echo "no result for state(s)$missing, which are in the data: add them to the matrix of task 'state'" >&2
    exit 1
fi

# One line per state, most airports first (ties by state code).
cat "$dir"/results/*.tsv | sort -t "$(printf '\t')" -k2,2nr -k1,1 > "$dir/merged.tsv"

total=$(wc -l < "$dir/airports.tsv" | tr -d ' ')
unknown=$(wc -l < "$dir/unknown-state.tsv" | tr -d ' ')
counted=$(awk -F '\t' '{ s += $2 } END { print s + 0 }' "$dir/merged.tsv")
if [ $((counted + unknown)) -ne "$total" ]; then
    echo "airport counts do not add up: $counted in states + $unknown with no state != $total parsed" >&2
    exit 1
fi

# CSV: RFC 4180 quoting for text fields that need it.
awk -F '\t' '
function q(s) {
    if (s ~ /[",\r\n]/) { gsub(/"/, "\"\"", s); return "\"" s "\"" }
    return s
}
BEGIN {
    print "state,airports,cities,top_city,top_city_airports,served,movements,busiest_iata,busiest_name,busiest_movements,lat_min,lat_max,lon_min,lon_max,lat_mean,lon_mean"
}
{
    line = q($1)
    for (i = 2; i <= NF; i++) line = line "," q($i)
    print line
}
' "$dir/merged.tsv" > "$dir/report.csv"

# Markdown report (the backticks in single-quoted formats are Markdown, not shell).
# shellcheck disable=SC2016
{
    printf '# US airports by state and territory\n\n'
    printf 'Run `%s` of workflow `%s`.\n\n' "$TANDEM_RUN_ID" "$WORKFLOW_NAME"
    printf 'Data: FAA airports list and BTS 2008 route counts, from the vega-datasets package (see `examples/data/README.md`).\n\n'
    awk -F '\t' -v total="$total" -v unknown="$unknown" '
    {
        states++; served += $6; movements += $7
        if ($10 > best || ($10 == best && $8 < best_iata)) { best = $10; best_iata = $8; best_name = $9; best_state = $1 }
    }
    END {
        printf "- %d airports, %d of them in %d states and territories, %d with no state recorded\n", total, total - unknown, states, unknown
        printf "- %d airports had scheduled flights in 2008: %d movements (departures + arrivals)\n", served, movements
        printf "- busiest airport: %s (%s, %s), %d movements\n\n", best_iata, best_name, best_state, best
    }' "$dir/merged.tsv"
    printf '| State | Airports | Cities | City with most airports | With flights | Movements 2008 | Busiest airport | Latitude | Longitude |\n'
    printf '|---|--:|--:|---|--:|--:|---|---|---|\n'
    awk -F '\t' '
    function md(s) { gsub(/\|/, "\\|", s); return s }
    {
        busiest = ($8 == "-") ? "-" : sprintf("%s %s (%d)", $8, md($9), $10)
        printf "| %s | %d | %d | %s (%d) | %d | %d | %s | %.2f .. %.2f | %.2f .. %.2f |\n", \
            $1, $2, $3, md($4), $5, $6, $7, busiest, $11, $12, $13, $14
    }' "$dir/merged.tsv"
} > "$dir/report.md"

states=$(wc -l < "$dir/merged.tsv" | tr -d ' ')
movements=$(awk -F '\t' '{ s += $7 } END { print s + 0 }' "$dir/merged.tsv")
{
    echo "report=$dir/report.md"
    echo "csv=$dir/report.csv"
    echo "states=$states"
    echo "airports=$total"
    echo "movements=$movements"
    echo "top<<EOF"
    sort -t "$(printf '\t')" -k7,7nr -k1,1 "$dir/merged.tsv" | head -n 5 |
        awk -F '\t' '{ printf "%s: %d movements, busiest %s (%s)\n", $1, $7, $8, $9 }'
    echo "EOF"
} >> "$TANDEM_OUTPUT"
echo "merged $states states into $dir/report.md and $dir/report.csv"
