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
//     reads as a number ('3e-4') becomes that number; write numbers as strings to keep their
//     spelling in the name, because Jsonnet prints 3e-4 as 0.00029999999999999997. Bare numbers
//     are labelled with the shortest %g form that reads back to the same number ('0.0003').
//   - an object of label -> value, for values that are not scalars (model sizes, hardware, data).
// Axes are combined in the order of their names; member names are `axis=label` joined by commas.

local numeric_chars = std.set(std.stringChars('0123456789.eE+-'));

// True for strings like '3e-4', '-1', '0.5', '10': they parse as a JSON number.
local reads_as_number(s) =
  std.length(s) > 0
  && std.all([std.setMember(c, numeric_chars) for c in std.stringChars(s)])
  && std.setMember(s[0], std.set(std.stringChars('0123456789-')))
  && std.length([c for c in std.stringChars(s) if std.setMember(c, std.set(std.stringChars('0123456789')))]) > 0;

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
local number_label(x) =
  if x == std.floor(x) && std.abs(x) < 1e15 then std.toString(x + 0)  // + 0 turns -0 into 0
  else
    local short = tidy_exponent('%g' % x);
    if std.parseJson(short) == x then short else tidy_exponent('%.15g' % x);

local scalar(v) = std.isNumber(v) || std.isBoolean(v) || std.isString(v);

// One axis -> a list of {label, value}.
local points(axis, values) =
  if std.isArray(values) then
    assert std.length(values) > 0 : 'sweep axis "%s" has no values' % axis;
    [
      assert scalar(v) : 'sweep axis "%s": list values must be numbers, strings or booleans; give other values labels: { label: value }' % axis;
      if std.isString(v) && reads_as_number(v) then { label: v, value: std.parseJson(v) }
      else if std.isNumber(v) then { label: number_label(v), value: v }
      else { label: std.toString(v), value: v }
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

// Cartesian product of the axes, as a list of lists of {axis, label, value}.
local product(axes) =
  std.foldl(
    function(combos, axis)
      // The axis' points once, not once per combination so far.
      local axis_points = [p { axis: axis } for p in points(axis, axes[axis])];
      [c + [p] for c in combos for p in axis_points],
    std.objectFields(axes),
    [[]]
  );

{
  // Every combination of `axes` applied to `base`; member names like 'lr=3e-4,model=124m'.
  grid(base, axes)::
    assert std.isObject(axes) && std.length(axes) > 0 : 'sweep.grid needs at least one axis';
    local combos = product(axes);
    // Concatenation, not `%`: go-jsonnet's std.format runs in Jsonnet and costs ~0.4 ms a call,
    // most of a 1000-member sweep's evaluation.
    local name(combo) = std.join(',', [p.axis + '=' + p.label for p in combo]);
    // Two values with the same label (['1', 1]) make Jsonnet stop at a duplicate field name.
    { [name(c)]: std.foldl(function(exp, p) exp + setter(p.axis, p.value), c, base) for c in combos },

  // Several named variants of one base: sweep.variants(base, { small: {...}, large: {...} }).
  variants(base, mixins)::
    assert std.isObject(mixins) && std.length(mixins) > 0 : 'sweep.variants needs at least one variant';
    { [name]: base + mixins[name] for name in std.objectFields(mixins) },

  // Exposed for tests and for specs that name members themselves.
  label(value):: if std.isNumber(value) then number_label(value) else std.toString(value),
  set(path, value):: setter(path, value),
}
