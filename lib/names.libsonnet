// Name lookup with a did-you-mean, so an unknown preset fails with a useful message at the line
// that asked for it: names.pick(table, 'hardware profile', 'h100_x8').
local distance(a, b) =
  // Levenshtein distance, one DP row at a time.
  local la = std.length(a), lb = std.length(b);
  local step(row, i) =
    std.foldl(
      function(acc, j)
        acc + [std.min(std.min(acc[j - 1] + 1, row[j] + 1),
                       row[j - 1] + (if a[i - 1] == b[j - 1] then 0 else 1))],
      std.range(1, lb),
      [i]
    );
  std.foldl(step, std.range(1, la), std.range(0, lb))[lb];

{
  distance:: distance,

  // table[name], or an error naming the closest known names.
  pick(table, kind, name)::
    if std.objectHasAll(table, name) then table[name]
    else
      local known = std.objectFields(table);
      local scored = std.sort([{ d: distance(name, k), k: k } for k in known], function(x) x.d);
      local close = [s.k for s in scored if s.d <= std.max(2, std.length(name) / 3)];
      error 'unknown %s "%s"%s; known: %s' % [
        kind, name,
        if std.length(close) > 0 then ' (did you mean "%s"?)' % close[0] else '',
        std.join(', ', known),
      ],
}
