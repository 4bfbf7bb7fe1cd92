{ secret: 1 }
