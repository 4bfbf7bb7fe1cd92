// Sweeps: a grid over knobs, as an object of member name -> experiment (what `expc build` expects
// from a sweep spec). Every combination of the axes becomes one member, named by its values so
// that `expc ls manifests` and the index read like the grid itself:
//
//   local expc = import 'expc.libsonnet';
//   local base = expc.experiment + { hardware: ..., model: ... };
//   expc.sweep.grid(base, {
//     lr: ['1e-4', '3e-4', '1e-3'],                          // numbers written as strings
//     model: { '124m': expc.models.gpt_124m,                 // labelled values
//              '350m': expc.models.gpt_350m },
//     'train.max_steps': [1000, 2000],                       // a dotted path into a section
//   })
//   // -> members 'lr=1e-4,model=124m,train.max_steps=1000', ...
//
// An axis is a knob (`lr`, `micro_batch_size`: hidden fields stay hidden), a section (`model`,
// `hardware`, `data`) or a dotted path to a leaf (`train.max_steps`, `deepspeed.gradient_clipping`).
// Its values are either a list or an object of label -> value:
//   - a list of numbers, booleans or strings: the label is the value as written. A string that
//     is a JSON number ('3e-4') becomes that number, any other stays a string ('2024-01', '5.');
//     write numbers as strings to keep their spelling in the name, because Jsonnet prints 3e-4
//     as 0.00029999999999999997. Bare numbers are labelled with the shortest %g form that reads
//     back to the same number ('0.0003').
//   - an object of label -> value, for values that are not scalars (model sizes, hardware, data).
// Axes are combined in the order of their names; member names are `axis=label` joined by commas.

local digits = { [c]: true for c in std.stringChars('0123456789') };  // std.objectHas is go's own code
local digits_from(s, i) = if i < std.length(s) && std.objectHas(digits, s[i]) then digits_from(s, i + 1) else i;

// True for strings that are a JSON number, '3e-4', '-1', '0.5', '10': they are read as that number.
// Anything else is a string, '2024-01' and '5.' too: JSON wants a digit after the point.
local reads_as_number(s) =
  local n = std.length(s);
  local start = if n > 0 && s[0] == '-' then 1 else 0;
  local whole = digits_from(s, start);  // after the integer part, which has no leading zero
  local point = if whole < n && s[whole] == '.' then digits_from(s, whole + 1) else whole;
  local exponent =
    if point < n && (s[point] == 'e' || s[point] == 'E') then
      local sign = if point + 1 < n && (s[point + 1] == '+' || s[point + 1] == '-') then 1 else 0;
      local end = digits_from(s, point + 1 + sign);
      if end > point + 1 + sign then end else -1
    else point;
  whole > start && (s[start] != '0' || whole == start + 1) && point != whole + 1 && exponent == n;

// '1e-05' -> '1e-5', '1e+06' -> '1e6': %g's exponent padding carries no information.
local tidy_exponent(s) =
  local parts = std.split(s, 'e');
  if std.length(parts) != 2 then s
  else
    local exp = parts[1];
    local sign = if exp[0] == '-' then '-' else '';
    local digits = std.lstripChars(std.lstripChars(exp, '+-'), '0');
    parts[0] + 'e' + sign + (if digits == '' then '0' else digits);

// The shortest readable label that reads back to exactly `x`.
// (go-jsonnet runs std.abs and `%` as Jsonnet, at several microseconds a call: a 100,000-member
// grid labels and indexes its members without them.)
local number_label(x) =
  if x == std.floor(x) && x < 1e15 && x > -1e15 then std.toString(x + 0)  // + 0 turns -0 into 0
  else
    local short = tidy_exponent('%g' % x);
    if std.parseJson(short) == x then short else tidy_exponent('%.15g' % x);

local scalar(v) = std.isNumber(v) || std.isBoolean(v) || std.isString(v);

// One axis -> a list of {label, value}.
local points(axis, values) =
  if std.isArray(values) then
    assert std.length(values) > 0 : 'sweep axis "%s" has no values' % axis;
    [
      if std.isNumber(v) then { label: number_label(v), value: v }
      else if std.isString(v) then (if reads_as_number(v) then { label: v, value: std.parseJson(v) } else { label: v, value: v })
      else if std.isBoolean(v) then { label: std.toString(v), value: v }
      else error 'sweep axis "%s": list values must be numbers, strings or booleans; give other values labels: { label: value }' % axis
      for v in values
    ]
  else if std.isObject(values) then
    assert std.length(values) > 0 : 'sweep axis "%s" has no values' % axis;
    [{ label: label, value: values[label] } for label in std.objectFields(values)]
  else error 'sweep axis "%s" must be a list of values or an object of label -> value, got %s' % [axis, std.type(values)];

// A mixin that sets one axis: `lr` -> { lr: v }, `train.max_steps` -> { train+: { max_steps: v } }.
// A single colon keeps a hidden knob hidden and a visible section visible.
local setter(path, value) =
  local steps = std.split(path, '.');
  local nest(i) =
    if i == std.length(steps) - 1 then { [steps[i]]: value }
    else { [steps[i]]+: nest(i + 1) };
  nest(0);

// An axis as two plain arrays: its labels, and its values (parsed once, read when a member is
// made). go-jsonnet keeps an array's element in tens of bytes and an object in a kilobyte or so,
// which a 100,000-member sweep paid for every member when each kept its points as objects.
local table(axis, values) = {
  labels: [p.label for p in points(axis, values)],
  values: if std.isObject(values) then [values[label] for label in std.objectFields(values)]
          else [if std.isString(v) && reads_as_number(v) then std.parseJson(v) else v for v in values],
};

// Members 0 .. count - 1: member k is `base` with each free axis j (`names`, in order) set to
// value(k, j), unless sets(j) is false (a random sample's index, in the name only), then each
// derived axis (`derived`: axis -> function(values), values: axis -> this member's value) set
// to what it computes; named `axis=label` for them all, joined by commas, so a member's name
// shows every value the sweep set. Only k is held for a member until it is made (its derived
// values are computed again then).
local members(base, names, count, label, value, sets, derived) =
  assert std.isObject(derived) : 'sweep: `derived` must be an object of axis -> function(values)';
  local free = std.range(0, std.length(names) - 1), extra = std.objectFields(derived);
  local derived_values(k) =
    local values = { [names[j]]: value(k, j) for j in free };
    [
      local f = derived[axis];
      assert std.isFunction(f) : 'sweep: derived axis "%s" must be a function(values)' % axis;
      f(values)
      for axis in extra
    ];
  local name(k) =
    local more = derived_values(k);
    std.join(',', [names[j] + '=' + label(k, j) for j in free]
                  + [extra[d] + '=' + (if std.isNumber(more[d]) then number_label(more[d]) else std.toString(more[d]))
                     for d in std.range(0, std.length(extra) - 1)]);
  local member(k) =
    local more = derived_values(k);
    std.foldl(function(exp, d) exp + setter(extra[d], more[d]), std.range(0, std.length(extra) - 1),
              std.foldl(function(exp, j) if sets(j) then exp + setter(names[j], value(k, j)) else exp, free, base));
  { [name(k)]: member(k) for k in std.range(0, count - 1) };

// A grid's axes of these sizes as one index: member k's point of axis i is index(k, i) of
// strides_of(sizes) (the last axis varies fastest), with no list of every combination.
local strides_of(sizes) = std.foldr(function(i, acc) [acc[0] * sizes[i + 1]] + acc, std.range(0, std.length(sizes) - 2), [1]);

// A uniform draw in [0, 1) that depends only on (seed, member index, axis): md5 of the three,
// its first 13 hex digits (52 bits, exact in a double). Adding an axis or more samples leaves
// the other draws as they were, so existing members keep their names and manifests.
// (Parsed with a table: go-jsonnet's std.parseHex runs as Jsonnet, three times slower.)
local hex_digit = { [std.substr('0123456789abcdef', i, 1)]: i for i in std.range(0, 15) };
local parse_hex(h) = std.foldl(function(n, c) n * 16 + hex_digit[c], std.stringChars(h), 0);
local draw(seed, index, axis) =
  parse_hex(std.substr(std.md5(std.toString(seed) + ':' + std.toString(index) + ':' + axis), 0, 13))
  / 4503599627370496;  // 2^52

// `x` to 3 significant digits, as the label it is written with: 0.000312 -> '3.12e-4',
// 0.1234 -> '0.123', 12.34 -> '12.3'. The member's value is the number the label reads as.
local three_digits(x) =
  if x == 0 then '0'
  else
    local sign = if x < 0 then '-' else '';
    local a = std.abs(x);
    local e0 = std.floor(std.log(a) / std.log(10));
    local scaled(e) = if e >= 2 then a / std.pow(10, e - 2) else a * std.pow(10, 2 - e);
    // log10 may be one off near powers of ten, and rounding may carry to 1000
    local e1 = if std.round(scaled(e0)) >= 1000 then e0 + 1 else if std.round(scaled(e0)) < 100 then e0 - 1 else e0;
    local m = std.round(scaled(e1));
    local e = if m >= 1000 then e1 + 1 else e1;
    local digits = std.toString(if m >= 1000 then m / 10 else m);  // three digits, '100'..'999'
    local strip(s) = std.rstripChars(std.rstripChars(s, '0'), '.');
    sign + (
      if e >= 0 && e <= 2 then
        if e == 2 then digits else strip(digits[0:e + 1] + '.' + digits[e + 1:])
      else if e >= -3 && e < 0 then strip('0.' + std.repeat('0', -e - 1) + digits)
      else strip(digits[0] + '.' + digits[1:]) + 'e' + std.toString(e)
    );

// What a member of a random sweep keeps of one axis, from a draw u: the label it is named by,
// whose value is the number it reads as (uniform, log_uniform, int_uniform), or, for a choice,
// the index of the value chosen.
local sample(axis, dist, u) =
  assert std.isObject(dist) && std.objectHas(dist, 'distribution') :
         'sweep.random: axis "%s" must be a distribution: sweep.uniform(a, b), log_uniform(a, b), int_uniform(a, b) or choice([...])' % axis;
  if dist.distribution == 'uniform' then three_digits(dist.low + u * (dist.high - dist.low))
  else if dist.distribution == 'log_uniform' then
    three_digits(std.exp(std.log(dist.low) + u * (std.log(dist.high) - std.log(dist.low))))
  else if dist.distribution == 'int_uniform' then std.toString(dist.low + std.floor(u * (dist.high - dist.low + 1)))
  else std.floor(u * std.length(dist.values));

{
  // Every combination of `axes` applied to `base`; member names like 'lr=3e-4,model=124m'.
  grid(base, axes)::
    assert std.isObject(axes) && std.length(axes) > 0 : 'sweep.grid needs at least one axis';
    // Member k's combination by index arithmetic, each axis two plain arrays (table): its
    // `axis=label` texts and its values.
    local fields = std.objectFields(axes);
    local n = std.length(fields);
    local tables = [table(a, axes[a]) for a in fields];
    local texts = [[fields[i] + '=' + label for label in tables[i].labels] for i in std.range(0, n - 1)];
    local values = [t.values for t in tables];
    local sizes = [std.length(t) for t in texts];
    local strides = strides_of(sizes);
    local count = strides[0] * sizes[0];
    local index(k, i) = std.modulo(std.floor(k / strides[i]), sizes[i]);
    // Concatenation, not `%`: go-jsonnet's std.format runs in Jsonnet and costs ~0.4 ms a call.
    local name(k) = if n == 1 then texts[0][k] else std.join(',', [texts[i][index(k, i)] for i in std.range(0, n - 1)]);
    // Two values with the same label (['1', 1]) make Jsonnet stop at a duplicate field name.
    { [name(k)]: std.foldl(function(exp, i) exp + setter(fields[i], values[i][index(k, i)]), std.range(0, n - 1), base)
      for k in std.range(0, count - 1) },

  // Paired axes: the i-th member takes the i-th value of every axis (all lists of one length):
  // zip(base, { lr: ['1e-3', '3e-4'], warmup_steps: [10, 50] }) -> 'lr=1e-3,warmup_steps=10', ...
  zip(base, axes, derived={})::
    assert std.isObject(axes) && std.length(axes) > 0 : 'sweep.zip needs at least one axis';
    local names = std.objectFields(axes);
    assert std.all([std.isArray(axes[a]) for a in names]) : 'sweep.zip: every axis must be a list of values';
    local lengths = [std.length(axes[a]) for a in names];
    assert std.length(std.set(lengths)) == 1 :
           'sweep.zip: every axis must have as many values; got ' + std.join(', ', [a + ': ' + std.length(axes[a]) for a in names]);
    local tables = [table(a, axes[a]) for a in names];
    local labels = [t.labels for t in tables], values = [t.values for t in tables];
    members(base, names, lengths[0], function(k, i) labels[i][k], function(k, i) values[i][k], function(i) true, derived),

  // A grid with axes computed from the free ones: derived is axis -> function(values), e.g.
  // { warmup_steps: function(v) v['train.max_steps'] / 10 }; derived values are in the names too.
  grid_derived(base, axes, derived)::
    assert std.isObject(axes) && std.length(axes) > 0 : 'sweep.grid_derived needs at least one axis';
    local fields = std.objectFields(axes);
    local tables = [table(a, axes[a]) for a in fields];
    local labels = [t.labels for t in tables], values = [t.values for t in tables];
    local sizes = [std.length(l) for l in labels];
    local strides = strides_of(sizes);
    local index(k, i) = std.modulo(std.floor(k / strides[i]), sizes[i]);
    members(base, fields, strides[0] * sizes[0], function(k, i) labels[i][index(k, i)],
            function(k, i) values[i][index(k, i)], function(i) true, derived),

  // `count` members whose axes are drawn from distributions, reproducibly from `seed`: member
  // i's value of an axis depends only on (seed, i, axis). Real values are rounded to 3
  // significant digits and the name carries them as written: 'sample=0,lr=3.12e-4'.
  random(base, space, count, seed, derived={})::
    assert std.isObject(space) && std.length(space) > 0 : 'sweep.random needs at least one axis';
    assert std.isNumber(count) && count >= 1 && count == std.floor(count) :
           'sweep.random: count must be a whole number >= 1, got %s' % [count];
    local axes = std.objectFields(space);
    // each member's draws, once: a label or a choice's index per axis (sample)
    local rows = [[sample(a, space[a], draw(seed, i, a)) for a in axes] for i in std.range(0, count - 1)];
    local choices = [
      local d = space[a];
      if std.isObject(d) && std.get(d, 'distribution') == 'choice' then table(a, d.values) else null
      for a in axes
    ];
    // axis 0 is the sample's index, in the name only
    local label(k, j) =
      if j == 0 then std.toString(k)
      else if choices[j - 1] != null then choices[j - 1].labels[rows[k][j - 1]] else rows[k][j - 1];
    local value(k, j) =
      if j == 0 then k
      else if choices[j - 1] != null then choices[j - 1].values[rows[k][j - 1]] else std.parseJson(rows[k][j - 1]);
    members(base, ['sample'] + axes, count, label, value, function(j) j > 0, derived),

  // Distributions for sweep.random.
  uniform(low, high):: { distribution: 'uniform', low: low, high: high },
  log_uniform(low, high)::
    assert low > 0 && high > low : 'sweep.log_uniform needs 0 < low < high, got %s, %s' % [low, high];
    { distribution: 'log_uniform', low: low, high: high },
  int_uniform(low, high):: { distribution: 'int_uniform', low: low, high: high },
  choice(values):: { distribution: 'choice', values: values },

  // Seed replicas: every member of a sweep (or one experiment) once per seed, named
  // '<member>,seed=<s>' (or 'seed=<s>'). seeds: a list, or a count n for seeds 1..n.
  replicas(sweep, seeds)::
    local list = if std.isNumber(seeds) then std.range(1, seeds) else seeds;
    assert std.isArray(list) && std.length(list) > 0 : 'sweep.replicas needs at least one seed';
    if std.objectHas(sweep, 'schema') then { ['seed=' + s]: sweep { seed: s } for s in list }
    else { [name + ',seed=' + s]: sweep[name] { seed: s } for name in std.objectFields(sweep) for s in list },

  // Early stopping beside the sweep, in a hidden field: reviewed with the spec, in no member's
  // manifest (the executor, `expc run --parallel`, reads it). A member is stopped with a
  // checkpoint and marked `pruned`; a later sweep whose rules let it go on resumes it.
  stop_when(sweep, rules)::
    assert std.isObject(sweep) && std.isArray(rules) : 'sweep.stop_when(sweep, [rules])';
    sweep + { early_stopping:: rules },
  // Stop a member whose `metric` (val_loss or loss) is above `above` at its first record at or
  // after step `at_step`.
  threshold(metric, above, at_step):: { rule: 'threshold', metric: metric, above: above, at_step: at_step },
  // Optuna's MedianPruner, its defaults: after `startup` completed members, stop one whose best
  // value so far is worse than their median at its latest step; steps before `warmup` not judged.
  median(metric='val_loss', startup=5, warmup=0):: { rule: 'median', metric: metric, startup: startup, warmup: warmup },
  // Optuna's SuccessiveHalvingPruner (asynchronous successive halving), its defaults: rung k ends
  // at step min_resource * reduction_factor^(min_early_stopping_rate + k); a member reaching it goes
  // on only among the best 1/reduction_factor of the members there so far. 'auto': the completed
  // members' last step / 100.
  successive_halving(metric='val_loss', min_resource='auto', reduction_factor=4, min_early_stopping_rate=0)::
    { rule: 'successive_halving', metric: metric, min_resource: min_resource, reduction_factor: reduction_factor,
      min_early_stopping_rate: min_early_stopping_rate },

  // Several named variants of one base: sweep.variants(base, { small: {...}, large: {...} }).
  variants(base, mixins)::
    assert std.isObject(mixins) && std.length(mixins) > 0 : 'sweep.variants needs at least one variant';
    { [name]: base + mixins[name] for name in std.objectFields(mixins) },

  // Exposed for tests and for specs that name members themselves.
  label(value):: if std.isNumber(value) then number_label(value) else std.toString(value),
  set(path, value):: setter(path, value),
}
