// Adapters: train a small update on a frozen pretrained base instead of every weight. LoRA
// (PEFT's LoraConfig); each field is frozen into the manifest's `adapter` section.
//
//   local adapters = import 'adapters.libsonnet';
//   adapters.lora(r=16, alpha=32)                          // q_proj and v_proj
//   adapters.lora(8, 16, target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj'])
//   adapters.lora(16, 32, target_modules='all-linear')     // every linear layer but the head
//   adapters.minimal | adapters.standard | adapters.full   // presets, smallest to largest
//   adapters.get('standard')                               // by name, with a did-you-mean
//
// Each target is checked against the base's real module names before any training step: at
// build time for the Llama layout (llama, mistral, qwen2, qwen3), else on rank 0 at start-up.
local names = import 'names.libsonnet';

local lora(r, alpha, dropout=0.05, target_modules=['q_proj', 'v_proj'], modules_to_save=[], bias='none',
           use_rslora=false, use_dora=false) =
  assert std.isNumber(r) && r >= 1 && r == std.floor(r) : 'adapters.lora: r must be a whole number >= 1, got %s' % [r];
  assert std.isNumber(alpha) && alpha > 0 : 'adapters.lora: alpha must be a number > 0, got %s' % [alpha];
  assert target_modules == 'all-linear' || (std.isArray(target_modules) && std.length(target_modules) > 0) :
         'adapters.lora: target_modules is a list of module names (e.g. ["q_proj", "v_proj"]) or "all-linear"';
  {
    method: 'lora',
    r: r,
    alpha: alpha,
    dropout: dropout,
    target_modules: target_modules,
    modules_to_save: modules_to_save,
    bias: bias,
    use_rslora: use_rslora,
    use_dora: use_dora,
  };

local attention = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];
local presets = {
  // The usual three steps up: the query and value projections; all of attention; every
  // projection of attention and MLP, at a higher rank.
  minimal: lora(8, 16, target_modules=['q_proj', 'v_proj']),
  standard: lora(16, 32, target_modules=attention),
  full: lora(64, 128, target_modules=attention + ['gate_proj', 'up_proj', 'down_proj']),
};

presets {
  lora:: lora,
  get(name):: names.pick(presets, 'adapter preset', name),
}
