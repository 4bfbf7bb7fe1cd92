{ anything: 1 }
