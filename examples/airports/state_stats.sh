#!/bin/sh
# state_stats.sh STATE DIR
#
# One instance of the airports pipeline's fan-out: statistics of the airports of one state (or
# territory) STATE, read from DIR/states/STATE.tsv and DIR/traffic.tsv (written by prepare.sh).
# Writes one tab-separated line to DIR/results/STATE.tsv with these columns:
#   state airports cities top_city top_city_airports served movements
#   busiest_iata busiest_name busiest_movements lat_min lat_max lon_min lon_max lat_mean lon_mean
# where `served` counts the airports with scheduled flights in 2008, `movements` is their
# departures plus arrivals, and the coordinates are decimal degrees. Ties (top city, busiest
# airport) go to the alphabetically first. Publishes airports, movements and busiest.
#
# Fails (exit 1) when the data has no airport for STATE: the matrix must list only states that
# are present.
set -eu
export LC_ALL=C

: "${TANDEM_OUTPUT:?TANDEM_OUTPUT is not set: run this script through tandem}"
if [ $# -ne 2 ]; then
    echo "usage: state_stats.sh STATE DIR" >&2
    exit 2
fi
state=$1
dir=$2
input=$dir/states/$state.tsv

if [ ! -s "$input" ]; then
    echo "no airport of state '$state' in the data ($input is missing or empty): remove it from the matrix" >&2
    exit 1
fi
mkdir -p "$dir/results"

awk -F '\t' -v state="$state" -v traffic="$dir/traffic.tsv" -v result="$dir/results/$state.tsv" '
FILENAME == traffic { moves[$1] = $2 + $3; next }  # traffic.tsv: iata departures arrivals
{                                                  # states/STATE.tsv: iata name city state country lat lon
    n++
    lat = $6 + 0; lon = $7 + 0
    if (n == 1 || lat < lat_min) lat_min = lat
    if (n == 1 || lat > lat_max) lat_max = lat
    if (n == 1 || lon < lon_min) lon_min = lon
    if (n == 1 || lon > lon_max) lon_max = lon
    lat_sum += lat; lon_sum += lon
    if (!($3 in city)) cities++
    city[$3]++
    if ($1 in moves) {
        served++
        movements += moves[$1]
        if (moves[$1] > best || (moves[$1] == best && $1 < best_iata)) {
            best = moves[$1]; best_iata = $1; best_name = $2
        }
    }
}
END {
    if (n == 0) { print "no airport rows read" > "/dev/stderr"; exit 1 }
    for (c in city)
        if (city[c] > top_n || (city[c] == top_n && c < top_city)) { top_n = city[c]; top_city = c }
    if (best_iata == "") { best_iata = "-"; best_name = "-"; best = 0 }
    printf "%s\t%d\t%d\t%s\t%d\t%d\t%d\t%s\t%s\t%d\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\n", \
        state, n, cities, top_city, top_n, served + 0, movements + 0, best_iata, best_name, best, \
        lat_min, lat_max, lon_min, lon_max, lat_sum / n, lon_sum / n > result
    printf "%s: %d airports in %d cities (most: %s, %d); %d with scheduled flights, %d movements; busiest %s (%s, %d)\n", \
        state, n, cities, top_city, top_n, served, movements, best_iata, best_name, best
    printf "%s: latitude %.4f..%.4f, longitude %.4f..%.4f, mean position %.4f, %.4f\n", \
        state, lat_min, lat_max, lon_min, lon_max, lat_sum / n, lon_sum / n
}
' "$dir/traffic.tsv" "$input"

awk -F '\t' '{ printf "airports=%d\nmovements=%d\nbusiest=%s\n", $2, $7, $8 }' \
    "$dir/results/$state.tsv" >> "$TANDEM_OUTPUT"
