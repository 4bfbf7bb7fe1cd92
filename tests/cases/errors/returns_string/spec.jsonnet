'an experiment'
