#!/bin/sh
# prepare.sh OUT_DIR
#
# First task of the airports pipeline. Reads the two shipped data files (see ../data/README.md)
# and writes, under OUT_DIR:
#   airports.tsv        every airport, CSV quoting undone: iata name city state country lat lon
#   states/ST.tsv       the airports of state ST (same columns), one file per state code
#   unknown-state.tsv   the airports whose state is recorded as "NA" (not available)
#   traffic.tsv         per airport: iata, departures, arrivals (scheduled flights in 2008)
#   states.txt          the state codes present in the data, sorted, one per line
# and publishes the outputs dir, airports, states and unknown_state to $TANDEM_OUTPUT.
#
# Fails (exit 1) naming the file and line of any malformed record.
set -eu
export LC_ALL=C

: "${TANDEM_OUTPUT:?TANDEM_OUTPUT is not set: run this script through tandem}"
if [ $# -ne 1 ]; then
    echo "usage: prepare.sh OUT_DIR" >&2
    exit 2
fi
out=$1
data=../data

mkdir -p "$out/states"
out=$(cd "$out" && pwd)
: > "$out/unknown-state.tsv"

# CSV -> TSV, checked. The CSV parser follows RFC 4180 for one-line records: a field may be
# quoted, a quoted field may hold commas, and "" inside it is a literal quote.
awk -v src="$data/airports.csv" -v out="$out" '
function parse_csv(line, f,    n, i, c, field, quoted, len) {
    n = 0; field = ""; quoted = 0; len = length(line)
    for (i = 1; i <= len; i++) {
        c = substr(line, i, 1)
        if (quoted) {
            if (c == "\"") {
                if (substr(line, i + 1, 1) == "\"") { field = field "\""; i++ }
                else quoted = 0
            } else field = field c
        } else if (c == "\"") quoted = 1
        else if (c == ",") { f[++n] = field; field = "" }
        else field = field c
    }
    if (quoted) return -1
    f[++n] = field
    return n
}
function fail(msg) {
    printf "%s:%d: %s\n", src, NR, msg > "/dev/stderr"
    failed = 1
    exit 1
}
{ sub(/\r$/, "") }
NR == 1 {
    if ($0 != "iata,name,city,state,country,latitude,longitude")
        fail("expected the header iata,name,city,state,country,latitude,longitude, found: " $0)
    next
}
{
    n = parse_csv($0, f)
    if (n < 0) fail("unterminated quoted field")
    if (n != 7) fail("expected 7 fields, found " n)
    for (i = 1; i <= 7; i++) if (index(f[i], "\t")) fail("field " i " holds a tab")
    if (f[1] == "") fail("empty iata code")
    if (f[6] !~ /^-?[0-9]+(\.[0-9]+)?$/) fail("latitude is not a number: " f[6])
    if (f[7] !~ /^-?[0-9]+(\.[0-9]+)?$/) fail("longitude is not a number: " f[7])
    line = f[1] "\t" f[2] "\t" f[3] "\t" f[4] "\t" f[5] "\t" f[6] "\t" f[7]
    print line > (out "/airports.tsv")
    if (f[4] == "NA") {
        print line > (out "/unknown-state.tsv")
        unknown++
    } else if (f[4] ~ /^[A-Z][A-Z]$/) {
        if (!(f[4] in seen)) { seen[f[4]] = 1; states++ }
        print line > (out "/states/" f[4] ".tsv")
    } else fail("state is not a two-letter code: " f[4])
    airports++
}
END {
    if (failed) exit 1
    if (airports == 0) { printf "%s: no airport records\n", src > "/dev/stderr"; exit 1 }
    for (st in seen) print st > (out "/states.unsorted")
    printf "parsed %d airports in %d states and territories (%d with no state recorded)\n", \
        airports, states, unknown
}
' "$data/airports.csv"
sort "$out/states.unsorted" > "$out/states.txt"
rm "$out/states.unsorted"

# Flights per airport: sum of route counts as origin (departures) and as destination (arrivals).
awk -F, -v src="$data/flights-airport.csv" '
{ sub(/\r$/, "") }
NR == 1 {
    if ($0 != "origin,destination,count") {
        printf "%s:1: expected the header origin,destination,count, found: %s\n", src, $0 > "/dev/stderr"
        exit 1
    }
    next
}
NF != 3 || $3 !~ /^[0-9]+$/ {
    printf "%s:%d: expected origin,destination,count with a whole count, found: %s\n", src, NR, $0 > "/dev/stderr"
    exit 1
}
{
    dep[$1] += $3; arr[$2] += $3; flights += $3
    if (!($1 in seen)) { seen[$1] = 1; airports++ }
    if (!($2 in seen)) { seen[$2] = 1; airports++ }
}
END {
    for (a in seen) printf "%s\t%d\t%d\n", a, dep[a], arr[a]
    printf "read %d routes, %d flights, %d airports with traffic\n", NR - 1, flights, airports > "/dev/stderr"
}
' "$data/flights-airport.csv" > "$out/traffic.unsorted"
sort "$out/traffic.unsorted" > "$out/traffic.tsv"
rm "$out/traffic.unsorted"

airports=$(wc -l < "$out/airports.tsv" | tr -d ' ')
states=$(wc -l < "$out/states.txt" | tr -d ' ')
unknown=$(wc -l < "$out/unknown-state.tsv" | tr -d ' ')
{
    echo "dir=$out"
    echo "airports=$airports"
    echo "states=$states"
    echo "unknown_state=$unknown"
} >> "$TANDEM_OUTPUT"
echo "wrote $out"
