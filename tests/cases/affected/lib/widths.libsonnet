// Read only through lib/model_choice.libsonnet: affected must follow imports transitively.
{ narrow: 64, wide: 128 }
