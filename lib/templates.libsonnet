// Prompt templates: how a jsonl row ({instruction, input, output}) becomes the text the model
// reads (the prompt) and the text it learns to write (the response). The tokenizer's
// end-of-sequence token follows the response. A template is frozen into the manifest's
// `data.template`, so changing one changes the digest.
//
//   local templates = import 'templates.libsonnet';
//   templates.alpaca                   // the Alpaca layout, with and without an input
//   templates.plain                    // instruction, newline, output
//   templates.chat()                   // the base model's own chat template (tokenizer_config)
//   templates.chat(system='Be brief.')
//   templates.custom('Q: {instruction}\nA: {output}')   // your own: the response starts at {output}
//   templates.get('alpaca')            // by name, with a did-you-mean on a typo
local names = import 'names.libsonnet';

local format(name, prompt, response, prompt_no_input=null) = {
  kind: 'format',
  name: name,
  prompt: prompt,
  prompt_no_input: prompt_no_input,
  response: response,
};

local table = {
  alpaca: format(
    'alpaca',
    'Below is an instruction that describes a task, paired with an input that provides further context. '
    + 'Write a response that appropriately completes the request.\n\n'
    + '### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n',
    '{output}',
    prompt_no_input='Below is an instruction that describes a task. '
                    + 'Write a response that appropriately completes the request.\n\n'
                    + '### Instruction:\n{instruction}\n\n### Response:\n',
  ),
  plain: format('plain', '{instruction}\n{input}\n', '{output}', prompt_no_input='{instruction}\n'),
};

table {
  chat(system=null):: {
    assert system == null || std.isString(system) : 'templates.chat(system): a string or null',
    kind: 'chat',
    name: 'chat',
    system: system,
  },

  custom(text)::
    assert std.isString(text) : 'templates.custom(text): give the template as a string';
    local at = std.findSubstr('{output}', text);
    assert std.length(at) == 1 : 'templates.custom: the template must contain {output} exactly once (the response starts there), got: %s' % std.escapeStringJson(text);
    assert at[0] > 0 : 'templates.custom: put the prompt before {output}';
    format('custom', std.substr(text, 0, at[0]), std.substr(text, at[0], std.length(text) - at[0])),

  get(name):: names.pick(table, 'template', name),
}
