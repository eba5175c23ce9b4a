# stats.sh -- sourced by the benchmark drivers (gpu_bench.sh,
# net_http_big.sh): awk functions for the statistics of their tables, in
# STATS_AWK, to put before an awk program:  awk "$STATS_AWK"' ... '
#   med(list)     the median of a space-separated list of numbers (the
#                 middle one, the upper of two), as written in the list;
#                 sets lo and hi to the smallest and the largest
#   spread(list)  "median (lo-hi)"
# shellcheck disable=SC2034  # used by the scripts that source this
STATS_AWK='
  function med(list,   v, m, i, j, t) {
    m = split(list, v, " ")
    for (i = 2; i <= m; i++) for (j = i; j > 1 && v[j - 1] + 0 > v[j] + 0; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
    lo = v[1]; hi = v[m]
    return v[int((m + 1) / 2)]
  }
  function spread(list,   m) { m = med(list); return sprintf("%s (%s-%s)", m, lo, hi) }
'
