// Bayesian search over a spec's top-level arguments, run by `expc search` (Optuna's TPE, ask and
// tell). The declaration rides in a hidden field of the experiment, `search`, so it is reviewed
// with the spec but is in no manifest: a trial is the same digest, the same run, whichever search
// proposed it, and `expc build` of the spec builds its default-argument experiment as ever.
//
//   local expc = import 'expc.libsonnet';
//   function(lr=3e-4, lora_rank=8)
//     expc.search.declare(experiment(lr, lora_rank),
//                         space={ lr: expc.search.log_uniform(1e-5, 1e-2),
//                                 lora_rank: expc.search.int(4, 64, log=true) },
//                         metric='val_loss', direction='minimize', trials=20, seed=1)
//
// Every name in `space` must be a top-level argument of the spec: a trial is the spec called with
// the values the search proposed (`expc build SPEC --tla lr=... --tla lora_rank=...` builds it).
local sweep = import 'sweep.libsonnet';

{
  // `experiment` (one experiment, not a sweep) with a search declared beside it. metric:
  // 'val_loss' or 'loss', its final value in the trial's metrics.jsonl; direction: 'minimize' or
  // 'maximize'; trials: the budget, every trial ever proposed counted; seed: the sampler's;
  // startup_trials: how many trials are drawn at random before TPE models the results (Optuna's
  // n_startup_trials, 10 by default); early_stopping: rules as for sweep.stop_when
  // (sweep.threshold, sweep.median); name: the search's, when one spec holds several (default:
  // the spec's file name).
  declare(experiment, space, metric='val_loss', direction='minimize', trials=20, seed=0, startup_trials=10,
          early_stopping=[], name=null)::
    assert std.isObject(experiment) && std.objectHas(experiment, 'schema') :
           'search.declare: the first argument is one experiment (a trial is one run), not a sweep';
    experiment + {
      search:: { space: space, metric: metric, direction: direction, trials: trials, seed: seed,
                 startup_trials: startup_trials, early_stopping: early_stopping } + (if name == null then {} else { name: name }),
    },

  // Distributions, as the sweep's (sweep.random reads the same objects).
  uniform(low, high):: sweep.uniform(low, high),
  log_uniform(low, high):: sweep.log_uniform(low, high),
  // Whole numbers in [low, high], every `step`-th; log=true samples the exponent (4, 8, 16, 32, 64
  // equally likely as ranges).
  int(low, high, log=false, step=1):: sweep.int_uniform(low, high) { log: log, step: step },
  choice(values):: sweep.choice(values),
}
